"""Proposals of an iteration as Ray tasks, at most ``concurrency`` at a time (:func:`jobs.ray_pool.at_most`).

Ray is started here only when it is not running already (:func:`jobs.ray_setup.start_ray`: a
local instance, or joining ``address``), and shut down only if it was started here. The proxy
data set is put in the object store once per run, the parent's weights once per iteration;
results come back as they finish, so the caller can journal each one at once.
"""

from __future__ import annotations

from typing import Iterator


class ProposalExecutor:
    def __init__(self, concurrency: int, cpus_per_proposal: float = 1.0, retries: int = 1,
                 address: str | None = None, gpus_per_proposal: float = 0.0):
        self.concurrency, self.cpus_per_proposal = concurrency, cpus_per_proposal
        self.gpus_per_proposal = gpus_per_proposal
        self.retries, self.address = retries, address
        self.started_ray = False
        self._task = self._data_ref = None
        self._data_id = None

    def start(self) -> None:
        from jobs.ray_setup import start_ray

        # a local Ray detects this machine's GPUs itself; --gpus-per-proposal then reserves them
        if not self.started_ray:
            self.started_ray = start_ray(address=self.address, cpus=self.concurrency * self.cpus_per_proposal)

    def close(self) -> None:
        from jobs.ray_setup import stop_ray

        stop_ray(self.started_ray)
        self.started_ray = False
        self._task = self._data_ref = self._data_id = None

    def run(self, jobs: list[dict], parent_state: dict, data) -> Iterator[tuple[dict, dict]]:
        """Yield ``(job, result)`` as each of ``jobs`` finishes (:func:`netadapt.finetune.evaluate_proposal`);
        a task whose worker died yields a result with ``status="error"``."""
        import ray

        from jobs.ray_pool import at_most

        from .finetune import evaluate_proposal

        if not jobs:
            return
        self.start()
        if self._task is None:
            self._task = ray.remote(evaluate_proposal).options(num_cpus=self.cpus_per_proposal,
                                                               num_gpus=self.gpus_per_proposal,
                                                               max_retries=self.retries)
        if self._data_id != id(data):
            self._data_ref, self._data_id = ray.put(data), id(data)
        parent_ref = ray.put(parent_state)
        for job, result, err in at_most(self.concurrency, jobs,
                                        lambda job: self._task.remote(job, parent_ref, self._data_ref)):
            if err is not None:  # the worker died (out of memory, killed)
                result = {"index": job["index"], "status": "error",
                          "reason": f"{type(err).__name__}: {str(err)[:300]}", "state": None}
            yield job, result
