"""What long jobs share: the append-only journal, the atomic writer, Ray start-up and N tasks at a
time (:mod:`jobs.ray_pool`), command-line checks (:mod:`jobs.cli`), bounded reading of users' files
(:mod:`jobs.safe_io`), lazy package attributes (:mod:`jobs.lazy`), small statistics (:mod:`jobs.stats`).

The search (``nas``), NetAdapt (``netadapt``) and the profiler (``latency``) all save progress the
same way, so it lives here, once, below all of them. This package imports nothing of ours (and
Ray only inside the functions of :mod:`jobs.ray_setup` and :mod:`jobs.ray_pool`), so any package may use it.
"""

from .atomic import atomic_savefig, atomic_write, atomic_write_text
from .files import FileKindError
from .journal import Journal, JournalMismatch, JournalWarning
from .jsonio import JSONShapeError, dumps, finite, read_json
from .lock import RunLocked, run_lock
from .signals import Stopped, stop_on_signals

__all__ = ["atomic_savefig", "atomic_write", "atomic_write_text", "FileKindError", "Journal", "JournalMismatch",
           "JournalWarning", "JSONShapeError", "dumps", "finite", "read_json", "RunLocked", "run_lock", "Stopped",
           "stop_on_signals"]
