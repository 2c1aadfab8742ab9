"""Small real data folders for the data tests: tiny JPEGs written with Pillow in the
Tiny-ImageNet-200 and ILSVRC-2012 layouts. Every image of class k is filled with colour
``COLOURS[k]`` plus a little noise, so a loaded image's label can be read back from its pixels."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


def jpeg(path: Path, label: int, size=(20, 16), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS[label], dtype=np.int16) + rng.integers(-8, 9, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)


def wnid(k: int) -> str:
    return f"n{k + 1:08d}"


def tinyimagenet(root: Path, classes: int = 3, train: int = 8, val: int = 3) -> Path:
    """Tiny-ImageNet-200 as distributed, small: wnids.txt, words.txt (with unrelated lines),
    train/<wnid>/images/*.JPEG (+ the boxes file), val/images/ + val/val_annotations.txt."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{wnid(k)}\n" for k in range(classes)))
    (root / "words.txt").write_text("n00000001\tentity\n" + "".join(f"{wnid(k)}\tthing {k}, item {k}\n"
                                                                    for k in range(classes)))
    lines = []
    for k in range(classes):
        folder = root / "train" / wnid(k)
        for i in range(train):
            jpeg(folder / "images" / f"{wnid(k)}_{i}.JPEG", k, seed=100 * k + i)
        (folder / f"{wnid(k)}_boxes.txt").write_text("")
        for i in range(val):
            name = f"val_{k * val + i}.JPEG"
            jpeg(root / "val" / "images" / name, k, seed=10_000 + 100 * k + i)
            lines.append(f"{name}\t{wnid(k)}\t0\t0\t10\t10\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def imagenet(root: Path, classes: int = 3, train: int = 8, val: int = 3, flat: bool = False) -> Path:
    """The ILSVRC-2012 layout: train/<wnid>/*.JPEG; val/<wnid>/*.JPEG, or flat val/ with
    LOC_val_solution.csv and LOC_synset_mapping.txt beside the root (the Kaggle layout)."""
    rows = ["ImageId,PredictionString"]
    for k in range(classes):
        for i in range(train):
            jpeg(root / "train" / wnid(k) / f"{wnid(k)}_{i}.JPEG", k, size=(24 + i, 18), seed=100 * k + i)
        for i in range(val):
            name = f"ILSVRC2012_val_{k * val + i:08d}"
            where = root / "val" / (f"{name}.JPEG" if flat else f"{wnid(k)}/{name}.JPEG")
            jpeg(where, k, size=(18, 22), seed=10_000 + 100 * k + i)
            rows.append(f"{name},{wnid(k)} 1 2 3 4")
    if flat:
        (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{wnid(k)} thing {k}\n" for k in range(classes)))
    return root


def label_from_pixels(images) -> np.ndarray:
    """The class whose colour is nearest each image's mean colour (images: N, 3, H, W)."""
    means = np.asarray(images, dtype=np.float64).mean(axis=(2, 3))
    distances = ((means[:, None, :] - np.array(COLOURS, dtype=np.float64)[None]) ** 2).sum(-1)
    return distances.argmin(1)


def crc(array) -> int:
    return zlib.crc32(np.ascontiguousarray(np.asarray(array)).tobytes())
