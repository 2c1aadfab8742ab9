"""Data sets for the proxy task: train, validation and test splits of uint8 images.

:func:`load_data` reads one source:

* ``"default"``: the embedded task (``DEFAULT_DESCRIPTION`` below): grayscale patches (48 px in the
  ``cpu`` and ``gpu`` profiles, 32 px by default here; ``patch``) of 17 real photographs and
  textures, classified by the image they come from. The even tile columns of each photograph
  hold the validation and test tiles, the odd columns the training tiles (see
  ``DEFAULT_DESCRIPTION``). The images ship inside this package
  (``proxytask/data_files/skimage_photos.npz``, 0.8 MB, derived from the images inside the
  scikit-image wheel by ``proxytask/data_files/derive_default.py``); nothing is downloaded and
  scikit-image is not needed. The patches are small and held in RAM.
* ``"cifar10:PATH"``: CIFAR-10 in its python layout (``PATH`` holds ``data_batch_1`` .. ``5`` and
  ``test_batch``, i.e. the ``cifar-10-batches-py`` folder). Those files are pickles, the data
  set's own format, so this is the one place a pickle is read: a restricted unpickler that
  builds only numpy arrays, each bounded in size before it is allocated, with uint8 pixels and
  labels 0..9 checked after. Held in RAM (180 MB).
* ``"tinyimagenet:PATH"``, ``"imagenet:PATH"``, ``"imagefolder:PATH"``: folder sources, each
  optionally with a seeded subset (``?classes=N,per_class=N,...``); layouts and options in
  :mod:`proxytask.sources`. Their images are decoded once, by worker processes, into a cache of
  uint8 files at the requested resolution (:mod:`proxytask.cache`) and memory-mapped, so a data
  set larger than RAM trains without being loaded whole.

Images are stored as ``uint8`` NCHW tensors (a tenth of the memory of float32); the per-channel
normalisation is applied by :meth:`ProxyData.normalise`, which the training loop calls on every
batch. Labels are int64.
"""

from __future__ import annotations

import os
import pickle
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .sources import IMAGE_SUFFIXES  # noqa: F401  (re-exported)
DATA_DIR = Path(__file__).parent / "data_files"


@dataclass(frozen=True)
class ProxyData:
    """Train, validation and test splits, in memory or memory-mapped from the decoded cache.

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
SOURCE_HELP = ("'default' (the embedded photos), 'cifar10:PATH' (the cifar-10-batches-py folder), "
               "'tinyimagenet:PATH', 'imagenet:PATH' or 'imagefolder:PATH' (each optionally followed by "
               "?classes=N,per_class=N; see proxytask.sources)")


def load_data(source: str = "default", resolution: int | None = None, seed: int = 0, *,
              train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
              val_fraction: float = 0.1, test_fraction: float = 0.2, patch: int | None = None,
              cache_dir: str | Path | None = None, workers: int | None = None, progress: bool = True,
              verify_cache: bool = False) -> ProxyData:
    """Load a proxy data set with train, validation and test splits (see the module docstring).

    ``resolution``: side of the square images (None: the source's own; 64 for ``tinyimagenet``
    and ``imagenet``, 32 for image folders). ``train_size``/``val_size``/``test_size``:
    subsample each split to that many images, class-balanced, chosen with ``seed`` (the copy
    then lives in RAM). ``val_fraction``: share of the training images held out as validation
    where a source has no validation split of its own and no ``val_per_class`` (CIFAR-10, image
    folders without ``val/``); ``test_fraction``: share held out as test where a folder has no
    split at all. ``patch``: side, in source pixels, of the crops of the embedded photos
    (default :data:`PATCH`). For folder sources the subset and its seed are part of ``source``
    (``?classes=N,per_class=N,seed=N``; :mod:`proxytask.sources`), and ``cache_dir``,
    ``workers``, ``progress`` and ``verify_cache`` go to :func:`proxytask.cache.open_cache`.
    A bad source raises ValueError naming it and the fix.
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
    elif kind in FOLDER_RESOLUTION and path:
        cache = {"cache_dir": cache_dir, "workers": workers, "progress": progress, "verify": verify_cache}
        data = _load_folder(source, resolution, val_fraction, test_fraction, cache)
    else:
        raise ValueError(f"data: {source[:80]!r} is not a known source; write {SOURCE_HELP}")
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


MAX_CIFAR_ARRAY_BYTES = 64 << 20  # a CIFAR-10 batch's images are 30.7 MB
MAX_CIFAR_FILE_BYTES = 256 << 20
CIFAR_CLASSES = 10


