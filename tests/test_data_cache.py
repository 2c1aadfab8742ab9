"""The decoded-image cache (proxytask.cache): keyed by source, subset and resolution; checked on
open; a damaged cache is repaired or rebuilt, and a build killed midway resumes to the bytes a
clean build gives."""

import json
import os
import signal as signals
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from data_folders import imagenet, label_from_pixels
from proxytask.cache import open_cache
from proxytask.data import load_data
from proxytask.sources import list_files


def _open(files, tmp_path, resolution=16, **options):
    return open_cache(files, resolution, cache_dir=tmp_path / "cache", progress=False, workers=1, **options)


def _arrays(cached):
    return {split: np.array(images) for split, images in cached.images.items()}


@pytest.fixture
def folder(tmp_path):
    return imagenet(tmp_path / "in", classes=3, train=10, val=2)


def test_the_key_follows_source_subset_and_resolution(tmp_path, folder):
    files = list_files(f"imagenet:{folder}?val_per_class=2")
    first = _open(files, tmp_path, shard_images=4)
    assert first.decoded == 36 and isinstance(first.images["train"], np.memmap)  # mapped, not loaded
    again = _open(files, tmp_path)
    assert again.decoded == 0 and again.folder == first.folder  # reused as it was
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(first).values(), _arrays(again).values()))
    subset = _open(list_files(f"imagenet:{folder}?val_per_class=2,per_class=5"), tmp_path)
    bigger = _open(files, tmp_path, resolution=20)
    other_seed = _open(list_files(f"imagenet:{folder}?val_per_class=2,seed=1"), tmp_path)
    assert len({first.folder, subset.folder, bigger.folder, other_seed.folder}) == 4
    assert subset.decoded == 27 and bigger.images["train"].shape == (24, 3, 20, 20)
    # an edited image changes the file list's fingerprint, hence the key
    path = files.paths["train"][0]
    Image.open(path).transpose(Image.FLIP_LEFT_RIGHT).save(path)
    assert _open(list_files(f"imagenet:{folder}?val_per_class=2"), tmp_path).folder != first.folder


def test_statistics_and_labels_match_the_pixels(tmp_path, folder):
    data = load_data(f"imagenet:{folder}?val_per_class=2", resolution=12, progress=False, cache_dir=tmp_path / "c")
    pixels = data.train_x.numpy().astype(np.float64)
    assert np.allclose(data.mean, pixels.mean(axis=(0, 2, 3)))
    assert np.allclose(data.std, pixels.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1))
    assert (label_from_pixels(data.train_x.numpy()) == data.train_y.numpy()).all()


