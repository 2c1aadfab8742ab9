"""Proxy task: the data loaders (embedded, CIFAR-10 layout, image folder) and real training on tiny inputs."""

import json
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from proxytask.data import ProxyData, from_arrays, load_data
from proxytask.train import (ProxyConfig, TrainingDiverged, build_child, evaluate, learning_rate, recalibrate_bn, torch_threads,
                       train, train_child)
from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec

TINY = ArchSpec(
    name="tiny", stem=StemSpec(out_channels=8, kernel=3, stride=2, nonlinearity="relu"),
    blocks=(BlockSpec("bneck", 3, 1, 16, 8, 0, "relu"), BlockSpec("bneck", 3, 2, 24, 16, 8, "hswish")),
    head=HeadSpec(conv_channels=32, hidden_channels=None), num_classes=4, resolution=16, dropout=0.0)
FAST = ProxyConfig(epochs=4, batch_size=16, lr=0.1, bn_recalibration_batches=2, eval_batch_size=64)


def blobs(n_train=64, n_val=32, classes=4, resolution=16, channels=1, seed=0) -> ProxyData:
    """Images whose class is the position of a bright square: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % classes
        x = rng.integers(0, 60, size=(n, channels, resolution, resolution)).astype(np.uint8)
        half = resolution // 2
        for i, label in enumerate(y):
            r, c = divmod(int(label), 2)
            x[i, :, r * half:(r + 1) * half, c * half:(c + 1) * half] += 150
        return x, y

    (tx, ty), (vx, vy) = make(n_train), make(n_val)
    return from_arrays(tx, ty, vx, vy, name="blobs")


@pytest.fixture(autouse=True)
def one_thread():
    """Direct calls of train() run with one thread, like train_child: no oversubscription on a busy machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data() -> ProxyData:
    return blobs()


# --------------------------------------------------------------------------- loaders
def test_default_data_is_embedded_real_images():
    data = load_data("default")
    assert data.train_x.dtype == torch.uint8 and data.train_x.dim() == 4
    assert data.train_x.shape[1:] == (data.in_channels, data.resolution, data.resolution)
    assert len(data.train_x) == len(data.train_y) >= 1000 and len(data.val_x) == len(data.val_y) >= 500
    assert data.num_classes == len(data.classes) == 17 and data.classes[0] == "astronaut"
    assert data.in_channels == 1 and data.resolution == 32
    assert set(data.train_y.tolist()) == set(range(data.num_classes)) == set(data.val_y.tolist()) \
        == set(data.test_y.tolist())
    assert len(data.test_x) == len(data.test_y) >= 500
    assert data.train_x.float().std() > 10  # images, not blanks
    x = data.normalise(data.train_x[:512])
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 2
    assert load_data("default", resolution=24).train_x.shape[-1] == 24
    small = load_data("default", train_size=100, val_size=50, test_size=40, seed=3)
    assert len(small.train_y) == 100 and len(small.val_y) == 50 and len(small.test_y) == 40


def test_default_source_images_match_their_derivation(tmp_path):
    from proxytask.data import DEFAULT_FILE
    from proxytask.data_files import derive_default

    with np.load(DEFAULT_FILE) as archive:
        assert archive["images"].shape == (17, 256, 256) and archive["images"].dtype == np.uint8
        assert list(archive["names"]) == list(derive_default.FILES)
        shipped = {k: archive[k] for k in archive.files}
    pytest.importorskip("skimage")
    data_dir = derive_default.skimage_data_dir()
    if not all((data_dir / f).is_file() for f in derive_default.FILES.values()):
        pytest.skip("this scikit-image ships other sample images")
    with np.load(derive_default.derive(data_dir, tmp_path / "again.npz")) as again:
        if list(again["sha256"]) != list(shipped["sha256"]):
            pytest.skip("this scikit-image's sample images differ from those the archive was made from")
        assert np.array_equal(again["images"], shipped["images"])


