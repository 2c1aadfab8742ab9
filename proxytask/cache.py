"""The decoded-image cache: a folder source decoded once, in parallel, into uint8 files that
every later run memory-maps.

Where: ``cache_dir`` when given, else ``$MNV3_CACHE``, else ``$XDG_CACHE_HOME/mnv3-nas`` (default
``~/.cache/mnv3-nas``). One sub-folder per key; the key hashes the format version, the file
list's fingerprint (kind, folder, subset and every chosen file's path, label, size and
modification time: :func:`proxytask.sources.list_files`) and the resolution. Changing any of them
(a new subset, another resolution, an edited image) makes a new cache; old ones are left for
the user to delete.

A cache folder holds:

* ``manifest.json``: the key and the layout (images per split, images per shard), written first;
* ``{split}.u8``: the images of a split as one raw uint8 array (N, 3, R, R), written shard by
  shard (a shard is a run of consecutive images) by worker processes;
* ``shards.jsonl``: one journal record per finished shard (its CRC-32 and per-channel sums);
* ``complete.json``: written last: per-channel mean and std, whether every image was grayscale,
  and each ``.u8`` file's size, modification time and inode.

Opening checks it, and never trusts what it cannot check:

* a missing, unreadable or foreign ``manifest.json``: everything is rebuilt;
* ``complete.json`` present and every ``.u8`` file as it recorded: the cache is memory-mapped as is
  (the fast path; a reload of Tiny-ImageNet is about a second);
* otherwise (a killed build, a truncated or rewritten ``.u8``, a damaged ``complete.json``): every
  journaled shard is checked against its CRC-32 and only the shards that are missing or fail are
  decoded again (a resumed build). ``verify=True`` forces that check even on the fast path.

Images are decoded with Pillow (JPEG draft mode, then an antialiased bilinear resize of the
centre square to R x R) in ``workers`` processes (default one per core). An image over
:data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb) or :data:`MAX_IMAGE_BYTES` bytes, an
unreadable file or a FIFO is a one-line error naming the file. A lock file serialises builders,
so concurrent trials that open one source wait for one decode.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import stat
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.atomic import atomic_write_text
from jobs.journal import Journal

from .sources import SPLITS, FileList

FORMAT_VERSION = 1
CACHE_ENV = "MNV3_CACHE"
MAX_IMAGE_PIXELS = 50_000_000  # the largest ILSVRC-2012 image is under 20 Mpx
MAX_IMAGE_BYTES = 64 << 20
SHARD_BYTES = 16 << 20
IN_PROCESS_IMAGES = 2_000  # fewer images than this to decode: no worker processes
CHANNELS = 3
_FILES = ("manifest.json", "shards.jsonl", "complete.json") + tuple(f"{s}.u8" for s in SPLITS)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder that holds the caches: ``cache_dir``, ``$MNV3_CACHE`` or ``~/.cache/mnv3-nas``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mnv3-nas"


def cache_key(files: FileList, resolution: int) -> str:
    """The cache's identity: format version, file-list fingerprint (kind, folder, subset, files) and resolution."""
    return _sha256(f"{FORMAT_VERSION}\n{files.fingerprint}\n{resolution}")


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def cache_folder(files: FileList, resolution: int, cache_dir: str | Path | None = None) -> Path:
    """Where the cache of ``files`` at ``resolution`` lives."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in files.source.root.name)[:40] or "data"
    return cache_root(cache_dir) / f"{files.source.kind}-{safe}-{resolution}px-{cache_key(files, resolution)[:20]}"


@dataclass
class Cached:
    """An opened cache: per split a read-only-in-effect (copy-on-write) memory map (N, C, R, R) of
    uint8; ``mean``/``std`` per channel of the training images (0..255 units); ``channels`` 1 when
    every image was grayscale (the maps then show the first channel only). ``decoded``: images
    decoded by this call (0 when the cache was reused as it was)."""

    folder: Path
    images: dict[str, np.ndarray]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    decoded: int


def open_cache(files: FileList, resolution: int, *, cache_dir: str | Path | None = None, workers: int | None = None,
               progress: bool = True, verify: bool = False, shard_images: int | None = None) -> Cached:
    """Decode ``files`` at ``resolution`` into the cache, or reuse it; then memory-map it.

    ``workers``: decoding processes (default ``os.cpu_count()``, or none besides this one when
    fewer than :data:`IN_PROCESS_IMAGES` images need decoding). ``progress``: a tqdm bar while
    decoding. ``verify``: check every shard's CRC-32 even when the cache looks complete.
    ``shard_images``: images per shard of a new cache (default about 16 MB of pixels a shard).
    """
    if not isinstance(resolution, int) or not 8 <= resolution <= 1024:
        raise ValueError(f"data: resolution={resolution!r} must be an integer from 8 to 1024")
    folder = cache_folder(files, resolution, cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "a+")
    except OSError as err:
        raise ValueError(f"data: cannot create the cache folder {folder} ({err.strerror}); set {CACHE_ENV} or pass "
                         f"cache_dir to a writable folder") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"data: waiting for another process decoding into {folder}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _manifest(files, resolution, shard_images)
        existing = _read_json(folder / "manifest.json")
        if shard_images is None and existing and isinstance(existing.get("shard_images"), int) \
                and existing["shard_images"] > 0 and {**existing, "shard_images": 0} == {**manifest, "shard_images": 0}:
            manifest = existing  # keep the shard size the cache was started with
        done = _complete(folder, manifest) if not verify else None
        decoded = 0
        if done is None:
            decoded, done = _build(folder, files, manifest, workers, progress)
    return _mapped(folder, manifest, done, decoded)


def _manifest(files: FileList, resolution: int, shard_images: int | None) -> dict:
    per_image = CHANNELS * resolution * resolution
    shard = shard_images or max(64, min(4096, SHARD_BYTES // per_image))
    return {"format": FORMAT_VERSION, "key": cache_key(files, resolution), "source": files.source.canonical,
            "resolution": resolution, "channels": CHANNELS, "shard_images": int(shard),
            "counts": {s: files.count(s) for s in SPLITS}}


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _stat(path: Path) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino] if stat.S_ISREG(info.st_mode) else None


def _complete(folder: Path, manifest: dict) -> dict | None:
    """``complete.json`` when the cache is whole as it recorded, else None."""
    if _read_json(folder / "manifest.json") != manifest:
        return None
    done = _read_json(folder / "complete.json")
    if not done or done.get("key") != manifest["key"] or not isinstance(done.get("files"), dict):
        return None
    for split in SPLITS:
        if _stat(folder / f"{split}.u8") != done["files"].get(split):
            return None
        if done["files"][split][0] != manifest["counts"][split] * _image_bytes(manifest):
            return None
    return done if _stats_ok(done) else None


def _stats_ok(done: dict) -> bool:
    ok = lambda v: isinstance(v, list) and len(v) in (1, CHANNELS) and all(  # noqa: E731
        isinstance(x, (int, float)) and x == x for x in v)
    return ok(done.get("mean")) and ok(done.get("std")) and done.get("channels") in (1, CHANNELS)


def _image_bytes(manifest: dict) -> int:
    return manifest["channels"] * manifest["resolution"] ** 2


def _mapped(folder: Path, manifest: dict, done: dict, decoded: int) -> Cached:
    res, channels = manifest["resolution"], manifest["channels"]
    images = {}
    for split in SPLITS:
        count = manifest["counts"][split]
        array = np.memmap(folder / f"{split}.u8", dtype=np.uint8, mode="c", shape=(count, channels, res, res))
        images[split] = array[:, :1] if done["channels"] == 1 else array
    return Cached(folder, images, tuple(done["mean"]), tuple(done["std"]), int(done["channels"]), decoded)


# --------------------------------------------------------------------------- building
def _shards(manifest: dict) -> list[tuple[str, int, int, int]]:
    """(split, shard index, first image, end image) of every shard."""
    size = manifest["shard_images"]
    return [(split, i, begin, min(begin + size, manifest["counts"][split]))
            for split in SPLITS for i, begin in enumerate(range(0, manifest["counts"][split], size))]


def _start(folder: Path, manifest: dict) -> Journal:
    """Make ``folder`` hold this manifest, its data files at full size and a journal; a folder
    whose manifest differs or is unreadable is emptied first (never trusted)."""
    if _read_json(folder / "manifest.json") != manifest:
        for name in _FILES:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
    (folder / "complete.json").unlink(missing_ok=True)
    for split in SPLITS:
        path = folder / f"{split}.u8"
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ValueError(f"data: {path} is not a regular file; delete the cache folder {folder}")
        with open(path, "ab") as f:
            f.truncate(manifest["counts"][split] * _image_bytes(manifest))
    return Journal(folder / "shards.jsonl")


def _verified(folder: Path, manifest: dict, journal: Journal) -> dict[tuple[str, int], dict]:
    """The journaled shards whose bytes still match their CRC-32."""
    import warnings

    from jobs.journal import JournalWarning

    per_image = _image_bytes(manifest)
    spans = {(split, i): (begin, end) for split, i, begin, end in _shards(manifest)}
    good: dict[tuple[str, int], dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)  # a damaged line is a shard to decode again
        records = journal.read()
    for record in records:
        key = (record.get("split"), record.get("shard"))
        if key not in spans or not isinstance(record.get("crc"), int):
            continue
        begin, end = spans[key]
        with open(folder / f"{key[0]}.u8", "rb") as f:
            f.seek(begin * per_image)
            data = f.read((end - begin) * per_image)
        if len(data) == (end - begin) * per_image and zlib.crc32(data) == record["crc"]:
            good[key] = record
    return good


def _build(folder: Path, files: FileList, manifest: dict, workers: int | None, progress: bool) -> tuple[int, dict]:
    """Decode the shards that are missing or damaged; write ``complete.json``. (images decoded, it)."""
    from tqdm import tqdm

    journal = _start(folder, manifest)
    good = _verified(folder, manifest, journal)
    todo = [s for s in _shards(manifest) if (s[0], s[1]) not in good]
    tasks = [(str(folder / f"{split}.u8"), split, index, begin * _image_bytes(manifest),
              files.paths[split][begin:end], manifest["resolution"]) for split, index, begin, end in todo]
    total = sum(end - begin for _, _, begin, end in todo)
    if workers is None and total < IN_PROCESS_IMAGES:
        workers = 1  # starting worker processes would cost more than decoding a few images here
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    bar = tqdm(total=total, unit="img", desc=f"decoding {files.source.kind} at {manifest['resolution']} px",
               disable=not progress or not total, smoothing=0.1, mininterval=1.0, file=sys.stderr)
    try:
        for record in _run(tasks, workers):
            journal.append(record)
            good[(record["split"], record["shard"])] = record
            bar.update(record["images"])
    finally:
        bar.close()
    done = _summarise(folder, manifest, good)
    atomic_write_text(folder / "complete.json", json.dumps(done, indent=1))
    return total, done


def _run(tasks: list, workers: int):
    """Records of decoded shards, in completion order; the first error ends the pool."""
    if workers == 1:
        yield from map(decode_shard, tasks)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(decode_shard, tasks)


def _summarise(folder: Path, manifest: dict, good: dict) -> dict:
    """Mean and std per channel of the training split, from the shards' sums (chunked, exact)."""
    train = [r for (split, _), r in good.items() if split == "train"]
    gray = all(r["gray"] for r in good.values())
    count = sum(r["images"] for r in train) * manifest["resolution"] ** 2
    sums = np.sum([r["sum"] for r in train], axis=0, dtype=np.float64)
    squares = np.sum([r["square"] for r in train], axis=0, dtype=np.float64)
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0) * count / max(count - 1, 1))
    if gray:
        mean, std = mean[:1], std[:1]
    return {"key": manifest["key"], "channels": 1 if gray else CHANNELS,
            "mean": [float(v) for v in mean], "std": [max(float(v), 1.0) for v in std],
            "files": {split: _stat(folder / f"{split}.u8") for split in SPLITS}}


