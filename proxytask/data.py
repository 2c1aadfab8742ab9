"""Data sets for the proxy task, as tensors in memory.

:func:`load_data` reads one source:

* ``"default"``: the embedded task (``DEFAULT_DESCRIPTION`` below): 32 x 32 grayscale patches of 17
  real photographs and textures, classified by the image they come from. The images ship inside
  this package (``proxytask/data_files/skimage_photos.npz``, 0.8 MB, derived from the images inside the
  scikit-image wheel by ``proxytask/data_files/derive_default.py``); nothing is downloaded and
  scikit-image is not needed.
* ``"cifar10:PATH"``: CIFAR-10 in its python layout (``PATH`` holds ``data_batch_1`` .. ``5`` and
  ``test_batch``, i.e. the ``cifar-10-batches-py`` folder). Those files are pickles, the data
  set's own format, so this is the one place a pickle is read (``pickle.load(f,
  encoding="bytes")``): only point it at files you trust.
* ``"imagefolder:PATH"``: one sub-folder of images per class; with ``train/`` and ``val/`` sub-folders
  those are the splits, otherwise ``val_fraction`` of every class (chosen with ``seed``) is held out.
  Images are converted to RGB (or L when every image is grayscale) and resized to ``resolution``.

Images are stored as ``uint8`` NCHW tensors (a tenth of the memory of float32); the per-channel
normalisation is applied by :meth:`ProxyData.normalise`, which the training loop calls on every
batch. Labels are int64.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DATA_DIR = Path(__file__).parent / "data_files"


@dataclass(frozen=True)
class ProxyData:
    """Train, validation and test splits in memory.

    ``train_x``/``val_x``/``test_x``: uint8 tensors (N, C, H, W), H = W = ``resolution``;
    ``train_y``/``val_y``/``test_y``: int64 class indices. The search reward and NetAdapt's
    selection read the validation split; every reported accuracy reads the test split, which
    nothing selects on. ``test_x`` is None only for data made by hand without one
    (:func:`from_arrays` without ``test_x``); evaluating its test split is then an error.
    ``mean``/``std``: per-channel statistics of the training images in 0..255 units, used by
    :meth:`normalise`.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    in_channels: int
    resolution: int
    name: str
    description: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32, zero mean and unit variance per channel (training statistics)."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        return (images.float() - mean) / std

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of split ``name``: ``train``, ``val`` or ``test``."""
        if name not in SPLITS:
            raise ValueError(f"split: {name!r} is not one of {', '.join(SPLITS)}")
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if x is None:
            raise ValueError(f"split: {self.name} has no test split; load it with proxytask.load_data, or pass "
                             f"test_x/test_y to from_arrays")
        return x, y

    def to(self, device) -> "ProxyData":
        """The same data with every split on ``device`` (a GPU child reads its batches there)."""
        moved = {f"{s}_{k}": getattr(self, f"{s}_{k}").to(device) for s in SPLITS for k in "xy"
                 if getattr(self, f"{s}_{k}") is not None}
        return replace(self, **moved)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def summary(self) -> str:
        test = f" / {len(self.test_y)} test" if self.test_y is not None else ""
        return (f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val{test} images, "
                f"{self.num_classes} classes, {self.in_channels}x{self.resolution}x{self.resolution}")


SPLITS = ("train", "val", "test")


def from_arrays(train_x, train_y, val_x, val_y, *, test_x=None, test_y=None, name: str, description: str = "",
                classes=(), resolution: int | None = None) -> ProxyData:
    """ProxyData from uint8 arrays (N, C, H, W) or (N, H, W) and integer labels; resized to
    ``resolution`` (antialiased bilinear) when it differs from the images' size."""
    if (test_x is None) != (test_y is None):
        raise ValueError("data: give both test_x and test_y, or neither")
    xs = [_as_nchw(x) for x in (train_x, val_x) + ((test_x,) if test_x is not None else ())]
    if resolution is not None:
        xs = [_resize(x, resolution) for x in xs]
    ys = [torch.as_tensor(np.asarray(y), dtype=torch.int64)
          for y in (train_y, val_y) + ((test_y,) if test_y is not None else ())]
    train_x, val_x = xs[0], xs[1]
    num_classes = int(max(int(y.max()) for y in ys if len(y))) + 1
    pixels = train_x.transpose(0, 1).reshape(train_x.shape[1], -1).double()
    mean = tuple(float(v) for v in pixels.mean(1))
    std = tuple(max(float(v), 1.0) for v in pixels.std(1))
    return ProxyData(train_x, ys[0], val_x, ys[1], num_classes=num_classes, in_channels=train_x.shape[1],
                     resolution=train_x.shape[-1], name=name, description=description, mean=mean, std=std,
                     classes=tuple(classes) or tuple(str(i) for i in range(num_classes)),
                     test_x=xs[2] if len(xs) > 2 else None, test_y=ys[2] if len(ys) > 2 else None)