def _write_cifar(root, per_batch=6):
    root.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.zeros((per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        for j, label in enumerate(labels):
            data[j, :1024] = 20 * label  # red plane encodes the label
            data[j, 2048] = 255  # first blue pixel
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{k}".encode() for k in range(10)]}, f)


def test_cifar10_layout(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", val_fraction=0.2)
    # the test batch is the test split; a fifth of the training batches (per class) is validation
    assert data.train_x.shape[0] + data.val_x.shape[0] == 30 and data.test_x.shape == (6, 3, 32, 32)
    assert 4 <= data.val_x.shape[0] <= 10
    assert data.classes == tuple(f"c{k}" for k in range(10)) and data.num_classes == 10
    assert torch.equal(data.train_x[:, 0, 5, 7], (20 * data.train_y).to(torch.uint8))  # channel-major rows
    assert int(data.train_x[0, 2, 0, 0]) == 255 and int(data.train_x[0, 2, 0, 1]) == 0
    small = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", resolution=16, train_size=10)
    assert small.train_x.shape == (10, 3, 16, 16) and small.test_x.shape[-1] == 16


def test_cifar10_errors(tmp_path):
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"data: 'cifar10:.*' has no data_batch_3; expected the CIFAR-10 python"):
        load_data(f"cifar10:{tmp_path / 'c'}")
    with pytest.raises(ValueError, match="is not a folder"):
        load_data(f"cifar10:{tmp_path / 'nowhere'}")


def _write_images(folder, colours, count, mode="RGB"):
    for name, colour in colours.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.new(mode, (40 + i, 30), colour).save(folder / name / f"{i}.png")


def test_imagefolder(tmp_path):
    _write_images(tmp_path / "flat", {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}, 5)
    data = load_data(f"imagefolder:{tmp_path / 'flat'}", resolution=8, seed=1, val_fraction=0.2, test_fraction=0.2)
    assert data.classes == ("blue", "green", "red") and data.in_channels == 3 and data.resolution == 8
    assert len(data.train_y) == 9 and len(data.val_y) == 3 and len(data.test_y) == 3
    red = data.classes.index("red")
    assert (data.train_x[data.train_y == red][:, 0] == 255).all() and (data.train_x[data.train_y == red][:, 1] == 0).all()
    _write_images(tmp_path / "split" / "train", {"a": 10, "b": 200}, 3, mode="L")
    _write_images(tmp_path / "split" / "val", {"a": 10, "b": 200}, 2, mode="L")
    split = load_data(f"imagefolder:{tmp_path / 'split'}", resolution=12, val_fraction=0.34)
    # ImageNet layout: val/ is the test split, a share of train/ (one image per class here) validation
    assert split.train_x.shape == (4, 1, 12, 12) and split.val_x.shape == (2, 1, 12, 12)
    assert split.test_x.shape == (4, 1, 12, 12) and split.test_x[split.test_y == 1].min() == 200


@pytest.mark.parametrize("source, message", [
    ("mnist", "not a known source; write 'default'"),
    ("cifar10:", "not a known source"),
    ("imagefolder:/no/such/folder", "is not a folder"),
    (3, "is not a string"),
])
def test_bad_sources(source, message):
    with pytest.raises(ValueError, match=f"^data: .*{message}"):
        load_data(source)


def test_imagefolder_without_classes(tmp_path):
    with pytest.raises(ValueError, match="has no class sub-folders"):
        load_data(f"imagefolder:{tmp_path}")


# --------------------------------------------------------------------------- training
def test_loss_decreases_on_a_fixed_batch():
    data = blobs(n_train=16)  # one batch: every step sees the same images
    config = ProxyConfig(batch_size=16, lr=0.05, schedule="constant", augment="none", label_smoothing=0.0,
                         max_steps=40)
    torch.manual_seed(0)
    model = build_child(TINY, data, config)
    first = train(model, data, config, steps=1)
    train(model, data, config, steps=30, start_step=1)
    last = train(model, data, config, steps=1, start_step=31)
    assert math.isfinite(first) and last < 0.5 * first


def test_train_child_scores_and_reports(data):
    reports = []
    result = train_child(TINY, data, FAST, report=reports.append)
    assert result.status == "ok" and result.reason == "" and result.ok
    assert 0.0 <= result.accuracy <= 1.0 and result.val_loss < math.log(4)  # better than chance
    assert result.steps == FAST.total_steps(data) == 16 and result.seconds > 0
    assert math.isfinite(result.val_loss) and math.isfinite(result.train_loss)
    assert [r["epoch"] for r in reports] == [1.0, 2.0, 3.0, 4.0] and reports[-1]["done"] is True
    assert "accuracy" not in reports[0] and reports[-1]["accuracy"] == result.accuracy
    assert result.to_dict()["spec_hash"] == TINY.hash


def test_train_child_is_reproducible(data):
    a, b = train_child(TINY, data, FAST), train_child(TINY, data, FAST)
    assert (a.accuracy, a.val_loss, a.train_loss) == (b.accuracy, b.val_loss, b.train_loss)
    c = train_child(TINY, data, FAST.replace(seed=1))
    assert c.train_loss != a.train_loss


def test_slices_of_the_schedule_equal_one_run(data):
    # Without momentum (the only state a fresh optimizer per slice loses), NetAdapt's slices of
    # the schedule train exactly like one run: same batches, flips and learning rates.
    config = FAST.replace(schedule="cosine", momentum=0.0, augment="flip")
    assert config.total_steps(data) == 16
    whole = build_child(TINY, data, config)
    train(whole, data, config)
    sliced = build_child(TINY, data, config)
    train(sliced, data, config, steps=5)
    train(sliced, data, config, start_step=5)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), sliced.state_dict().values()))


