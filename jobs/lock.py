"""One live run per folder: ``with run_lock(out):`` around everything a job does in ``out``.

Two runs journaling into the same folder (a second start, or a ``--resume`` while the first is
still alive) would train the same children twice and interleave their records. The lock is an
``fcntl.flock`` on ``out/.run.lock``, which the kernel releases when its holder dies however it
dies (a kill -9 included), so a stale lock (a dead pid written in the file) is simply taken over.
The file names the holder (pid and command line), so the refusal is one line naming the live
process: :class:`RunLocked`.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .files import FileKindError, check_write_target
from .jsonio import dumps, loads

__all__ = ["RunLocked", "run_lock", "LOCK_NAME"]

LOCK_NAME = ".run.lock"


class RunLocked(RuntimeError):
    """The folder is in use by a live run; the message names its pid and command."""


def _holder(fd: int) -> str:
    """``pid N (command)`` of the holder, as it wrote itself into the lock file."""
    try:
        info = loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
        pid, command = int(info.get("pid")), str(info.get("command", ""))
    except (ValueError, TypeError, AttributeError):
        return "another process (it has not written its pid yet)"
    try:  # the live command line, when the system shows it
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read(2000).replace(b"\0", b" ").decode("utf-8", "replace").strip() or command
    except OSError:
        pass
    command = " ".join(command.split())  # one line, whatever the command line holds
    command = command if len(command) <= 160 else command[:100] + " ... " + command[-55:]
    return f"pid {pid} ({command})"


@contextmanager
def run_lock(out: str | Path, *, what: str = "run folder") -> Iterator[Path]:
    """Hold the lock of the folder ``out`` (made if missing) for the ``with`` block; a folder whose
    lock a live process holds is :class:`RunLocked` (one line naming the process and the fix)."""
    out = Path(out)
    made = not out.exists()
    if not made and not out.is_dir():
        raise FileKindError(f"{what} {out} is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _held(out, what):
            yield out
    finally:
        if made and [p.name for p in out.iterdir()] == [LOCK_NAME]:  # nothing done: leave no folder behind
            (out / LOCK_NAME).unlink(missing_ok=True)
            out.rmdir()


@contextmanager
def _held(out: Path, what: str) -> Iterator[None]:
    path = check_write_target(out / LOCK_NAME, out, what="lock file")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{what} {out} is in use by a live run: {_holder(fd)}; wait for it to finish or stop it "
                            "(Ctrl-C), or choose another --out") from None
        command = " ".join([os.path.basename(sys.executable)] + sys.argv)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (dumps({"pid": os.getpid(), "command": command}) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
