"""N tasks at a time on Ray: the one loop behind the search's reference networks, NetAdapt's
proposals and the benchmarks' trainings.

:func:`at_most` submits items as Ray tasks, keeps at most ``limit`` running, and yields each
item with its result as it finishes, so the caller can journal it at once. A task whose worker
died (out of memory, killed) yields its exception instead of a result, never a traceback; when the
caller stops early (an exception, ``break``) the tasks still running are cancelled.

A stop signal (:mod:`jobs.signals`) is never raised inside Ray's own calls: ``ray.wait`` polls
with a short timeout inside :func:`jobs.signals.deferred`, and the stop is raised between two
polls. On a stop the running tasks are *not* cancelled: the process is ending, and a driver's
tasks die with it when it shuts Ray down or disconnects. ``ray.cancel`` racing a task's reply is
a known Ray core crash (ray-project/ray#54527: ``Check failed: it != submissible_tasks_.end()``,
exit status 1 and a C++ stack instead of the one-line stop).
Ray must be running (:func:`jobs.ray_setup.start_ray`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
POLL_S = 0.25  # how often ray.wait returns to let a stop signal through


def at_most(limit: int, items: Iterable[Item], submit: Callable[[Item], Any]
            ) -> Iterator[tuple[Item, Any, Exception | None]]:
    """Yield ``(item, result, None)`` or ``(item, None, error)`` for each of ``items`` as its task
    finishes; ``submit(item)`` starts one task and returns its ``ObjectRef``; at most ``limit``
    (at least 1) run at once, submitted in order."""
    import ray

    from .signals import deferred, stopped_by

    queue, running = list(items), {}
    try:
        while queue or running:
            while queue and len(running) < max(1, limit):
                item = queue.pop(0)
                running[submit(item)] = item
            ready = []
            while not ready:  # a stop signal lands between two polls, never inside Ray's Cython
                with deferred():
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            ready = ready[0]
            item = running.pop(ready)
            try:
                result, error = ray.get(ready), None
            except Exception as err:  # noqa: BLE001 -- a dead worker is the caller's record, not a traceback
                result, error = None, err
            yield item, result, error
    finally:
        if stopped_by(None) is None:  # on a stop the process is ending: no cancel racing a reply (above)
            for ref in running:
                ray.cancel(ref, force=True)
