"""Data sets for the proxy task, as tensors in memory.

:func:`load_data` reads one source:

* ``"default"``: the embedded task (``DEFAULT_DESCRIPTION`` below): 32 x 32 grayscale patches of 17
  real photographs and textures, classified by the image they come from. The images ship inside
  this package (``nas/data_files/skimage_photos.npz``, 0.8 MB, derived from the images inside the
  scikit-image wheel by ``nas/data_files/derive_default.py``); nothing is downloaded and
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DATA_DIR = Path(__file__).parent / "data_files"


@dataclass(frozen=True)
class ProxyData:
    """Train and validation splits in memory.

    ``train_x``/``val_x``: uint8 tensors (N, C, H, W), H = W = ``resolution``; ``train_y``/``val_y``:
    int64 class indices. ``mean``/``std``: per-channel statistics of the training images in 0..255
    units, used by :meth:`normalise`.
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

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32, zero mean and unit variance per channel (training statistics)."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() - mean) / std

    def summary(self) -> str:
        return (f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val images, {self.num_classes} classes, "
                f"{self.in_channels}x{self.resolution}x{self.resolution}")


def from_arrays(train_x, train_y, val_x, val_y, *, name: str, description: str = "", classes=(),
                resolution: int | None = None) -> ProxyData:
    """ProxyData from uint8 arrays (N, C, H, W) or (N, H, W) and integer labels; resized to
    ``resolution`` (antialiased bilinear) when it differs from the images' size."""
    train_x, val_x = _as_nchw(train_x), _as_nchw(val_x)
    if resolution is not None:
        train_x, val_x = _resize(train_x, resolution), _resize(val_x, resolution)
    train_y = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    val_y = torch.as_tensor(np.asarray(val_y), dtype=torch.int64)
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    pixels = train_x.transpose(0, 1).reshape(train_x.shape[1], -1).double()
    mean = tuple(float(v) for v in pixels.mean(1))
    std = tuple(max(float(v), 1.0) for v in pixels.std(1))
    return ProxyData(train_x, train_y, val_x, val_y, num_classes=num_classes, in_channels=train_x.shape[1],
                     resolution=train_x.shape[-1], name=name, description=description, mean=mean, std=std,
                     classes=tuple(classes) or tuple(str(i) for i in range(num_classes)))


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
    if size is None or size >= len(y):
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
def load_data(source: str = "default", resolution: int | None = None, seed: int = 0, *,
              train_size: int | None = None, val_size: int | None = None, val_fraction: float = 0.2) -> ProxyData:
    """Load a proxy data set (see the module docstring for the sources).

    ``resolution``: side of the square images (None: the source's own; 32 for image folders).
    ``train_size``/``val_size``: subsample each split to that many images, class-balanced, chosen
    with ``seed``. A bad source raises ValueError naming it and the fix.
    """
    if not isinstance(source, str):
        raise ValueError(f"data: {source!r} is not a string; write 'default', 'cifar10:PATH' or 'imagefolder:PATH'")
    kind, _, path = source.partition(":")
    if kind == "default" and not path:
        data = _load_default(resolution)
    elif kind == "cifar10" and path:
        data = _load_cifar10(Path(path).expanduser(), resolution)
    elif kind == "imagefolder" and path:
        data = _load_imagefolder(Path(path).expanduser(), resolution or 32, seed, val_fraction)
    else:
        raise ValueError(f"data: {source!r} is not a known source; write 'default', 'cifar10:PATH' "
                         f"(the cifar-10-batches-py folder) or 'imagefolder:PATH' (a folder per class)")
    if train_size is not None or val_size is not None:
        train_x, train_y = _subsample(data.train_x, data.train_y, train_size, seed)
        val_x, val_y = _subsample(data.val_x, data.val_y, val_size, seed + 1)
        data = from_arrays(train_x, train_y, val_x, val_y, name=data.name, description=data.description,
                           classes=data.classes)
    return data


def _load_cifar10(root: Path, resolution: int | None) -> ProxyData:
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
        with open(root / name, "rb") as f:
            # The data set's own format is a pickle; encoding="bytes" reads its Python 2 strings as bytes.
            batch = pickle.load(f, encoding="bytes")
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"data: {root / name} is not a CIFAR-10 batch (no b'data' / b'labels'); "
                             f"expected the CIFAR-10 python layout (cifar-10-batches-py)")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        parts.append((x, np.asarray(batch[b"labels"], dtype=np.int64)))
    classes: tuple[str, ...] = ()
    meta = root / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            classes = tuple(n.decode() for n in pickle.load(f, encoding="bytes").get(b"label_names", []))
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    return from_arrays(train_x, train_y, parts[5][0], parts[5][1], name="cifar10", classes=classes,
                       description=f"CIFAR-10 from {root}", resolution=resolution)


