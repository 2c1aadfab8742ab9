"""One Ray start-up for every job that runs work on Ray (the search's trials, NetAdapt's proposals).

A job starts Ray only when it is not running already (a test session, a notebook, or a driver
that joined a cluster keep theirs), and shuts down only what it started.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator


def start_ray(*, address: str | None = None, cpus: float = 1.0) -> bool:
    """Start Ray unless it is running: join ``address`` (``auto``, a GCS or ``ray://`` address), or
    start a local instance with ``ceil(cpus)`` CPUs (its GPUs detected by Ray), without the dashboard
    and without copying the workers' output to this process. Returns whether it started Ray here
    (then :func:`stop_ray` shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    init = {"address": address} if address else {"num_cpus": max(1, math.ceil(cpus)), "include_dashboard": False}
    import signal

    from .signals import Stopped, deferred, reinstall

    try:
        with deferred():  # a stop signal waits for Ray to be up (a half-made start-up crashes at exit)
            try:
                ray.init(log_to_driver=False, configure_logging=False, **init)
            except SystemExit as exit_:  # ray.init's own SIGTERM handler fired during its start-up
                if exit_.code != signal.SIGTERM:
                    raise
                raise Stopped(signal.SIGTERM) from None
            finally:
                reinstall()  # ray.init sets its own SIGTERM handler; a job stopping on signals keeps its own
    except Stopped:
        ray.shutdown()
        raise
    return True


def stop_ray(started: bool) -> None:
    """Shut Ray down if :func:`start_ray` started it (``started``)."""
    if started:
        import ray

        ray.shutdown()


@contextmanager
def ray_running(*, address: str | None = None, cpus: float = 1.0) -> Iterator[bool]:
    """Ray running for the ``with`` block (:func:`start_ray`), stopped after it if started here."""
    started = start_ray(address=address, cpus=cpus)
    try:
        yield started
    finally:
        stop_ray(started)
