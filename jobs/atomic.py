"""The one way to save a file so that a kill leaves either the old or the new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from .files import check_write_target


def atomic_write(path: str | Path, write: Callable[[IO], object], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``, so
    that a kill leaves either the old or the new file (the project's one way to save progress).
    A ``path`` that is a link out of its folder, or a folder, FIFO or device, is refused
    (:class:`jobs.files.FileKindError`): a job writes only regular files inside its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path = check_write_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text))


def atomic_savefig(fig, path: str | Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically (a plot is rewritten after every step of a long job,
    so a kill must not leave a torn PNG) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".") or "png"), binary=True)
    plt.close(fig)
