"""Stopping a long job: Ctrl-C (SIGINT) or SIGTERM end it promptly, its journal intact.

``with stop_on_signals():`` around a job turns the first SIGINT or SIGTERM into :class:`Stopped`,
raised in the main thread wherever the job is (between two children, inside ``ray.wait``, in a
training step). It is a ``BaseException``, so no ``except Exception`` on the way swallows it,
and every ``finally`` runs: Ray is shut down, progress bars closed. The journal needs nothing:
each record is fsync'd whole, and a torn last line is cut on resume. The command line then
prints one line (:func:`stopped_line`) and exits with ``Stopped.status`` (130 for SIGINT, 143
for SIGTERM). A second signal during that clean-up ends the process at once with the same status.

Ray Tune would catch SIGINT itself (to end the experiment "successfully" and suggest its own
``Tuner.restore``) and ``ray.init`` sets SIGTERM handlers of its own (Python's ``sys.exit`` and
a C++ one that dumps a stack and aborts); so this module disables Tune's
(``TUNE_DISABLE_SIGINT_HANDLER``) and Ray's C++ one (``RAY_DISABLE_FAILURE_SIGNAL_HANDLER``), and
:func:`reinstall` puts ours back after ``ray.init`` (:func:`jobs.ray_setup.start_ray` calls it,
holding a signal back during the start-up with :func:`deferred`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["Stopped", "stop_on_signals", "reinstall", "deferred", "stopped_by", "stopped_line"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"active": 0, "stopping": False}


class Stopped(BaseException):
    """The job was asked to stop by signal ``signum``; exit with :attr:`status` (128 + signum)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.status = 128 + signum
        super().__init__(f"stopped by {self.name}")


def _handler(signum, frame):
    if _state["stopping"]:  # a second signal while cleaning up: go now (the journal survives a kill)
        os._exit(128 + signum)
    if _state.get("deferred"):  # inside a step that must not be cut (Ray's start-up): raise after it
        _state["pending"] = signum
        return
    _state["stopping"] = True
    _state["stop"] = Stopped(signum)
    raise _state["stop"]


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal back during the block (a library's start-up that a Python exception in
    the middle would leave half-made: ``ray.init``) and raise :class:`Stopped` right after it."""
    outer = _state.get("deferred", False)
    _state["deferred"] = True
    try:
        yield
    finally:
        _state["deferred"] = outer
    if not outer and _state.get("pending"):
        signum = _state.pop("pending")
        _state["stopping"] = True
        _state["stop"] = Stopped(signum)
        raise _state["stop"]


def reinstall() -> None:
    """Put this module's handlers back (after a library replaced them) while a job is running."""
    if _state["active"] and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _handler)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` in the ``with`` block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # Ray's C++ core replaces SIGTERM's handler while ray.init runs with one that dumps a stack and aborts
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _state["active"] += 1
    _state["stopping"] = False
    _state.pop("pending", None)
    _state.pop("stop", None)
    reinstall()
    try:
        yield
    finally:
        _state["active"] -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stopped_by(error: BaseException | None) -> Stopped | None:
    """The :class:`Stopped` behind ``error``: itself, one in its chain, or -- once a stop signal
    came -- whatever a library made of it on the way out (Ray's Cython code turns an exception
    raised inside ``ray.wait`` into a ``SystemError``); None for an error of its own."""
    seen = error
    while seen is not None:
        if isinstance(seen, Stopped):
            return seen
        seen = seen.__cause__ or seen.__context__
    return _state.get("stop")


def stopped_line(stop: Stopped, what: str) -> str:
    """The one line a command prints when stopped: what is kept and how to go on."""
    return (f"stopped by {stop.name}: the journal keeps every {what} finished so far; run the same command with "
            "--resume to continue (nothing finished is redone)")


def run_stoppable(command: Callable[[], int], what: str) -> int:
    """Run ``command`` (a CLI's body) so that Ctrl-C (SIGINT) or SIGTERM stop it promptly with
    one line saying how to resume (:func:`stopped_line`, ``what`` naming the journaled units) and
    exit status 130 / 143; anything else it raises passes through."""
    try:
        with stop_on_signals():
            code = command()
        stop = stopped_by(None)  # a stop that a library turned into an ordinary end
    except BaseException as error:  # noqa: BLE001 -- only a stop signal's consequences are handled here
        stop = stopped_by(error)
        if stop is None:
            raise
    if stop is None:
        return code
    print(stopped_line(stop, what), file=sys.stderr)
    return stop.status
