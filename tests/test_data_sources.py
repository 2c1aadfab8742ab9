"""Folder sources (proxytask.sources + load_data): the Tiny-ImageNet and ImageNet layouts made
small in the test, the seeded subset and its place in the signal's description, and every bad
input as one line naming the path and the fix."""

import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch

from data_folders import imagenet, jpeg, label_from_pixels, tinyimagenet, wnid
from proxytask.data import load_data
from proxytask.profiles import signal
from proxytask.sources import DataWarning, list_files, parse_source, source_problem, with_subset
from guards import no_hang


def test_tinyimagenet_layout(tmp_path):
    root = tinyimagenet(tmp_path / "tiny-imagenet-200")
    data = load_data(f"tinyimagenet:{root}?val_per_class=2", resolution=16, progress=False)
    # test = the labelled val/ (3 a class); validation = 2 a class held out of the 8 training images
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (18, 6, 9)
    assert data.train_x.shape == (18, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.num_classes == 3 and data.classes == ("thing 0, item 0", "thing 1, item 1", "thing 2, item 2")
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y), (data.test_x, data.test_y)):
        assert (label_from_pixels(x.numpy()) == y.numpy()).all()  # every label read back from its pixels
    files = list_files(f"tinyimagenet:{root}?val_per_class=2")
    assert not set(files.paths["train"]) & set(files.paths["val"])
    assert all("/val/images/" in p for p in files.paths["test"])
    # the default hold-out (50 a class, as many as Tiny-ImageNet's own val/) is too large here: one line
    with pytest.raises(ValueError, match=r"^data: class 'n00000001' of tinyimagenet:.* has 8 training images, too "
                                         r"few to hold out 50 for validation .*; lower val_per_class$"):
        load_data(f"tinyimagenet:{root}")


@pytest.mark.parametrize("flat", [False, True])
def test_imagenet_layouts(tmp_path, flat):
    root = imagenet(tmp_path / "ILSVRC" / "Data" / "CLS-LOC", flat=flat) if not flat else \
        imagenet(tmp_path / "CLS-LOC", flat=True)
    data = load_data(f"imagenet:{root}?val_per_class=1", resolution=12, progress=False)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (21, 3, 9)
    assert data.test_x.shape == (9, 3, 12, 12)
    assert (label_from_pixels(data.test_x.numpy()) == data.test_y.numpy()).all()
    assert (label_from_pixels(data.train_x.numpy()) == data.train_y.numpy()).all()
    assert data.classes == (("thing 0", "thing 1", "thing 2") if flat else (wnid(0), wnid(1), wnid(2)))


def test_subset_is_seeded_and_exact(tmp_path):
    root = imagenet(tmp_path / "in", classes=5, train=10, val=4)
    small = list_files(f"imagenet:{root}?classes=3,per_class=4,val_per_class=2,test_per_class=3")
    assert len(small.classes) == 3 and small.count("train") == 12 and small.count("val") == 6
    assert small.count("test") == 9
    again = list_files(f"imagenet:{root}?per_class=4,classes=3,test_per_class=3,val_per_class=2")  # any order
    assert again.paths == small.paths and again.fingerprint == small.fingerprint
    other = [list_files(f"imagenet:{root}?classes=3,per_class=4,val_per_class=2,seed={s}") for s in range(1, 6)]
    assert any(o.classes != small.classes for o in other)  # the seed chooses the classes
    assert len({o.fingerprint for o in other}) == 5
    for option, message in (("classes=6", "asks for classes=6 but .* has 5 classes with images; lower classes"),
                            ("per_class=9,val_per_class=2", "has 8 training images after the hold-out, fewer than "
                                                            "per_class=9; lower per_class"),
                            ("val_per_class=1,test_per_class=5", "has 4 test images, fewer than test_per_class=5")):
        with pytest.raises(ValueError, match=f"^data: .*{message}"):
            list_files(f"imagenet:{root}?{option}")


