"""The one training grid (proxytask.grid): real tiny trainings in spawned processes, the journal
and its resume, and the signal's seed reaching training."""

import json

import numpy as np
import pytest

TINY_PROXY = {"resolution": 16, "max_steps": 2, "batch_size": 8, "bn_recalibration_batches": 1, "eval_batch_size": 64}


def _image_folder(root, classes=3, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            pixels[:, 4 * k:4 * k + 4] += 150
            Image.fromarray(pixels).save(root / f"c{k}" / f"{i}.png")
    return f"imagefolder:{root}"


def _specs():
    from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec

    def tiny(name, width):
        return ArchSpec(name=name, stem=StemSpec(8, 3, 2, "relu"),
                        blocks=(BlockSpec("bneck", 3, 2, 16, width, 0, "relu"),),
                        head=HeadSpec(conv_channels=32, hidden_channels=None, nonlinearity="relu"))

    return {"narrow": tiny("narrow", 8), "wide": tiny("wide", 16)}


def test_the_grid_trains_for_real_and_resumes_after_a_partial_journal(tmp_path):
    from proxytask.grid import train_grid
    from proxytask.profiles import signal

    sig = signal("cpu", data=_image_folder(tmp_path / "img"), overrides=TINY_PROXY)
    journal = tmp_path / "grid" / "runs.jsonl"
    lines = []
    runs = train_grid(_specs(), 2, sig, journal=journal, workers=2, log=lines.append)
    assert set(runs) == {"narrow", "wide"}
    for label, per_seed in runs.items():
        assert [r["seed"] for r in per_seed] == [0, 1]
        for r in per_seed:
            assert r["status"] == "ok" and 0 <= r["val_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
            assert r["last_epoch_loss"] > 0 and r["seconds"] > 0
    records = journal.read_text().splitlines()
    assert len(records) == 4
    # a kill after two records, in the middle of writing the third
    journal.write_text("\n".join(records[:2]) + "\n" + records[2][:25])
    lines.clear()
    again = train_grid(_specs(), 2, sig, journal=journal, workers=2, log=lines.append)
    trained = [line for line in lines if " seed " in line]
    assert len(trained) == 2  # only the two missing trainings ran again
    assert len(journal.read_text().splitlines()) == 4
    kept = {(json.loads(r)["key"]) for r in records[:2]}
    for label, per_seed in again.items():
        for r in per_seed:
            assert r["status"] == "ok"
    # a record kept from the first run is returned as it was
    first = {json.loads(r)["key"]: json.loads(r)["result"] for r in records}
    for key in kept:
        assert first[key]["val_accuracy"] in [r["val_accuracy"] for rs in again.values() for r in rs]


def test_the_signals_random_seed_reaches_training(tmp_path):
    from proxytask.grid import grid_seeds, train_grid
    from proxytask.profiles import signal
    from proxytask.train import train_child

    source = _image_folder(tmp_path / "img")
    sig = signal("cpu", data=source, overrides={**TINY_PROXY, "seed": 7})
    assert grid_seeds(sig, 3) == [7, 8, 9]
    spec = _specs()["wide"]
    runs = train_grid({"wide": spec}, 2, sig, journal=tmp_path / "runs.jsonl", workers=1, log=None)
    assert [r["seed"] for r in runs["wide"]] == [7, 8]
    # the grid's first training is exactly train_child at seed 7 (and not at seed 0)
    data = sig.load()
    at_7 = train_child(spec, data, sig.proxy.replace(seed=7, threads=1))
    at_0 = train_child(spec, data, sig.proxy.replace(seed=0, threads=1))
    assert runs["wide"][0]["train_loss"] == pytest.approx(at_7.train_loss, rel=1e-6)
    assert at_0.train_loss != pytest.approx(at_7.train_loss, rel=1e-6)


def test_the_resume_key_holds_the_resolved_signal_subset_and_seed(tmp_path):
    from proxytask.grid import grid_key
    from proxytask.profiles import signal

    base = "tinyimagenet:/data/tiny-imagenet-200"
    a = signal("cpu", data=base + "?classes=20,per_class=200")
    same = signal("cpu", data=base + "?per_class=200,classes=20")  # one subset spelt two ways
    other = signal("cpu", data=base + "?classes=20,per_class=100")
    key = grid_key(a, "tiny", "abc", 0)
    assert key == grid_key(same, "tiny", "abc", 0)
    assert key != grid_key(other, "tiny", "abc", 0)
    assert key != grid_key(a, "tiny", "abc", 1) and key != grid_key(a, "tiny", "abd", 0)
    assert json.loads(key)["signal"]["subset"]["per_class"] == 200
    # speed-only settings (threads) do not change what a training measures
    assert grid_key(signal("cpu", overrides={"threads": 2}), "d", "h", 0) == grid_key(signal("cpu"), "d", "h", 0)
    assert grid_key(signal("cpu", overrides={"epochs": 2}), "d", "h", 0) != grid_key(signal("cpu"), "d", "h", 0)