def _load_imagefolder(root: Path, resolution: int, seed: int, val_fraction: float) -> ProxyData:
    from PIL import Image

    if not root.is_dir():
        raise ValueError(f"data: 'imagefolder:{root}' is not a folder; give a folder with one sub-folder of "
                         f"images per class")
    splits = [root / "train", root / "val"]
    split_given = all(s.is_dir() for s in splits)
    class_root = splits[0] if split_given else root
    classes = sorted(p.name for p in class_root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"data: 'imagefolder:{root}' has no class sub-folders; expected one folder of images "
                         f"per class (optionally under train/ and val/)")

    def read(folder: Path) -> tuple[list[np.ndarray], list[int], bool]:
        images, labels, gray = [], [], True
        for label, name in enumerate(classes):
            files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            for path in files:
                with Image.open(path) as im:
                    gray &= im.mode in ("L", "1", "I;16", "I")
                    im = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR, reducing_gap=None)
                    images.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
                labels.append(label)
        return images, labels, gray

    if split_given:
        (tx, ty, g1), (vx, vy, g2) = read(splits[0]), read(splits[1])
        gray = g1 and g2
    else:
        images, labels, gray = read(root)
        rng = np.random.default_rng(seed)
        labels_np = np.asarray(labels)
        val_rows = []
        for label in range(len(classes)):
            rows = rng.permutation(np.flatnonzero(labels_np == label))
            val_rows.extend(rows[: int(round(val_fraction * len(rows)))])
        is_val = np.zeros(len(labels), dtype=bool)
        is_val[val_rows] = True
        tx = [im for im, v in zip(images, is_val) if not v]
        ty = [lab for lab, v in zip(labels, is_val) if not v]
        vx = [im for im, v in zip(images, is_val) if v]
        vy = [lab for lab, v in zip(labels, is_val) if v]
    if not tx or not vx:
        raise ValueError(f"data: 'imagefolder:{root}' needs images in both splits; found {len(tx)} train and "
                         f"{len(vx)} val images (add images or lower val_fraction)")
    stack = (lambda xs: np.stack(xs)[:, :1]) if gray else np.stack
    return from_arrays(stack(tx), ty, stack(vx), vy, name=f"imagefolder:{root.name}", classes=classes,
                       description=f"image folder {root}, resized to {resolution}x{resolution}")


# --------------------------------------------------------------------------- the default
DEFAULT_FILE = DATA_DIR / "skimage_photos.npz"
PATCH, TILE, CROP_STRIDE, MIN_PATCH_STD = 32, 64, 8, 3.0
DEFAULT_DESCRIPTION = (
    "scikit-image photo patches: 17 classes, one per photograph or texture shipped with scikit-image "
    "(astronaut, brick, camera, cell, cat, clock, coffee, coins, grass, gravel, Hubble deep field, "
    "immunohistochemistry, moon, page, retina, rocket, text; CC0 / public domain), grayscale, 256 x 256. "
    "A 32 x 32 patch is classified by the image it comes from. Each image is cut into 4 x 4 tiles of "
    "64 px; one tile per row (a diagonal pattern) is held out for validation, so validation patches share "
    "no pixel with training ones. Patches are cut every 8 px inside each tile (25 per tile); nearly flat "
    "patches (pixel std < 3, i.e. blank background) carry no class and are dropped.")


def _load_default(resolution: int | None) -> ProxyData:
    """The embedded task (DEFAULT_DESCRIPTION), cut deterministically from nas/data_files/skimage_photos.npz."""
    if not DEFAULT_FILE.is_file():
        raise ValueError(f"data: 'default' needs {DEFAULT_FILE}, which is missing; reinstall the package or "
                         f"run python -m nas.data_files.derive_default")
    with np.load(DEFAULT_FILE) as archive:
        images, names = archive["images"], [str(n) for n in archive["names"]]
    from numpy.lib.stride_tricks import sliding_window_view

    step = TILE // CROP_STRIDE
    split: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}
    for label, image in enumerate(images):
        windows = sliding_window_view(image, (PATCH, PATCH))[::CROP_STRIDE, ::CROP_STRIDE]
        # window (i, j) starts at (8i, 8j); it lies inside tile (i // 8, j // 8) when i % 8, j % 8 <= 4
        inside = np.arange(windows.shape[0]) % step <= (TILE - PATCH) // CROP_STRIDE
        rows = np.flatnonzero(inside)
        cols = np.flatnonzero(np.arange(windows.shape[1]) % step <= (TILE - PATCH) // CROP_STRIDE)
        patches = windows[rows][:, cols]  # (rows, cols, PATCH, PATCH)
        tile_r, tile_c = np.meshgrid(rows // step, cols // step, indexing="ij")
        is_val = (tile_c + 2 * tile_r) % 4 == 0
        keep = patches.std(axis=(-1, -2)) >= MIN_PATCH_STD
        for held_out in (False, True):
            chosen = patches[keep & (is_val == held_out)]
            split[held_out][0].append(chosen)
            split[held_out][1].append(np.full(len(chosen), label))
    (tx, ty), (vx, vy) = [(np.concatenate(xs), np.concatenate(ys)) for xs, ys in (split[False], split[True])]
    return from_arrays(np.stack(tx), ty, np.stack(vx), vy, name="skimage-patches", classes=names,
                       description=DEFAULT_DESCRIPTION, resolution=resolution)