def test_subset_is_in_the_signal_description():
    a = signal("cpu", data="tinyimagenet:/d/tiny?per_class=100,classes=10")
    b = signal("cpu", data="tinyimagenet:/d/tiny?classes=10,per_class=200")
    assert a.data == "tinyimagenet:/d/tiny?classes=10,per_class=100"  # canonical: one subset, one string
    assert a.describe()["subset"] == {"classes": 10, "per_class": 100, "val_per_class": 50, "test_per_class": None,
                                      "seed": 0}
    assert a.describe() != b.describe() and a.describe()["subset"] != b.describe()["subset"]
    assert signal("cpu", data="tinyimagenet:/d/tiny").describe()["subset"]["classes"] is None
    assert "subset" not in signal("cpu").describe()  # the embedded default: as before
    assert with_subset("imagenet:/x?seed=2", classes=5) == "imagenet:/x?classes=5,seed=2"
    with pytest.raises(ValueError, match=r"^data: 'bogus=1' in tinyimagenet:...\?bogus=1 is not a subset option"):
        signal("cpu", data="tinyimagenet:/d?bogus=1")
    for bad in ("classes=0", "classes=x", "classes=1,classes=2", "seed=-1"):
        with pytest.raises(ValueError, match=r"^data: subset option .* (must be an integer|is given twice)"):
            parse_source(f"imagenet:/d?{bad}")


def test_missing_and_partial_layouts(tmp_path):
    root = tinyimagenet(tmp_path / "t")
    assert source_problem(f"tinyimagenet:{root}") is None
    (root / "val" / "val_annotations.txt").unlink()
    for problem in (source_problem(f"tinyimagenet:{root}"), _error(f"tinyimagenet:{root}?val_per_class=2")):
        assert problem.startswith(f"data: {root} has no val/val_annotations.txt; expected Tiny-ImageNet-200")
    root = tinyimagenet(tmp_path / "u")
    (root / "val" / "images" / "val_4.JPEG").unlink()  # listed in the annotations, gone
    assert _error(f"tinyimagenet:{root}?val_per_class=2").startswith(f"data: {root}/val/images/val_4.JPEG cannot "
                                                                      f"be read (No such file or directory)")
    jpeg(root / "val" / "images" / "val_4.JPEG", 1)
    with open(root / "val" / "val_annotations.txt", "a") as f:
        f.write("val_99.JPEG\tn99999999\t0\t0\t1\t1\n")
    assert ":10 is not 'FILE<tab>WNID' with a wnid of wnids.txt" in _error(f"tinyimagenet:{root}")
    assert "val/images has no train/ folder of that class" in _error(f"imagenet:{tmp_path / 't'}")  # Tiny's layout
    (tmp_path / "only-train" / "train" / "n1").mkdir(parents=True)
    assert "only-train has no val/ folder; expected the ILSVRC-2012 layout" in _error(f"imagenet:{tmp_path / 'only-train'}")
    flat = imagenet(tmp_path / "flat" / "CLS-LOC", flat=True)
    (flat / "LOC_val_solution.csv").unlink()
    assert "no LOC_val_solution.csv was found" in _error(f"imagenet:{flat}")
    assert _error(f"tinyimagenet:{tmp_path / 'nowhere'}").startswith("data: 'tinyimagenet:")


def _error(source: str, **options) -> str:
    with pytest.raises(ValueError) as err:
        load_data(source, progress=False, **options)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data: ")
    return message


def test_classes_without_images_are_skipped_with_one_warning(tmp_path):
    root = imagenet(tmp_path / "in", classes=2, train=4, val=1)
    for k in range(10_000):
        (root / "train" / f"empty{k:05d}").mkdir()
    with pytest.warns(DataWarning, match=r"skipped 10,000 class folder\(s\) of .* without training images \(e.g. "
                                         r"'empty00000'\); 2 classes remain") as caught:
        data = load_data(f"imagenet:{root}?val_per_class=1", resolution=8, progress=False)
    assert len(caught) == 1 and data.num_classes == 2 and len(data.classes) == 2
    empty = tmp_path / "none" / "train"
    (empty / "a").mkdir(parents=True)
    (empty.parent / "val" / "a").mkdir(parents=True)
    assert "has no images in any class folder" in _error(f"imagenet:{empty.parent}")


