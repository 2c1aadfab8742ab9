"""What long jobs share: the append-only journal, the atomic writer, Ray start-up, CLI helpers.

The search (``nas``), NetAdapt (``netadapt``) and the profiler (``latency``) all save progress the
same way, so it lives here, once, below all of them. This package imports nothing of ours (and
Ray only inside :mod:`jobs.ray_setup`'s functions), so any package may use it.
"""

from .atomic import atomic_savefig, atomic_write, atomic_write_text
from .journal import Journal, JournalMismatch, JournalWarning

__all__ = ["atomic_savefig", "atomic_write", "atomic_write_text", "Journal", "JournalMismatch", "JournalWarning"]
