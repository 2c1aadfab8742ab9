"""Folder data sources: the source string, the files of each split, and the seeded subset.

A folder source is written ``KIND:PATH`` or ``KIND:PATH?OPTION=VALUE,OPTION=VALUE``:

* ``tinyimagenet:PATH``: Tiny-ImageNet-200 as distributed (``train/<wnid>/images/*.JPEG``,
  ``val/images/`` with ``val/val_annotations.txt``, ``wnids.txt``, ``words.txt``). Its labelled
  ``val/`` is the **test** split; validation is held out from ``train/``, per class, seeded.
  Class names come from ``words.txt``.
* ``imagenet:PATH``: the ILSVRC-2012 layout: ``train/<wnid>/*.JPEG``, and ``val/`` either as class
  folders (``val/<wnid>/*.JPEG``) or flat with ``LOC_val_solution.csv`` (looked for in ``PATH``,
  ``PATH/val`` and up to three folders above ``PATH``). ``val/`` is the test split; validation
  is held out from ``train/`` (50 images a class by default, MnasNet's 50K hold-out). Class
  names come from ``LOC_synset_mapping.txt`` when it is found beside the csv.
* ``imagefolder:PATH``: one sub-folder of images per class; with ``train/``, ``val/`` and ``test/``
  those are the splits; with ``train/`` and ``val/`` only, ``val/`` is the test split and
  validation is held out from ``train/``; a flat folder is split per class.

Subset options (all optional, in any order; :attr:`Source.canonical` writes them in one order):

* ``classes=N``: N classes chosen with ``seed`` among those with training images (default all);
* ``per_class=N``: training images per class, chosen with ``seed`` (default all that remain);
* ``val_per_class=N``: validation images per class held out from ``train/`` (default 50 for
  ``tinyimagenet`` and ``imagenet``; ``imagefolder`` holds out ``val_fraction`` instead);
* ``test_per_class=N``: cap on test images per class (default all);
* ``seed=N``: the seed of every choice above and of the hold-out (default 0). It is the data's
  seed, not the training seed: two runs that differ only in their training seed see one data set.

The subset is part of the source string, so it travels with ``--data`` through every command,
and :meth:`proxytask.profiles.Signal.describe` (hence every summary and resume key) shows it.
A subset larger than the data is an error, never silently smaller.

A class folder without images is skipped with one warning (:class:`DataWarning`) naming how many
and one of them: 10,000 empty folders do not make a 10,002-way classifier. Everything here
reads directory entries and small text files only (no image is decoded, torch is not
imported), so a command can check a source before any work starts (:func:`source_problem`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FOLDER_KINDS = ("tinyimagenet", "imagenet", "imagefolder")
SUBSET_OPTIONS = ("classes", "per_class", "val_per_class", "test_per_class", "seed")
DEFAULT_VAL_PER_CLASS = {"tinyimagenet": 50, "imagenet": 50, "imagefolder": None}
MAX_OPTION_VALUE = 10_000_000
MAX_TEXT_BYTES = 64 << 20  # words.txt is 2.7 MB, LOC_val_solution.csv 2.4 MB
SPLITS = ("train", "val", "test")
LAYOUT_HELP = {
    "tinyimagenet": "Tiny-ImageNet-200 as distributed (train/<wnid>/images/*.JPEG, val/images/ and "
                    "val/val_annotations.txt); get it with python -m proxytask.download tinyimagenet DIR",
    "imagenet": "the ILSVRC-2012 layout (train/<wnid>/*.JPEG; val/<wnid>/*.JPEG, or val/*.JPEG with "
                "LOC_val_solution.csv)",
    "imagefolder": "one sub-folder of images per class (optionally under train/, val/ and test/)",
}


class DataWarning(UserWarning):
    """Something in a data folder was skipped (e.g. class folders without images)."""


@dataclass(frozen=True)
class Source:
    """A parsed folder source: ``kind``, ``path`` (as written) and the subset ``options`` given."""

    kind: str
    path: str
    options: tuple[tuple[str, int], ...] = ()

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    @property
    def canonical(self) -> str:
        """The source string with its options in :data:`SUBSET_OPTIONS` order."""
        given = dict(self.options)
        text = ",".join(f"{k}={given[k]}" for k in SUBSET_OPTIONS if k in given)
        return f"{self.kind}:{self.path}" + (f"?{text}" if text else "")

    def subset(self) -> dict:
        """Every subset setting, defaults filled in (None: all): what ``Signal.describe()`` shows."""
        given = dict(self.options)
        return {"classes": given.get("classes"), "per_class": given.get("per_class"),
                "val_per_class": given.get("val_per_class", DEFAULT_VAL_PER_CLASS[self.kind]),
                "test_per_class": given.get("test_per_class"), "seed": given.get("seed", 0)}


def parse_source(source: str) -> Source:
    """The :class:`Source` of a folder source string; ValueError (one line) for a bad one."""
    kind, sep, rest = source.partition(":")
    if kind not in FOLDER_KINDS or not sep or not rest:
        raise ValueError(f"data: {source[:80]!r} is not a folder source; write "
                         f"{' | '.join(k + ':PATH[?classes=N,per_class=N]' for k in FOLDER_KINDS)}")
    path, query = (rest.rsplit("?", 1) + [""])[:2] if "?" in rest else (rest, "")
    if not path:
        raise ValueError(f"data: {source[:80]!r} has no folder; write {kind}:PATH")
    options: dict[str, int] = {}
    for item in filter(None, query.replace("&", ",").split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in SUBSET_OPTIONS or not eq:
            raise ValueError(f"data: {item[:40]!r} in {kind}:...?{query[:60]} is not a subset option; write "
                             f"KEY=N with KEY one of {', '.join(SUBSET_OPTIONS)}")
        low = 0 if key == "seed" else 1
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or not low <= number <= MAX_OPTION_VALUE or key in options:
            why = "is given twice" if key in options else f"must be an integer from {low} to {MAX_OPTION_VALUE:,}"
            raise ValueError(f"data: subset option {key}={value.strip()[:20]!r} {why} (in {kind}:...?{query[:60]})")
        options[key] = number
    return Source(kind, path, tuple((k, options[k]) for k in SUBSET_OPTIONS if k in options))


def with_subset(source: str, **options: int) -> str:
    """``source`` with subset ``options`` set (e.g. ``with_subset("tinyimagenet:/d", classes=100,
    per_class=100)``), in canonical form; checked like :func:`parse_source`."""
    parsed = parse_source(source)
    merged = {**dict(parsed.options), **{k: v for k, v in options.items() if v is not None}}
    text = ",".join(f"{k}={v}" for k, v in merged.items())
    return parse_source(f"{parsed.kind}:{parsed.path}" + (f"?{text}" if text else "")).canonical


def source_problem(source: str) -> str | None:
    """Why a folder source cannot be read (None when it can): a bad string or option, a missing
    folder, or a missing piece of its layout. Reads directory entries only; cheap."""
    try:
        parsed = parse_source(source)
    except ValueError as err:
        return str(err)
    root = parsed.root
    if not _is_dir(root):
        return f"data: {root} is not a folder; {parsed.kind}:PATH takes {LAYOUT_HELP[parsed.kind]}"
    needed = {"tinyimagenet": ("train", "val/images", "val/val_annotations.txt"),
              "imagenet": ("train", "val"), "imagefolder": ()}[parsed.kind]
    for part in needed:
        if not (root / part).exists():
            return f"data: {root} has no {part}; expected {LAYOUT_HELP[parsed.kind]}"
    return None


# --------------------------------------------------------------------------- listing
@dataclass
class FileList:
    """The files of a source's subset: per split, absolute paths and int64 labels (0..classes-1).

    ``fingerprint`` hashes every file's path, label, size and modification time, plus the kind
    and subset: the decoded cache is keyed by it (and the resolution)."""

    source: Source
    classes: tuple[str, ...]
    class_names: tuple[str, ...]
    paths: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    fingerprint: str = ""
    stats: dict[str, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    def count(self, split: str) -> int:
        return len(self.paths[split])


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _kind_of(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def _file_stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a regular file; ValueError naming it when it is missing or not a file."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise ValueError(f"data: {path} cannot be read ({err.strerror}); restore the file or remove it from "
                         f"the listing that names it") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"data: {path} is {_kind_of(info.st_mode)}, not an image file; remove it")
    return info.st_size, info.st_mtime_ns


def _images_in(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of the image files directly in ``folder``, sorted by name; [] when
    ``folder`` is not a folder. An entry with an image suffix that is not a regular file (a FIFO,
    a device, a folder) is an error naming it."""
    if not _is_dir(folder):
        return []
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            try:
                info = entry.stat()
            except OSError as err:
                raise ValueError(f"data: {entry.path} cannot be read ({err.strerror}); remove it") from None
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"data: {entry.path} is {_kind_of(info.st_mode)}, not an image file; remove it")
            found.append((entry.path, info.st_size, info.st_mtime_ns))
    return sorted(found)


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def read_small_text(path: Path, what: str) -> str:
    """The text of a small listing file (at most :data:`MAX_TEXT_BYTES`); ValueError naming it
    for one that is missing, not a regular file, oversized or not UTF-8. Never blocks on a FIFO
    (:func:`jobs.files.read_text`)."""
    from jobs.files import file_problem_words, read_text

    try:
        return read_text(path, what="listing file", max_bytes=MAX_TEXT_BYTES)
    except (OSError, ValueError) as err:
        reason = file_problem_words(err, path, "listing file")
        raise ValueError(f"data: {path} {reason}; {what}") from None