def test_unreadable_images_fifos_and_folders_are_one_line(tmp_path):
    root = imagenet(tmp_path / "in", classes=2, train=4, val=1)
    broken = root / "train" / wnid(1) / "broken.JPEG"
    broken.write_bytes(b"GIF? not really an image")
    assert _error(f"imagenet:{root}?val_per_class=1", resolution=8) == \
        f"data: {broken} is not a readable image (not a format Pillow knows); remove it or replace it"
    broken.write_bytes((root / "train" / wnid(1) / f"{wnid(1)}_0.JPEG").read_bytes()[:200])  # truncated JPEG
    assert _error(f"imagenet:{root}?val_per_class=1", resolution=8).startswith(f"data: {broken} is not a readable "
                                                                                f"image (")
    broken.unlink()
    fifo = root / "train" / wnid(0) / "pipe.JPEG"
    os.mkfifo(fifo)
    with no_hang(30):
        assert _error(f"imagenet:{root}?val_per_class=1") == f"data: {fifo} is a FIFO, not an image file; remove it"
    fifo.unlink()
    (root / "train" / wnid(0) / "folder.JPEG").mkdir()
    assert _error(f"imagenet:{root}?val_per_class=1").endswith("folder.JPEG is a directory, not an image file; "
                                                               "remove it")




def test_fifos_in_listing_files_do_not_hang(tmp_path):
    root = tinyimagenet(tmp_path / "t")
    annotations = root / "val" / "val_annotations.txt"
    lines = annotations.read_text()
    annotations.unlink()
    os.mkfifo(annotations)
    with no_hang(30):
        assert _error(f"tinyimagenet:{root}") == f"data: {annotations} is a FIFO (named pipe), not a file; restore " \
                                                 f"it from the archive"
    annotations.unlink()
    annotations.write_text(lines)
    (root / "val" / "images" / "val_1.JPEG").unlink()
    os.mkfifo(root / "val" / "images" / "val_1.JPEG")
    with no_hang(30):
        assert "val_1.JPEG is a FIFO, not an image file; remove it" in _error(f"tinyimagenet:{root}")


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels (a few dozen bytes: a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    root = imagenet(tmp_path / "in", classes=2, train=4, val=1)
    bomb = root / "train" / wnid(0) / "bomb.png"
    _png_header_only(bomb, 12_000, 12_000)  # 144 Mpx
    message = _error(f"imagenet:{root}?val_per_class=1", resolution=8)
    assert message.startswith(f"data: {bomb} is too large an image (") and "50,000,000 pixels" in message


def _cifar(root, batches):
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        body = batches.get(name, {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]})
        (root / name).write_bytes(body if isinstance(body, bytes) else pickle.dumps(body))
    return root


class _HugeArray:
    """Pickles as numpy.ndarray((6_000_000_000,), uint8): 6 GB if the reader allocated it."""

    def __reduce__(self):
        return (np.ndarray, ((6_000_000_000,), np.dtype(np.uint8)))


class _HugeSubarray:
    """Pickles as numpy's _reconstruct of 100 items of a (10000, 10000) uint8 sub-array dtype: 10 GB."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (100,), np.dtype(("u1", (10_000, 10_000)))))


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10 ** 9]}, "label 1000000000 at row 1 is not a "
                                                                        "CIFAR-10 class"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [-1, 0]}, "label -1 at row 0 is not a CIFAR-10 class"),
    ({b"data": np.full((2, 3072), 300.5), b"labels": [0, 1]}, "b'data' must be uint8 pixels of shape \\(N, 3072\\), "
                                                             "not float64"),
    ({b"data": _HugeArray(), b"labels": [0]}, "over the 64 MiB bound"),
    ({b"data": _HugeSubarray(), b"labels": [0]}, "over the 64 MiB bound"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1]}, "b'labels' must be integers"),
])
def test_hostile_cifar_batches_are_one_line(tmp_path, batch, message):
    root = _cifar(tmp_path / "c", {"data_batch_2": batch})
    error = _error(f"cifar10:{root}")
    assert "data_batch_2" in error and "restore" in error or "expected the CIFAR-10 python layout" in error
    assert __import__("re").search(message, error), error