def test_diverging_child_is_reported_not_raised(data):
    result = train_child(TINY, data, FAST.replace(lr=1e6))  # gradient clipping does not save it
    assert result.status == "diverged" and math.isnan(result.accuracy)
    assert "loss became" in result.reason and "lower the learning rate" in result.reason
    with pytest.raises(TrainingDiverged):
        train(build_child(TINY, data, FAST), data, FAST.replace(lr=1e6, grad_clip_norm=None))


def test_broken_child_is_an_error_not_an_exception(data):
    result = train_child(None, data, FAST)
    assert result.status == "error" and "AttributeError" in result.reason


def test_recalibrated_statistics_are_the_data_statistics(data):
    config = FAST.replace(batch_size=16)
    model = build_child(TINY, data, config)
    recalibrate_bn(model, data, batches=4, config=config)  # 4 x 16 = every training image once
    stem_conv, stem_bn = model.features[0][0], model.features[0][1]
    with torch.no_grad():
        out = stem_conv(data.normalise(data.train_x))
    assert torch.allclose(stem_bn.running_mean, out.mean((0, 2, 3)), atol=1e-4)
    assert stem_bn.momentum == config.bn_momentum and not model.training


def test_evaluate_counts_correct_answers(data):
    model = build_child(TINY, data, FAST).eval()
    accuracy, loss = evaluate(model, data, FAST)
    with torch.no_grad():
        logits = model(data.normalise(data.val_x))
    assert accuracy == float((logits.argmax(1) == data.val_y).float().mean())
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, data.val_y)), rel=1e-5)


def test_schedule_and_config():
    config = ProxyConfig(lr=0.2, warmup_fraction=0.1)
    lrs = [learning_rate(s, 100, config)[0] for s in range(100)]
    assert max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 9
    assert lrs[0] < 0.2 / 5 and lrs[-1] < 0.001 and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert learning_rate(50, 100, config.replace(schedule="constant"))[0] == 0.2
    with pytest.raises(ValueError, match="ProxyConfig.optimizer: 'lamb' is not one of sgd, adamw"):
        ProxyConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="ProxyConfig.nope: unknown field"):
        ProxyConfig.from_dict({"nope": 1})