# --------------------------------------------------------------------------- one worker
def decode_shard(task: tuple) -> dict:
    """Decode one shard's images and write them at their offset in the split's file; return its
    journal record (CRC-32, per-channel sums of pixels and of their squares, all-grayscale)."""
    data_path, split, index, offset, paths, resolution = task
    out = np.empty((len(paths), CHANNELS, resolution, resolution), dtype=np.uint8)
    gray = True
    for row, path in enumerate(paths):
        pixels, is_gray = decode_image(path, resolution)
        out[row] = pixels.transpose(2, 0, 1)
        gray &= is_gray
    raw = out.tobytes()
    fd = os.open(data_path, os.O_WRONLY)
    try:
        written = 0
        while written < len(raw):
            written += os.pwrite(fd, raw[written:], offset + written)
    finally:
        os.close(fd)
    levels = np.arange(256, dtype=np.int64)
    histograms = [np.bincount(out[:, c].ravel(), minlength=256).astype(np.int64) for c in range(CHANNELS)]
    return {"split": split, "shard": index, "images": len(paths), "crc": zlib.crc32(raw), "gray": bool(gray),
            "sum": [int(h @ levels) for h in histograms], "square": [int(h @ levels ** 2) for h in histograms]}


def _read_image_bytes(path: str) -> bytes:
    """The bytes of an image file; ValueError (one line) for a FIFO, device, folder or oversized file
    (:func:`jobs.files.read_bytes`: never blocks on a FIFO)."""
    from jobs.files import file_problem_words, read_bytes

    try:
        return read_bytes(path, what="image", max_bytes=MAX_IMAGE_BYTES)
    except (OSError, ValueError) as err:
        reason = file_problem_words(err, path, "image")
        raise ValueError(f"data: {path} {reason} (an image is a regular file of at most {MAX_IMAGE_BYTES:,} "
                         f"bytes); restore it or remove it") from None


def decode_image(path: str, resolution: int) -> tuple[np.ndarray, bool]:
    """(H x W x 3 uint8 pixels at ``resolution``, whether the image was grayscale): the centre
    square, resized (antialiased bilinear). One-line ValueError for an unreadable image or a
    decompression bomb."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow then refuses bombs itself, before decoding
    raw = _read_image_bytes(path)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width} x {height} pixels")
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            if im.format == "JPEG":
                im.draft("RGB", (resolution, resolution))  # DCT scaling: decode at 1/2, 1/4 or 1/8 size
            im = im.convert("RGB")
            if im.size != (resolution, resolution):
                side = min(im.size)
                left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
                im = im.resize((resolution, resolution), Image.BILINEAR, box=(left, top, left + side, top + side))
            return np.asarray(im, dtype=np.uint8), gray
    except Image.DecompressionBombError as err:
        raise ValueError(f"data: {path} is too large an image ({str(err)[:80]}; the bound is {MAX_IMAGE_PIXELS:,} "
                         f"pixels, against decompression bombs); shrink it or remove it") from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"data: {path} is not a readable image (not a format Pillow knows); remove it or replace "
                         f"it") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"data: {path} is not a readable image ({str(err)[:100]}); remove it or replace it") from None