def _class_names(path: Path | None, classes: list[str], separator: str | None) -> list[str]:
    """Names for ``classes`` from a ``wnid<sep>name`` file (words.txt, LOC_synset_mapping.txt);
    the wnid itself where the file is absent or has no line for it."""
    names: dict[str, str] = {}
    if path is not None and path.is_file():
        wanted = set(classes)
        for line in read_small_text(path, "restore it or remove it").splitlines():
            wnid, _, name = line.strip().partition(separator) if separator else line.strip().partition(" ")
            if wnid in wanted:
                names[wnid] = name.strip()
    return [names.get(c) or c for c in classes]


Split = dict[str, list[tuple[str, int, int]]]  # class -> [(path, size, mtime_ns)]


def _tinyimagenet(root: Path) -> tuple[Split, Split | None, Split, list[str]]:
    """(train, val (None: hold out), test, class names) of Tiny-ImageNet-200."""
    for part in ("train", "val/images", "val/val_annotations.txt"):
        if not (root / part).exists():
            raise ValueError(f"data: {root} has no {part}; expected {LAYOUT_HELP['tinyimagenet']}")
    wnids_file = root / "wnids.txt"
    if wnids_file.exists():
        classes = sorted({w.strip() for w in read_small_text(wnids_file, "restore it from the archive").split()
                          if w.strip()})
    else:
        classes = _class_folders(root / "train")
    train = {c: _images_in(root / "train" / c / "images") for c in classes}
    test: Split = {c: [] for c in classes}
    annotations = root / "val" / "val_annotations.txt"
    for number, line in enumerate(read_small_text(annotations, "restore it from the archive").splitlines(), 1):
        parts = line.split("\t")
        if not line.strip():
            continue
        if len(parts) < 2 or parts[1] not in test or "/" in parts[0] or parts[0] in ("", ".", ".."):
            raise ValueError(f"data: {annotations}:{number} is not 'FILE<tab>WNID' with a wnid of wnids.txt "
                             f"({line[:60]!r}); restore the file from the archive")
        path = root / "val" / "images" / parts[0]
        test[parts[1]].append((str(path), *_file_stat(path)))
    names = _class_names(root / "words.txt", classes, "\t")
    return train, None, {c: sorted(v) for c, v in test.items()}, names