def test_device_setting():
    with pytest.raises(ValueError, match="ProxyConfig.device: 'gpu' must be cpu, cuda, cuda:N or auto"):
        ProxyConfig(device="gpu")
    assert ProxyConfig(device="cuda:1").device == "cuda:1"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ProxyConfig(device="auto").torch_device().type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_scored_error(data):
    result = train_child(TINY, data, FAST.replace(device="cuda"))
    assert result.status == "error" and "ProxyConfig.device: 'cuda' but torch sees no CUDA device" in result.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu(data):
    # Same seed, same batches: a child trained on the GPU scores like the CPU one (float
    # reductions differ in order, so the losses agree to rounding, not bit for bit).
    cpu, gpu = train_child(TINY, data, FAST), train_child(TINY, data, FAST.replace(device="cuda"))
    assert gpu.status == "ok", gpu.reason
    assert gpu.train_loss == pytest.approx(cpu.train_loss, rel=1e-3)
    assert gpu.val_loss == pytest.approx(cpu.val_loss, rel=1e-2)


# --------------------------------------------------------------------------- the benchmark
def test_summary_statistics():
    from experiments.benchmarks.proxy_discrimination import summarise

    accuracies = {0: (0.30, 0.32), 1: (0.50, 0.55), 2: (0.40, 0.41), 3: (0.60, 0.58)}
    runs = [{"child": c, "seed": s, "accuracy": a[i], "seconds": 1.0 + c, "cpu_seconds": 1.0, "status": "ok",
             "reason": ""} for c, a in accuracies.items() for i, s in enumerate((0, 1))]
    summary = summarise(runs, [0, 1], ["a", "b", "c", "d"])
    assert summary["spearman"] == pytest.approx(1.0) and summary["children_ok"] == 4
    assert summary["spread_points"] == pytest.approx(100 * (0.59 - 0.31))
    assert summary["seconds_per_child"] == pytest.approx(2.5) and summary["accuracy"]["b"] == [0.50, 0.55]


TINY_SPACE = """
name: tiny
resolution: 16
num_classes: 4
dropout: 0.0
stem: {out_channels: 8, kernel: 3, stride: 2, nonlinearity: relu}
stages:
- {out_channels: 8, layers: 1, stride: 1}
- {out_channels: 16, layers: 1, stride: 2}
head: {conv_channels: 32, hidden_channels: null, nonlinearity: hswish}
choices:
  operator: [dsconv, mbconv3]
  kernel: [3, 5]
  se: [0, 0.25]
  skip: [identity]
  width: [1.0]
  layers: [0, 1]
  nonlinearity: [relu, hswish]
"""


def test_discrimination_run_writes_and_resumes(tmp_path, data, capsys):
    from experiments.benchmarks.proxy_discrimination import run_discrimination

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    config = ProxyConfig(max_steps=3, batch_size=16, bn_recalibration_batches=1)
    out = tmp_path / "proxy.json"
    first = run_discrimination(children_count=3, seeds=(0, 1), space=str(space), data=data, config=config, workers=1,
                               out=out)
    assert first["children_ok"] == 3 and len(first["runs"]) == 6 and -1 <= first["spearman"] <= 1
    assert json.loads(out.read_text())["settings"]["config"]["max_steps"] == 3
    assert len((tmp_path / "proxy.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    again = run_discrimination(children_count=3, seeds=(0, 1), space=str(space), data=data, config=config, workers=1,
                               out=out)
    assert "child" not in capsys.readouterr().out  # everything came from the journal
    assert again["accuracy"] == first["accuracy"]


# --------------------------------------------------------------------------- honest splits
def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(image.numpy().tobytes()) for image in x}


@pytest.mark.parametrize("patch", [32, 48])
def test_default_splits_share_no_image_and_no_pixel(patch):
    data = load_data("default", patch=patch)
    train, val, test = _rows(data.train_x), _rows(data.val_x), _rows(data.test_x)
    assert not (train & val) and not (train & test) and not (val & test)
    # tiles: every 64 px tile feeds one split only, so no patch of one split overlaps another's
    assert len(data.train_y) > len(data.val_y) > 0 and len(data.test_y) > 0