def _array_bytes(shape, dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` would take; UnpicklingError for object dtypes,
    odd shapes and anything over :data:`MAX_CIFAR_ARRAY_BYTES` (checked before allocating)."""
    dtype = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    if dtype.hasobject:
        raise pickle.UnpicklingError("an array of Python objects is not allowed in a CIFAR-10 batch")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) > 8 or not all(isinstance(n, int) and 0 <= n for n in shape):
        raise pickle.UnpicklingError(f"array shape {shape[:8]} is not a list of sizes")
    size = dtype.itemsize
    for n in shape:
        size *= n
        if size > MAX_CIFAR_ARRAY_BYTES:
            break
    if size > MAX_CIFAR_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {dtype} is over the "
                                     f"{MAX_CIFAR_ARRAY_BYTES >> 20} MiB bound for a CIFAR-10 batch")
    return size


class _BoundedArray(np.ndarray):
    """``numpy.ndarray`` as a pickle may name it, with every allocation bounded first."""

    def __new__(cls, shape, dtype=float, *args, **kwargs):
        _array_bytes(shape, dtype)
        return np.ndarray.__new__(cls, shape, dtype, *args, **kwargs)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("not an array state")
        _array_bytes(state[1], state[2])
        return super().__setstate__(state)


def _bounded_reconstruct(cls, shape, dtype):
    if cls is not _BoundedArray:
        raise pickle.UnpicklingError("only numpy arrays may be reconstructed in a CIFAR-10 batch")
    _array_bytes(shape, np.dtype(dtype.decode("latin1") if isinstance(dtype, bytes) else dtype))
    return np.ndarray.__new__(_BoundedArray, shape, dtype)


def _bounded_frombuffer(buffer, dtype, shape, order):
    _array_bytes(shape, dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


class _CifarUnpickler(pickle.Unpickler):
    """Reads the CIFAR-10 batch pickles without running code: only the classes a batch holds
    (numpy arrays, dtypes) may be constructed, each array bounded in size before it is
    allocated (:data:`MAX_CIFAR_ARRAY_BYTES`, no object arrays); anything else is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _bounded_reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _bounded_reconstruct,
               ("numpy", "ndarray"): _BoundedArray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): None,
               ("numpy.core.numeric", "_frombuffer"): _bounded_frombuffer,
               ("numpy._core.numeric", "_frombuffer"): _bounded_frombuffer}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return self.ALLOWED[(module, name)] or super().find_class(module, name)


def _read_cifar_batch(path: Path) -> object:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise ValueError(f"data: {path} cannot be read ({err.strerror}); restore the CIFAR-10 python layout "
                         f"(cifar-10-batches-py)") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CIFAR_FILE_BYTES:
            raise ValueError(f"data: {path} is not a CIFAR-10 batch (not a regular file of at most "
                             f"{MAX_CIFAR_FILE_BYTES >> 20} MiB); restore the CIFAR-10 python layout")
        try:
            return _CifarUnpickler(f, encoding="bytes").load()
        except Exception as err:  # a damaged or hostile file is a data error, not a crash
            raise ValueError(f"data: {path} is not a CIFAR-10 batch ({type(err).__name__}: {str(err)[:160]}); "
                             f"expected the CIFAR-10 python layout (cifar-10-batches-py)") from None


def _cifar_arrays(path: Path, batch) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels int64 in 0..9) of one batch; one-line errors."""
    fix = "restore the original batch from cifar-10-python.tar.gz"
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"data: {path} is not a CIFAR-10 batch (no b'data' / b'labels'); {fix}")
    images, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        shown = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        raise ValueError(f"data: {path}: b'data' must be uint8 pixels of shape (N, 3072), not {shown}; {fix}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(images):
        raise ValueError(f"data: {path}: b'labels' must be a list of {len(images)} labels; {fix}")
    if isinstance(labels, list) and not all(type(v) is int for v in labels):
        raise ValueError(f"data: {path}: b'labels' must be integers; {fix}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"data: {path}: b'labels' must be integers, not {labels.dtype}; {fix}")
    bad = np.flatnonzero((labels < 0) | (labels >= CIFAR_CLASSES))
    if len(bad):
        raise ValueError(f"data: {path}: label {int(labels[bad[0]])} at row {int(bad[0])} is not a CIFAR-10 class "
                         f"(0..{CIFAR_CLASSES - 1}); {fix}")
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _load_cifar10(root: Path, resolution: int | None, seed: int, val_fraction: float) -> ProxyData:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not root.is_dir():
        raise ValueError(f"data: 'cifar10:{root}' is not a folder; point it at the CIFAR-10 python layout "
                         f"(cifar-10-batches-py)")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ValueError(f"data: 'cifar10:{root}' has no {missing[0]}; expected the CIFAR-10 python layout "
                         f"(cifar-10-batches-py)")
    parts = [_cifar_arrays(root / name, _read_cifar_batch(root / name)) for name in names]
    classes: tuple[str, ...] = ()
    meta = root / "batches.meta"
    if meta.is_file():
        info = _read_cifar_batch(meta)
        names_given = info.get(b"label_names") if isinstance(info, dict) else None
        if isinstance(names_given, list) and len(names_given) == CIFAR_CLASSES \
                and all(isinstance(n, bytes) and len(n) <= 100 for n in names_given):
            classes = tuple(n.decode("utf-8", "replace") for n in names_given)
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    is_val = _hold_out(train_y, val_fraction, seed)
    return from_arrays(train_x[~is_val], train_y[~is_val], train_x[is_val], train_y[is_val],
                       test_x=parts[5][0], test_y=parts[5][1], name="cifar10", classes=classes,
                       description=f"CIFAR-10 from {root} ({val_fraction:g} of the training batches held out "
                                   f"as validation; test_batch is the test split)", resolution=resolution)


def _load_folder(source: str, resolution: int | None, val_fraction: float, test_fraction: float,
                 cache: dict) -> ProxyData:
    """A folder source (``tinyimagenet:``, ``imagenet:``, ``imagefolder:``; see
    :mod:`proxytask.sources`) through the decoded cache (:mod:`proxytask.cache`): memory-mapped,
    never copied whole into RAM."""
    from .cache import open_cache
    from .sources import list_files

    files = list_files(source, val_fraction=val_fraction, test_fraction=test_fraction)
    kind = files.source.kind
    resolution = resolution or FOLDER_RESOLUTION[kind]
    cached = open_cache(files, resolution, **cache)
    x = {split: torch.from_numpy(cached.images[split]) for split in SPLITS}
    y = {split: torch.from_numpy(files.labels[split]) for split in SPLITS}
    return ProxyData(x["train"], y["train"], x["val"], y["val"], num_classes=len(files.classes),
                     in_channels=cached.channels, resolution=resolution, name=_folder_name(files),
                     description=_folder_description(files, resolution), mean=cached.mean, std=cached.std,
                     classes=files.class_names, test_x=x["test"], test_y=y["test"])


FOLDER_RESOLUTION = {"tinyimagenet": 64, "imagenet": 64, "imagefolder": 32}


def _folder_name(files) -> str:
    options = files.source.canonical.partition("?")[2]
    return f"{files.source.kind}:{files.source.root.name}" + (f"?{options}" if options else "")


def _folder_description(files, resolution: int) -> str:
    subset = files.source.subset()
    counts = {split: files.count(split) for split in SPLITS}
    held = {"tinyimagenet": "validation held out of train/ per class, test = its labelled val/",
            "imagenet": "validation held out of train/ per class, test = val/",
            "imagefolder": "splits from train/ val/ test/ or held out per class"}[files.source.kind]
    return (f"{files.source.kind} {files.source.root}: {len(files.classes)} classes"
            f"{' chosen with seed ' + str(subset['seed']) if subset['classes'] else ''}, "
            f"{counts['train']} train / {counts['val']} val / {counts['test']} test images ({held}; subset "
            f"{', '.join(f'{k}={v}' for k, v in subset.items() if v is not None)}), centre square resized to "
            f"{resolution} x {resolution}, decoded once into a memory-mapped cache")


# --------------------------------------------------------------------------- the default
DEFAULT_FILE = DATA_DIR / "skimage_photos.npz"
PATCH, CROP_STRIDE, MIN_PATCH_STD = 32, 8, 3.0
DEFAULT_DESCRIPTION = (
    "scikit-image photo patches: 17 classes, one per photograph or texture shipped with scikit-image "
    "(astronaut, brick, camera, cell, cat, clock, coffee, coins, grass, gravel, Hubble deep field, "
    "immunohistochemistry, moon, page, retina, rocket, text; CC0 / public domain), grayscale, 256 x 256. "
    "A square patch is classified by the image it comes from. Each image is cut into a grid of tiles "
    "(4 x 4 tiles of 64 px for patches up to 48 px, 2 x 2 of 128 px above); tile (row r, column c) "
    "belongs to validation when (c + 2r) mod 4 = 0, to test when it is 2, to training otherwise. So "
    "the even tile columns (0 and 2) hold only validation and test tiles, alternating from row to row, "
    "and the odd columns (1 and 3) only training tiles; every row of tiles feeds each split, and no "
    "patch shares a pixel with a patch of another split (a patch lies inside one tile). "
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
