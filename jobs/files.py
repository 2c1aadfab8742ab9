"""Files a job reads or writes are what they seem: regular files, inside the job's folder.

A job's folder (``--out``) may hold things the job did not put there: a ``journal.jsonl`` that is
a symbolic link to a file elsewhere, a FIFO, a device or a folder where a file is expected. The
helpers here turn each into one line (:class:`FileKindError`), before any byte is read or written:

* :func:`check_write_target`: a file a job is about to write (append, truncate or replace) must
  not be a link that leads out of its folder, and must be a regular file if it exists. Every
  write of the project goes through :mod:`jobs.atomic` or :class:`jobs.Journal`, which call it.
* :func:`open_regular` / :func:`read_bytes` / :func:`read_text`: a file a job reads (a journal,
  a table, a spec, a config, a CSV) is opened with ``O_NONBLOCK`` (a FIFO cannot block the open)
  and checked with ``fstat`` on the open descriptor (no race between the check and the read):
  anything but a regular file is refused, naming it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["FileKindError", "check_write_target", "open_regular", "read_bytes", "read_text", "kind_of"]


class FileKindError(ValueError):
    """A path that is not a regular file where one is expected, or a link out of its folder."""


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words (``a folder``, ``a FIFO``, ...)."""
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return words
    return "not a regular file"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def check_write_target(path: str | Path, folder: str | Path | None = None, *, what: str = "file") -> Path:
    """``path`` resolved, after checking that writing it stays inside ``folder`` (default: the
    folder ``path`` is in): a symbolic link (at ``path`` or on the way to it from ``folder``) that
    leads out of ``folder`` is refused, and so is an existing ``path`` that is not a regular file.
    The link itself is never followed for the write: callers write the returned path."""
    path = Path(path)
    folder = Path(folder) if folder is not None else path.parent
    real_folder = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(path))
    if not _inside(real, real_folder):
        raise FileKindError(f"{what} {path} is a link to {real}, outside {folder}; a job writes only inside its "
                            "folder: remove the link (or choose another --out)")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    except OSError as err:
        raise FileKindError(f"{what} {path} cannot be looked up ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        raise FileKindError(f"{what} {path} is {kind_of(mode)}, not a file; remove it (or choose another --out)")
    return real


def open_regular(path: str | Path, *, what: str = "file", write: bool = False):
    """A binary file object of the regular file ``path`` (read, or append with ``write``):
    opened without blocking and checked on its descriptor, so a FIFO, a device or a folder is a
    :class:`FileKindError` naming it (never a hang). ``FileNotFoundError`` passes through."""
    path = Path(path)
    flags = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    flags |= (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)) if write else os.O_RDONLY
    try:
        fd = os.open(path, flags, 0o644)
    except IsADirectoryError:
        raise FileKindError(f"{what} {path} is a folder, not a file") from None
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno in (getattr(os, "ELOOP", -1), getattr(os, "ENXIO", -1)):  # a link / a FIFO with no reader
            try:
                kind = kind_of(os.lstat(path).st_mode)
            except OSError:
                kind = "not a regular file"
            raise FileKindError(f"{what} {path} is {kind}, not a file") from None
        raise FileKindError(f"{what} {path} cannot be opened ({err.strerror or err})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileKindError(f"{what} {path} is {kind_of(mode)}, not a file; give a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "ab" if write else "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, *, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`); a file over ``max_bytes`` is
    a :class:`FileKindError` naming it."""
    with open_regular(path, what=what) as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise FileKindError(f"{what} {path} is larger than {max_bytes:,} bytes")
    return data


def read_text(path: str | Path, *, what: str = "file", max_bytes: int | None = None) -> str:
    """The UTF-8 text of the regular file ``path`` (:func:`read_bytes`); not UTF-8 is a
    :class:`FileKindError` naming the file and the offset."""
    data = read_bytes(path, what=what, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileKindError(f"{what} {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                            f"{err.start})") from None


def file_problem_words(err: BaseException, path: str | Path, what: str) -> str:
    """What :func:`open_regular` / :func:`read_bytes` found wrong with ``path`` (opened as
    ``what``), without the path and the generic fix, for a caller that words its own error:
    e.g. ``is a FIFO (named pipe), not a file``."""
    if isinstance(err, OSError) and err.strerror:
        return f"cannot be read ({err.strerror})"
    words = str(err).removeprefix(f"{what} {path} ").removesuffix("; give a regular file")
    return words