def _find_upwards(root: Path, name: str) -> Path | None:
    for folder in (root, root / "val", root.parent, root.parent.parent, root.parent.parent.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _imagenet(root: Path) -> tuple[Split, Split | None, Split, list[str]]:
    """(train, val (None: hold out), test, class names) of the ILSVRC-2012 layout."""
    for part in ("train", "val"):
        if not _is_dir(root / part):
            raise ValueError(f"data: {root} has no {part}/ folder; expected {LAYOUT_HELP['imagenet']}")
    classes = _class_folders(root / "train")
    train = {c: _images_in(root / "train" / c) for c in classes}
    val_classes = _class_folders(root / "val")
    if val_classes:
        test = {c: _images_in(root / "val" / c) for c in classes}
        stray = sorted(set(val_classes) - set(classes))
        if stray:
            raise ValueError(f"data: {root / 'val' / stray[0]} has no train/ folder of that class; remove it or add "
                             f"its training images")
    else:
        test = _imagenet_flat_val(root, set(classes))
    mapping = _find_upwards(root, "LOC_synset_mapping.txt")
    return train, None, test, _class_names(mapping, classes, None)


def _imagenet_flat_val(root: Path, classes: set[str]) -> Split:
    solution = _find_upwards(root, "LOC_val_solution.csv")
    if solution is None:
        raise ValueError(f"data: {root / 'val'} has no class folders and no LOC_val_solution.csv was found (in "
                         f"{root}, {root / 'val'} or above); put the csv beside val/ or sort val/ into class folders")
    test: Split = {c: [] for c in classes}
    for number, line in enumerate(read_small_text(solution, "restore it").splitlines(), 1):
        if number == 1 and line.startswith("ImageId"):
            continue
        image, _, prediction = line.partition(",")
        wnid = prediction.split()[0] if prediction.split() else ""
        if not line.strip():
            continue
        if wnid not in test or "/" in image or image in ("", ".", ".."):
            raise ValueError(f"data: {solution}:{number} is not 'ImageId,WNID ...' with a class of train/ "
                             f"({line[:60]!r}); restore the file")
        path = root / "val" / f"{image}.JPEG"
        test[wnid].append((str(path), *_file_stat(path)))
    return {c: sorted(v) for c, v in test.items()}


def _imagefolder(root: Path) -> tuple[Split, Split | None, Split | None, list[str]]:
    """(train, val, test, class names); val None: hold out; test None: flat folder, split it."""
    has = {name: _is_dir(root / name) for name in SPLITS}
    if has["test"] and not (has["train"] and has["val"]):
        raise ValueError(f"data: 'imagefolder:{root}' has test/ but not both train/ and val/; give all three, "
                         f"train/ and val/ (val/ is then the test split), or one folder per class")
    nested = has["train"] and has["val"]
    class_root = root / "train" if nested else root
    classes = _class_folders(class_root)
    if not classes:
        raise ValueError(f"data: 'imagefolder:{root}' has no class sub-folders; expected {LAYOUT_HELP['imagefolder']}")
    train = {c: _images_in(class_root / c) for c in classes}
    if not nested:
        return train, None, None, classes
    other = {s: {c: _images_in(root / s / c) for c in classes} for s in ("val", "test") if has[s]}
    if has["test"]:
        return train, other["val"], other["test"], classes
    return train, None, other["val"], classes


def list_files(source: str | Source, *, val_fraction: float = 0.1, test_fraction: float = 0.2) -> FileList:
    """The :class:`FileList` of ``source`` (a string or :class:`Source`): its layout read, empty
    classes skipped with a warning, the seeded subset chosen. ``val_fraction``/``test_fraction``:
    the shares an ``imagefolder`` without its own splits holds out (``val_per_class`` /
    ``test_per_class`` override them). Every problem is a one-line ValueError naming the path
    and the fix."""
    parsed = parse_source(source) if isinstance(source, str) else source
    root = parsed.root
    if not _is_dir(root):
        raise ValueError(f"data: '{parsed.kind}:{root}' is not a folder; {parsed.kind}:PATH takes "
                         f"{LAYOUT_HELP[parsed.kind]}")
    reader = {"tinyimagenet": _tinyimagenet, "imagenet": _imagenet, "imagefolder": _imagefolder}[parsed.kind]
    train, val, test, names = reader(root)
    name_of = dict(zip(train, names))
    kept = _skip_empty(train, root, parsed.kind)
    subset = parsed.subset()
    if subset["classes"] is not None:
        if subset["classes"] > len(kept):
            raise ValueError(f"data: {parsed.canonical} asks for classes={subset['classes']} but {root} has "
                             f"{len(kept)} classes with images; lower classes")
        chosen = np.random.default_rng(subset["seed"]).choice(len(kept), subset["classes"], replace=False)
        kept = [kept[i] for i in sorted(chosen)]
    paths: dict[str, list[str]] = {s: [] for s in SPLITS}
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    stats: dict[str, list[tuple[int, int]]] = {s: [] for s in SPLITS}
    for label, name in enumerate(kept):
        chosen_files = _split_class(parsed, name, train[name], val[name] if val is not None else None,
                                    test[name] if test is not None else None, val_fraction, test_fraction)
        for split, files in zip(SPLITS, chosen_files):
            for path, size, mtime in files:
                paths[split].append(path)
                labels[split].append(label)
                stats[split].append((size, mtime))
    counts = {s: len(paths[s]) for s in SPLITS}
    if not all(counts.values()):
        raise ValueError(f"data: '{parsed.kind}:{root}' needs images in all three splits; found {counts['train']} "
                         f"train, {counts['val']} val and {counts['test']} test images (add images, at least 3 per "
                         f"class)")
    files = FileList(parsed, tuple(kept), tuple(name_of[c] for c in kept), paths,
                     {s: np.asarray(labels[s], dtype=np.int64) for s in SPLITS}, stats=stats)
    files.fingerprint = _fingerprint(files, val_fraction, test_fraction)
    return files


def _skip_empty(train: Split, root: Path, kind: str) -> list[str]:
    """The classes with training images; the others skipped with one :class:`DataWarning`."""
    empty = [c for c, files in train.items() if not files]
    kept = [c for c, files in train.items() if files]
    if not kept:
        raise ValueError(f"data: '{kind}:{root}' has no images in any class folder; expected {LAYOUT_HELP[kind]}")
    if empty:
        warnings.warn(f"data: skipped {len(empty):,} class folder(s) of {root} without training images (e.g. "
                      f"{empty[0]!r}); {len(kept):,} classes remain (remove the empty folders to silence this)",
                      DataWarning, stacklevel=3)
    return kept


def _share(count: int, fraction: float) -> int:
    """``fraction`` of ``count`` rounded, at least one where there are two or more."""
    held = int(round(fraction * count))
    return max(held, 1) if count >= 2 else 0


def _split_class(source: Source, name: str, train, val, test, val_fraction: float, test_fraction: float):
    """(train, val, test) files of one class: held out, capped and chosen with the subset's seed."""
    subset = source.subset()
    import zlib

    rng = np.random.default_rng([subset["seed"], zlib.crc32(name.encode())])
    pool = [train[i] for i in rng.permutation(len(train))]
    where = f"class {name!r} of {source.canonical}"
    flat = test is None
    if flat:  # a flat image folder: hold the test images out of the class's files first
        held = subset["test_per_class"] or _share(len(pool), test_fraction)
        if held >= len(pool):
            raise ValueError(f"data: {where} has {len(pool)} images, too few to hold out {held} for test and keep "
                             f"some for training; add images or lower test_per_class")
        test, pool = pool[:held], pool[held:]
    if val is None:  # hold validation out of train/
        fraction = val_fraction / (1 - test_fraction) if flat else val_fraction
        held = subset["val_per_class"] if subset["val_per_class"] is not None else _share(len(pool), fraction)
        if held >= len(pool):
            raise ValueError(f"data: {where} has {len(pool)} training images, too few to hold out {held} for "
                             f"validation and keep some for training; lower val_per_class")
        val, pool = pool[:held], pool[held:]
    else:
        val = _cap(val, subset["val_per_class"], rng, where, "validation", "val_per_class")
    if subset["per_class"] is not None:
        if subset["per_class"] > len(pool):
            raise ValueError(f"data: {where} has {len(pool)} training images after the hold-out, fewer than "
                             f"per_class={subset['per_class']}; lower per_class")
        pool = pool[:subset["per_class"]]
    if not flat:
        test = _cap(test, subset["test_per_class"], rng, where, "test", "test_per_class")
    return sorted(pool), sorted(val), sorted(test)


def _cap(files, cap: int | None, rng, where: str, what: str, option: str):
    if cap is None:
        return files
    if cap > len(files):
        raise ValueError(f"data: {where} has {len(files)} {what} images, fewer than {option}={cap}; lower {option}")
    return [files[i] for i in sorted(rng.permutation(len(files))[:cap])]


def _fingerprint(files: FileList, val_fraction: float, test_fraction: float) -> str:
    """SHA-256 of what decides the decoded bytes: kind, folder, subset, and every chosen file's
    path, label, size and modification time."""
    digest = hashlib.sha256()
    root, prefix = str(files.source.root.resolve()), len(str(files.source.root))
    digest.update(f"{files.source.kind}\n{root}\n{sorted(files.source.subset().items())}\n"
                  f"{val_fraction!r} {test_fraction!r}\n".encode())
    for split in SPLITS:
        digest.update(f"[{split}]\n".encode())
        for path, label, (size, mtime) in zip(files.paths[split], files.labels[split].tolist(), files.stats[split]):
            digest.update(f"{path[prefix:]}\t{label}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def data_problem(source: str) -> str | None:
    """Why the folder source ``source`` cannot be trained on (None when it can), found before any
    work starts: :func:`source_problem`, then the whole layout listed and the subset chosen as
    :func:`list_files` does (directory entries and file sizes only: no image is decoded). Other
    sources (``default``, ``cifar10:``) are left to their loaders: None."""
    if source.partition(":")[0] not in LAYOUT_HELP:
        return None
    problem = source_problem(source)
    if problem is None:
        try:
            list_files(source)
        except ValueError as err:
            problem = str(err)
        except OSError as err:
            problem = f"data: {source}: {err.strerror or err}; check the folder and its permissions"
    return problem.removeprefix("data: ") if problem else None
