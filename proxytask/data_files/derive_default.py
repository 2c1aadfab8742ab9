"""Derive ``skimage_photos.npz``, the source of the default proxy data set (see proxytask/data.py).

    pip install scikit-image==0.26.0   # only to run this script; the project does not need it
    python -m proxytask.data_files.derive_default [--skimage-data DIR] [--out proxytask/data_files/skimage_photos.npz]

Reads 17 photographs and textures that ship inside the scikit-image wheel (``skimage/data/``; each
is CC0 or public domain, as the docstrings of ``skimage/data/_fetchers.py`` state), converts them to
8-bit grayscale, scales the short side to 256 pixels (Lanczos) and keeps the central 256 x 256
square. The archive holds ``images`` (17, 256, 256) uint8, ``names``, ``files``, ``sha256`` (of
each source file) and ``source`` (the scikit-image version), so that a rerun can be checked
byte for byte. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

SIZE = 256
# class name -> file in skimage/data. Synthetic images (chessboard, phantom, logo, colour wheel),
# silhouettes (horse), tiny ones and the Middlebury stereo pair are left out.
FILES = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "cell": "cell.png",
    "chelsea": "chelsea.png", "clock": "clock_motion.png", "coffee": "coffee.png", "coins": "coins.png",
    "grass": "grass.png", "gravel": "gravel.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "moon": "moon.png", "page": "page.png", "retina": "retina.jpg",
    "rocket": "rocket.jpg", "text": "text.png",
}
OUT = Path(__file__).with_name("skimage_photos.npz")


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: pip install scikit-image, or pass --skimage-data DIR")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def square_gray(path: Path, size: int = SIZE) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.LANCZOS)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def derive(data_dir: Path, out: Path = OUT) -> Path:
    names = list(FILES)
    images, digests = [], []
    for name in names:
        path = data_dir / FILES[name]
        if not path.is_file():
            raise SystemExit(f"{path} is missing: this scikit-image ships a different data set")
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        images.append(square_gray(path))
    version = _skimage_version(data_dir)
    np.savez_compressed(out, images=np.stack(images), names=np.array(names), files=np.array([FILES[n] for n in names]),
                        sha256=np.array(digests), source=np.array(f"scikit-image {version}: skimage/data"))
    return out


def _skimage_version(data_dir: Path) -> str:
    """The version of the scikit-image that ``data_dir`` belongs to (installed, or an unpacked wheel)."""
    for info in sorted(data_dir.parent.parent.glob("scikit_image-*.dist-info")):
        return info.name[len("scikit_image-"):-len(".dist-info")]
    try:
        return importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skimage-data", type=Path, default=None, help="skimage/data folder (default: installed)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    out = derive(args.skimage_data or skimage_data_dir(), args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