def test_a_damaged_cache_is_repaired_never_trusted(tmp_path, folder):
    files = list_files(f"imagenet:{folder}?val_per_class=2")
    clean = _arrays(_open(files, tmp_path / "clean", shard_images=4))
    built = _open(files, tmp_path, shard_images=4)
    train = built.folder / "train.u8"
    # a truncated split file: the shards past the cut are decoded again
    with open(train, "r+b") as f:
        f.truncate(os.path.getsize(train) // 2)
    repaired = _open(files, tmp_path)
    assert 0 < repaired.decoded < 36 and all(np.array_equal(clean[s], a) for s, a in _arrays(repaired).items())
    # bytes overwritten in place: the one shard that holds them is decoded again
    with open(train, "r+b") as f:
        f.seek(16 * 16 * 3 * 5 + 7)
        f.write(b"\x00" * 100)
    repaired = _open(files, tmp_path)
    assert repaired.decoded == 4 and np.array_equal(clean["train"], np.array(repaired.images["train"]))
    # ... even when the damage kept the file's time (verify=True reads every shard's CRC)
    stamp = os.stat(train)
    with open(train, "r+b") as f:
        f.write(b"\xff" * 10)
    os.utime(train, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert _open(files, tmp_path, verify=True).decoded == 4
    # a damaged complete.json: every shard is checked against the journal, none decoded again
    (built.folder / "complete.json").write_text("{not json")
    assert _open(files, tmp_path).decoded == 0
    # a damaged manifest or journal: rebuilt from nothing (or the shards it lost)
    (built.folder / "manifest.json").write_text('{"format": 1, "key": "someone else"}')
    rebuilt = _open(files, tmp_path)
    assert rebuilt.decoded == 36 and all(np.array_equal(clean[s], a) for s, a in _arrays(rebuilt).items())
    (built.folder / "complete.json").unlink()
    (built.folder / "shards.jsonl").write_text('{"split": "train", "shard": 0, "crc": 1}\n[]\n')
    assert _open(files, tmp_path).decoded == 36


def test_a_killed_build_resumes_to_a_clean_build(tmp_path):
    """A real decode (two worker processes) is killed with SIGKILL midway; reopening decodes only
    the shards that were not journaled, and the result equals a clean build byte for byte."""
    root = tmp_path / "big"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (500, 500, 3), dtype=np.uint8)  # slow to decode: the kill lands midway
    for k in range(2):
        (root / "train" / f"n{k}").mkdir(parents=True)
        (root / "val" / f"n{k}").mkdir(parents=True)
        Image.fromarray(noise // (k + 1)).save(root / "train" / f"n{k}" / "a.png")
    for k in range(2):
        source = (root / "train" / f"n{k}" / "a.png").read_bytes()
        for i in range(1, 80):
            (root / "train" / f"n{k}" / f"{i:03d}.png").write_bytes(source)
        (root / "val" / f"n{k}" / "v.png").write_bytes(source)
    source = f"imagenet:{root}?val_per_class=2"
    cache = tmp_path / "cache"
    script = (f"from proxytask.cache import open_cache; from proxytask.sources import list_files; "
              f"open_cache(list_files({source!r}), 16, cache_dir={str(cache)!r}, workers=2, progress=False, "
              f"shard_images=4)")
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    journal = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        journal = next(cache.glob("*/shards.jsonl"), None)
        if journal is not None and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the decode ended before it could be killed"
    os.killpg(child.pid, signals.SIGKILL)
    child.wait()
    done = len(journal.read_text().splitlines())
    assert not (journal.parent / "complete.json").exists()
    files = list_files(source)
    resumed = open_cache(files, 16, cache_dir=cache, workers=2, progress=False)
    total = sum(files.count(s) for s in ("train", "val", "test"))
    assert resumed.decoded <= total - 4 * (done - 1)  # the journaled shards were kept
    clean = open_cache(files, 16, cache_dir=tmp_path / "clean", workers=1, progress=False, shard_images=4)
    assert all(np.array_equal(np.array(clean.images[s]), np.array(resumed.images[s])) for s in clean.images)
    assert json.loads((resumed.folder / "complete.json").read_text())["key"]


def test_imagefolder_goes_through_the_cache(tmp_path):
    root = imagenet(tmp_path / "t")  # any folder of class folders; here train/ of the ImageNet layout
    data = load_data(f"imagefolder:{root / 'train'}", resolution=8, progress=False, cache_dir=tmp_path / "c")
    assert data.name == "imagefolder:train" and data.num_classes == 3
    assert len(list((tmp_path / "c").glob("imagefolder-train-8px-*/train.u8"))) == 1


def test_a_child_trains_on_the_mapped_data(tmp_path, folder):
    """The signal of a profile on a folder subset: loaded through the cache (memory-mapped), then
    real training steps, BN recalibration and evaluation on it."""
    from proxytask.profiles import signal
    from proxytask.train import train_child
    from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec

    sig = signal("cpu", data=f"imagenet:{folder}?classes=2,per_class=6,val_per_class=2",
                 overrides={"resolution": 16, "epochs": 2, "batch_size": 4, "bn_recalibration_batches": 1,
                            "channels_last": False})
    data = sig.load(cache_dir=tmp_path / "c", progress=False)
    assert data.name == "imagenet:in?classes=2,per_class=6,val_per_class=2" and data.num_classes == 2
    spec = ArchSpec(name="tiny", stem=StemSpec(out_channels=8, kernel=3, stride=2, nonlinearity="relu"),
                    blocks=(BlockSpec("bneck", 3, 1, 16, 8, 0, "relu"),),
                    head=HeadSpec(conv_channels=16, hidden_channels=None), num_classes=2, resolution=16, dropout=0.0)
    result = train_child(spec, data, sig.proxy)
    assert result.ok and result.steps == 6 and 0 <= result.test_accuracy <= 1
