"""N tasks at a time on Ray: the one loop behind the search's reference networks, NetAdapt's
proposals and the benchmarks' trainings.

:func:`at_most` submits items as Ray tasks, keeps at most ``limit`` running, and yields each
item with its result as it finishes, so the caller can journal it at once. A task whose worker
died (out of memory, killed) yields its exception instead of a result, never a traceback; when the
caller stops early (an exception, Ctrl-C, ``break``) the tasks still running are cancelled.
Ray must be running (:func:`jobs.ray_setup.start_ray`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")


def at_most(limit: int, items: Iterable[Item], submit: Callable[[Item], Any]
            ) -> Iterator[tuple[Item, Any, Exception | None]]:
    """Yield ``(item, result, None)`` or ``(item, None, error)`` for each of ``items`` as its task
    finishes; ``submit(item)`` starts one task and returns its ``ObjectRef``; at most ``limit``
    (at least 1) run at once, submitted in order."""
    import ray

    queue, running = list(items), {}
    try:
        while queue or running:
            while queue and len(running) < max(1, limit):
                item = queue.pop(0)
                running[submit(item)] = item
            [ready], _ = ray.wait(list(running), num_returns=1)
            item = running.pop(ready)
            try:
                result, error = ray.get(ready), None
            except Exception as err:  # noqa: BLE001 -- a dead worker is the caller's record, not a traceback
                result, error = None, err
            yield item, result, error
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