def _as_nchw(x) -> torch.Tensor:
    x = torch.as_tensor(np.ascontiguousarray(x))
    if x.dtype != torch.uint8:
        raise ValueError(f"data: images must be uint8 (0..255), got {x.dtype}")
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"data: images must be square (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    return x.contiguous()


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution:
        return x
    out = F.interpolate(x.float(), size=(resolution, resolution), mode="bilinear", align_corners=False,
                        antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def _subsample(x, y, size: int | None, seed: int):
    """``size`` rows of (x, y), the same share of every class, chosen with ``seed``."""
    if x is None or size is None or size >= len(y):
        return x, y
    rng = np.random.default_rng(seed)
    y_np = np.asarray(y)
    order = rng.permutation(len(y_np))
    # interleave classes so that any prefix is balanced
    ranks = np.empty(len(y_np), dtype=np.int64)
    for label in np.unique(y_np):
        rows = order[y_np[order] == label]
        ranks[rows] = np.arange(len(rows))
    chosen = np.sort(order[np.argsort(ranks[order], kind="stable")][:size])
    return x[chosen], y_np[chosen]


# --------------------------------------------------------------------------- sources
SOURCE_HELP = ("'default' (the embedded photos), 'cifar10:PATH' (the cifar-10-batches-py folder) or "
               "'imagefolder:PATH' (a folder per class, optionally under train/, val/ and test/)")


def load_data(source: str = "default", resolution: int | None = None, seed: int = 0, *,
              train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
              val_fraction: float = 0.1, test_fraction: float = 0.2, patch: int | None = None) -> ProxyData:
    """Load a proxy data set with train, validation and test splits (see the module docstring).

    ``resolution``: side of the square images (None: the source's own; 32 for image folders).
    ``train_size``/``val_size``/``test_size``: subsample each split to that many images,
    class-balanced, chosen with ``seed``. ``val_fraction``: share of the training images held
    out as validation where a source has no validation split of its own (CIFAR-10, image
    folders without ``val/``), as MnasNet held 50K ImageNet training images out; ``test_fraction``:
    share held out as test where a folder has no split at all. ``patch``: side, in source
    pixels, of the crops of the embedded photos (default :data:`PATCH`). A bad source raises
    ValueError naming it and the fix.
    """
    if not isinstance(source, str):
        raise ValueError(f"data: {source!r} is not a string; write {SOURCE_HELP}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"data: {name}={value!r} must be in (0, 1)")
    kind, _, path = source.partition(":")
    if kind == "default" and not path:
        data = _load_default(resolution, patch or PATCH)
    elif kind == "cifar10" and path:
        data = _load_cifar10(Path(path).expanduser(), resolution, seed, val_fraction)
    elif kind == "imagefolder" and path:
        data = _load_imagefolder(Path(path).expanduser(), resolution or 32, seed, val_fraction, test_fraction)
    else:
        raise ValueError(f"data: {source!r} is not a known source; write {SOURCE_HELP}")
    if train_size is not None or val_size is not None or test_size is not None:
        train_x, train_y = _subsample(data.train_x, data.train_y, train_size, seed)
        val_x, val_y = _subsample(data.val_x, data.val_y, val_size, seed + 1)
        test_x, test_y = _subsample(data.test_x, data.test_y, test_size, seed + 2)
        data = from_arrays(train_x, train_y, val_x, val_y, test_x=test_x, test_y=test_y, name=data.name,
                           description=data.description, classes=data.classes)
    return data


def _hold_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask choosing ``fraction`` of every class (rounded, at least one where a class
    has two or more images), with ``seed``."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(rows)))
        count = max(count, 1) if len(rows) >= 2 else 0
        held[rows[:count]] = True
    return held


class _CifarUnpickler(pickle.Unpickler):
    """Reads the CIFAR-10 batch pickles without running code: only the classes a batch holds
    (numpy arrays, dtypes) may be constructed; anything else is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> object:
    with open(path, "rb") as f:
        try:
            return _CifarUnpickler(f, encoding="bytes").load()
        except Exception as err:  # a damaged or hostile file is a data error, not a crash
            raise ValueError(f"data: {path} is not a CIFAR-10 batch ({type(err).__name__}: {err}); expected the "
                             f"CIFAR-10 python layout (cifar-10-batches-py)") from None


def _load_cifar10(root: Path, resolution: int | None, seed: int, val_fraction: float) -> ProxyData:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not root.is_dir():
        raise ValueError(f"data: 'cifar10:{root}' is not a folder; point it at the CIFAR-10 python layout "
                         f"(cifar-10-batches-py)")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ValueError(f"data: 'cifar10:{root}' has no {missing[0]}; expected the CIFAR-10 python layout "
                         f"(cifar-10-batches-py)")
    parts = []
    for name in names:
        batch = _read_cifar_batch(root / name)
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"data: {root / name} is not a CIFAR-10 batch (no b'data' / b'labels'); "
                             f"expected the CIFAR-10 python layout (cifar-10-batches-py)")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        parts.append((x, np.asarray(batch[b"labels"], dtype=np.int64)))
    classes: tuple[str, ...] = ()
    meta = root / "batches.meta"
    if meta.is_file():
        info = _read_cifar_batch(meta)
        if isinstance(info, dict):
            classes = tuple(n.decode() for n in info.get(b"label_names", []))
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    is_val = _hold_out(train_y, val_fraction, seed)
    return from_arrays(train_x[~is_val], train_y[~is_val], train_x[is_val], train_y[is_val],
                       test_x=parts[5][0], test_y=parts[5][1], name="cifar10", classes=classes,
                       description=f"CIFAR-10 from {root} ({val_fraction:g} of the training batches held out "
                                   f"as validation; test_batch is the test split)", resolution=resolution)


def _load_imagefolder(root: Path, resolution: int, seed: int, val_fraction: float,
                      test_fraction: float) -> ProxyData:
    """Splits: ``train/``, ``val/`` and ``test/`` sub-folders when all three exist; with ``train/``
    and ``val/`` only (the ImageNet layout) ``val/`` is the test split and ``val_fraction`` of
    ``train/`` is held out as validation; a flat folder is split per class into test
    (``test_fraction``), validation (``val_fraction``) and train."""
    from PIL import Image

    if not root.is_dir():
        raise ValueError(f"data: 'imagefolder:{root}' is not a folder; give a folder with one sub-folder of "
                         f"images per class")
    has = {name: (root / name).is_dir() for name in SPLITS}
    if has["test"] and not (has["train"] and has["val"]):
        raise ValueError(f"data: 'imagefolder:{root}' has test/ but not both train/ and val/; give all three, "
                         f"train/ and val/ (val/ is then the test split), or one folder per class")
    class_root = root / "train" if has["train"] and has["val"] else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"data: 'imagefolder:{root}' has no class sub-folders; expected one folder of images "
                         f"per class (optionally under train/, val/ and test/)")

    def read(folder: Path) -> tuple[list[np.ndarray], np.ndarray, bool]:
        images, labels, gray = [], [], True
        for label, name in enumerate(classes):
            files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
                if (folder / name).is_dir() else []
            for path in files:
                try:
                    with Image.open(path) as im:
                        gray &= im.mode in ("L", "1", "I;16", "I")
                        im = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR, reducing_gap=None)
                        images.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
                except (OSError, ValueError) as err:
                    raise ValueError(f"data: {path} is not a readable image ({err}); remove it or replace it") from None
                labels.append(label)
        return images, np.asarray(labels, dtype=np.int64), gray

    if has["train"] and has["val"]:
        tx, ty, gray = read(root / "train")
        if has["test"]:
            vx, vy, g2 = read(root / "val")
            sx, sy, g3 = read(root / "test")
        else:
            sx, sy, g3 = read(root / "val")
            is_val = _hold_out(ty, val_fraction, seed)
            vx, vy, g2 = [im for im, v in zip(tx, is_val) if v], ty[is_val], True
            tx, ty = [im for im, v in zip(tx, is_val) if not v], ty[~is_val]
        gray = gray and g2 and g3
    else:
        images, labels, gray = read(root)
        is_test = _hold_out(labels, test_fraction, seed)
        rest = np.flatnonzero(~is_test)
        is_val = np.zeros(len(labels), dtype=bool)
        is_val[rest[_hold_out(labels[rest], val_fraction / (1 - test_fraction), seed + 1)]] = True
        is_train = ~is_test & ~is_val
        pick = lambda mask: [im for im, m in zip(images, mask) if m]  # noqa: E731
        tx, ty, vx, vy, sx, sy = pick(is_train), labels[is_train], pick(is_val), labels[is_val], \
            pick(is_test), labels[is_test]
    if not len(tx) or not len(vx) or not len(sx):
        raise ValueError(f"data: 'imagefolder:{root}' needs images in all three splits; found {len(tx)} train, "
                         f"{len(vx)} val and {len(sx)} test images (add images, at least 3 per class)")
    stack = (lambda xs: np.stack(xs)[:, :1]) if gray else np.stack
    return from_arrays(stack(tx), ty, stack(vx), vy, test_x=stack(sx), test_y=sy, name=f"imagefolder:{root.name}",
                       classes=classes, description=f"image folder {root}, resized to {resolution}x{resolution}")


# --------------------------------------------------------------------------- the default
DEFAULT_FILE = DATA_DIR / "skimage_photos.npz"
PATCH, CROP_STRIDE, MIN_PATCH_STD = 32, 8, 3.0
DEFAULT_DESCRIPTION = (
    "scikit-image photo patches: 17 classes, one per photograph or texture shipped with scikit-image "
    "(astronaut, brick, camera, cell, cat, clock, coffee, coins, grass, gravel, Hubble deep field, "
    "immunohistochemistry, moon, page, retina, rocket, text; CC0 / public domain), grayscale, 256 x 256. "
    "A square patch is classified by the image it comes from. Each image is cut into a grid of tiles "
    "(4 x 4 tiles of 64 px for patches up to 48 px, 2 x 2 of 128 px above); tile (row r, column c) "
    "belongs to validation when (c + 2r) mod 4 = 0, to test when it is 2, to training otherwise, so "
    "every row and column of tiles feeds each split and no patch shares a pixel with another split. "
    "Patches are cut every 8 px inside each tile (every 4 px for 33 to 48 px patches); nearly flat "
    "patches (pixel std < 3, i.e. blank "
    "background) carry no class and are dropped.")


def _load_default(resolution: int | None, patch: int = PATCH) -> ProxyData:
    """The embedded task (DEFAULT_DESCRIPTION), cut deterministically from proxytask/data_files/skimage_photos.npz."""
    if not DEFAULT_FILE.is_file():
        raise ValueError(f"data: 'default' needs {DEFAULT_FILE}, which is missing; reinstall the package or "
                         f"run python -m proxytask.data_files.derive_default")
    if not isinstance(patch, int) or not 8 <= patch <= 128:
        raise ValueError(f"data: patch={patch!r} must be an integer from 8 to 128 (source pixels)")
    with np.load(DEFAULT_FILE) as archive:
        images, names = archive["images"], [str(n) for n in archive["names"]]
    from numpy.lib.stride_tricks import sliding_window_view

    tile = 64 if patch <= 48 else 128
    # crops over 32 px in 64 px tiles: every 4 px, so that a tile still gives 25 of them
    stride = CROP_STRIDE // 2 if tile == 64 and patch > 32 else CROP_STRIDE
    step = tile // stride
    split: dict[int, tuple[list, list]] = {k: ([], []) for k in range(3)}  # 0 train, 1 val, 2 test
    for label, image in enumerate(images):
        windows = sliding_window_view(image, (patch, patch))[::stride, ::stride]
        # window (i, j) starts at (stride i, stride j); it lies inside tile (i // step, j // step)
        # when i % step, j % step <= (tile - patch) / stride
        rows = np.flatnonzero(np.arange(windows.shape[0]) % step <= (tile - patch) // stride)
        cols = np.flatnonzero(np.arange(windows.shape[1]) % step <= (tile - patch) // stride)
        patches = windows[rows][:, cols]  # (rows, cols, patch, patch)
        tile_r, tile_c = np.meshgrid(rows // step, cols // step, indexing="ij")
        code = (tile_c + 2 * tile_r) % 4
        which = np.where(code == 0, 1, np.where(code == 2, 2, 0))
        keep = patches.std(axis=(-1, -2)) >= MIN_PATCH_STD
        for k in range(3):
            chosen = patches[keep & (which == k)]
            split[k][0].append(chosen)
            split[k][1].append(np.full(len(chosen), label))
    (tx, ty), (vx, vy), (sx, sy) = [(np.concatenate(xs), np.concatenate(ys)) for xs, ys in split.values()]
    return from_arrays(tx, ty, vx, vy, test_x=sx, test_y=sy, name=f"skimage-patches-{patch}", classes=names,
                       description=DEFAULT_DESCRIPTION, resolution=resolution)