@pytest.mark.parametrize("patch", [32, 48, 64])
def test_default_splits_share_no_source_pixel(patch):
    """Pixel-level disjointness, found without the loader's bookkeeping: every patch the loader
    returns is located in its photograph by an exact search over every pixel offset, each split's
    coverage mask is rebuilt from those positions, and no source pixel may lie under patches of
    two splits (a window moved one pixel into a neighbour's tile would show here)."""
    from proxytask.data import DEFAULT_FILE

    from numpy.lib.stride_tricks import sliding_window_view

    data = load_data("default", patch=patch)
    with np.load(DEFAULT_FILE) as archive:
        photos = archive["images"]
    splits = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y),
              "test": (data.test_x, data.test_y)}
    for label, photo in enumerate(photos):
        last = photo.shape[0] - patch + 1
        # a key per offset: the 8 pixels right of it, as one integer; candidates are then checked whole
        keys = np.ascontiguousarray(sliding_window_view(photo, (1, 8))[:last, :last, 0]).view(np.uint64)[..., 0]
        covered = {}
        for name, (x, y) in splits.items():
            mask = np.zeros(photo.shape, dtype=bool)
            for patch_pixels in x[y == label][:, 0].numpy():
                rows, cols = np.nonzero(keys == np.ascontiguousarray(patch_pixels[0, :8]).view(np.uint64)[0])
                places = [(i, j) for i, j in zip(rows, cols)
                          if np.array_equal(photo[i:i + patch, j:j + patch], patch_pixels)]
                assert places, f"a {name} patch of class {label} is not a crop of its photograph"
                for i, j in places:  # every place it occurs (conservative when a crop repeats)
                    mask[i:i + patch, j:j + patch] = True
            covered[name] = mask
        assert covered["train"].any() and covered["val"].any() and covered["test"].any()
        assert not (covered["train"] & covered["val"]).any(), f"class {label}: train and val share a pixel"
        assert not (covered["train"] & covered["test"]).any(), f"class {label}: train and test share a pixel"
        assert not (covered["val"] & covered["test"]).any(), f"class {label}: val and test share a pixel"
        if patch <= 48:  # the text's claim: odd tile columns (64 px) are training only, every row feeds each split
            tiles = {n: m.reshape(4, 64, 4, 64).any(axis=(1, 3)) for n, m in covered.items()}
            assert not tiles["val"][:, 1::2].any() and not tiles["test"][:, 1::2].any()
            assert not tiles["train"][:, 0::2].any()


def test_imagefolder_three_splits_share_no_file(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(10):  # every image distinct, so equal bytes would mean the same file
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "f" / name / f"{i}.png")
    data = load_data(f"imagefolder:{tmp_path / 'f'}", resolution=8, val_fraction=0.2, test_fraction=0.3)
    train, val, test = _rows(data.train_x), _rows(data.val_x), _rows(data.test_x)
    assert len(train) + len(val) + len(test) == 20
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(test) == 6 and len(val) == 4
    for name in ("train", "val", "test"):
        for cls in ("a", "b"):
            (tmp_path / "g" / name / cls).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "g" / name / cls / "0.png")
    given = load_data(f"imagefolder:{tmp_path / 'g'}", resolution=8)
    assert (len(given.train_y), len(given.val_y), len(given.test_y)) == (2, 2, 2)


def test_imagefolder_too_small_for_three_splits(tmp_path):
    _write_images(tmp_path / "one", {"a": 10, "b": 20}, 1, mode="L")
    with pytest.raises(ValueError, match="needs images in all three splits"):
        load_data(f"imagefolder:{tmp_path / 'one'}", resolution=8)


def test_cifar_reader_refuses_code_in_a_pickle(tmp_path):
    _write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "c" / "data_batch_2", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(ValueError, match=r"data_batch_2 is not a CIFAR-10 batch .*builtins.print is not allowed"):
        load_data(f"cifar10:{tmp_path / 'c'}")


def test_test_split_is_scored_apart_from_validation(data):
    """train_child reports validation (what selects) and test (what is reported) separately."""
    # the test split holds the validation images with every label moved to the next class
    with_test = from_arrays(data.train_x, data.train_y, data.val_x, data.val_y, test_x=data.val_x,
                            test_y=(data.val_y + 1) % 4, name="blobs+shifted")
    result = train_child(TINY, with_test, FAST)
    assert result.ok and result.accuracy > 0.4  # above chance (0.25) on validation
    assert result.test_accuracy <= 1 - result.accuracy  # a right answer on val is a wrong one on test
    assert math.isnan(train_child(TINY, data, FAST).test_accuracy)  # no test split given: NaN, not val
    with pytest.raises(ValueError, match="has no test split"):
        evaluate(build_child(TINY, data, FAST), data, FAST, split="test")


# --------------------------------------------------------------------------- profiles
def test_signal_profiles_and_overrides():
    from proxytask.profiles import signal

    cpu = signal("cpu")
    gpu = signal("gpu")
    assert cpu.proxy.device == "cpu" and gpu.proxy.device == "cuda"
    assert gpu.proxy.channels_last and gpu.proxy.amp == "bf16"
    assert signal("cpu", overrides={"epochs": 0.5}).proxy.epochs == 0.5
    with pytest.raises(ValueError, match="profile: 'tpu' is not one of cpu, gpu"):
        signal("tpu")
    with pytest.raises(ValueError, match="ProxyConfig.bogus: unknown field"):
        signal("cpu", overrides={"bogus": 1})
    with pytest.raises(ValueError, match="ProxyConfig.amp"):
        signal("cpu", overrides={"amp": "fp8"})


def test_the_cpu_signal_trains_on_tiny_inputs():
    """The default signal end to end on a slice of the embedded data: real steps, val and test scored."""
    from proxytask.profiles import signal

    sig = signal("cpu", overrides={"epochs": 3, "max_steps": 3, "resolution": 24, "bn_recalibration_batches": 1})
    tiny = sig.load(train_size=96, val_size=48, test_size=48)
    assert tiny.resolution == 24 and tiny.test_y is not None
    result = train_child(TINY.replace(num_classes=tiny.num_classes), tiny, sig.proxy)
    assert result.ok and result.steps == 3
    assert 0 <= result.accuracy <= 1 and 0 <= result.test_accuracy <= 1


def test_channels_last_trains_like_contiguous(data):
    dense = train_child(TINY, data, FAST)
    nhwc = train_child(TINY, data, FAST.replace(channels_last=True))
    assert nhwc.ok and abs(nhwc.train_loss - dense.train_loss) < 1e-3


def test_linear_layers_get_a_fan_in_init_for_the_short_proxy():
    """N(0, 1/fan_in) for every fully connected layer (independent count: 1/sqrt(in_features)),
    seeded, leaving convolutions to the builder; ``linear_init=builder`` keeps N(0, 0.01)."""
    from search_spaces import reference

    data = blobs(n_train=16, n_val=8)
    spec = reference("mobilenet_v3_small", 1.0, 32)
    model = build_child(spec, data, FAST)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] == [576, 1024]  # Table 2: 576 -> 1024 -> classes
    for m in linears:
        assert float(m.weight.detach().std()) == pytest.approx(m.in_features ** -0.5, rel=0.05)
        assert float(m.bias.detach().abs().max()) == 0
    again = build_child(spec, data, FAST)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    builder = build_child(spec, data, FAST.replace(linear_init="builder"))
    assert float([m for m in builder.modules() if isinstance(m, torch.nn.Linear)][0].weight.detach().std()) \
        == pytest.approx(0.01, rel=0.05)
