"""Ray Tune adapter: a thin ``Searcher`` over a strategy, with a journal that survives kills.

``suggest(trial_id)`` asks the strategy for a sample, decodes it, predicts its latency on the
target and returns the trial config; ``on_trial_complete`` turns the child's accuracy into the
reward, appends the child to the journal (fsync'd JSON lines) and tells the strategy. After
every completed child the searcher's state (the strategy's JSON state, the samples in flight)
is written atomically, so a killed search resumes exactly: completed children are never
retrained, children that were in flight are run again, the controller is as it was.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from ray.tune.search import Searcher

from latency.table import MissingOpsError, atomic_write_text
from search_spaces.spaces import SearchSpace

from .reward import INVALID_REWARD, reward
from .strategies import Strategy


class Journal:
    """Append-only JSON lines, one per finished child; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # cut a torn last line (a kill mid-write) so the new record starts clean
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


class StrategySearcher(Searcher):
    def __init__(self, strategy: Strategy, space: SearchSpace, latency_fn: Callable, *, budget: int,
                 target_ms: float, w: float, alpha: float | None, beta: float | None, trial_config: dict,
                 run_dir: Path, on_record: Callable[[dict], None] | None = None):
        # Tune checks that every reported result carries the searcher's metric: the child's accuracy
        # (the reward itself is computed here, from the accuracy and the predicted latency).
        super().__init__(metric="accuracy", mode="max")
        self.strategy, self.space, self.latency_fn = strategy, space, latency_fn
        self.budget, self.target_ms, self.w, self.alpha, self.beta = budget, target_ms, w, alpha, beta
        self.trial_config = trial_config
        self.run_dir = Path(run_dir)
        self.journal = Journal(self.run_dir / "journal.jsonl")
        self.state_path = self.run_dir / "searcher.json"
        self.on_record = on_record
        self.records: list[dict] = []
        self.pending: dict[str, dict] = {}  # trial_id -> config of a child in flight
        self.requeue: list[list[int]] = []  # samples in flight when a previous run was killed
        self.next_index = 0
        self.cache: dict[str, dict] = {}  # spec hash -> a completed record (duplicates are not retrained)

    # ----------------------------------------------------------------- resume
    def resume(self) -> int:
        """Load the journal and the last state; returns the number of completed children."""
        self.records = self.journal.read()
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            self.strategy.load_state_dict(state["strategy"])
            told = set(state["told"])
            self.requeue = [p["sample"] for p in state["pending"]]
            self.next_index = state["next_index"]
        else:
            told = set()
        for record in self.records:  # children finished after the last state was written
            if record["index"] not in told:
                self.strategy.tell(record["sample"], record["reward"])
            self.requeue = [s for s in self.requeue if s != record["sample"]]
            self.next_index = max(self.next_index, record["index"] + 1)
            if record["status"] == "ok":
                self.cache.setdefault(record["hash"], record)
        return len(self.records)

    def _save_state(self) -> None:
        state = {"strategy": self.strategy.state_dict(), "told": [r["index"] for r in self.records],
                 "pending": [{"index": c["index"], "sample": c["sample"]} for c in self.pending.values()]
                 + [{"index": -1, "sample": s} for s in self.requeue],
                 "next_index": self.next_index, "saved": time.time()}
        atomic_write_text(self.state_path, json.dumps(state))

    @property
    def trained(self) -> int:
        """Children actually trained (duplicates answered from the cache do not count)."""
        return sum(1 for r in self.records if r.get("trained", True))

    # ----------------------------------------------------------------- Tune API
    def suggest(self, trial_id: str):
        for _ in range(1000):
            if self.trained + len(self.pending) >= self.budget:
                return Searcher.FINISHED if not self.pending else None
            sample = tuple(self.requeue.pop(0)) if self.requeue else self.strategy.ask()
            spec = self.space.decode(sample)
            cached = self.cache.get(spec.hash)
            if cached is None:
                break
            # The same network again: its accuracy is known, so tell it without retraining.
            self._complete(dict(cached, index=self.next_index, sample=list(sample),
                                tokens=list(self.space.to_tokens(sample)), trial_id="", status_detail="duplicate",
                                wall_s=0.0, trained=False))
            self.next_index += 1
        else:  # pragma: no cover - a strategy that only repeats itself
            return Searcher.FINISHED
        latency_ms, lut = self.latency_fn(spec)
        config = dict(self.trial_config, index=self.next_index, sample=list(sample), tokens=list(self.space.to_tokens(sample)),
                      spec=spec.to_dict(), hash=spec.hash, latency_ms=latency_ms, lut=lut)
        self.next_index += 1
        self.pending[trial_id] = config
        self._save_state()
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        config = self.pending.pop(trial_id, None)
        if config is None:
            return
        result = result or {}
        status = result.get("status", "error") if not error else "error"
        accuracy = result.get("accuracy") if status == "ok" else None
        value = reward(accuracy, config["latency_ms"], self.target_ms, self.w, self.alpha, self.beta) \
            if accuracy is not None else INVALID_REWARD
        self._complete({
            "index": config["index"], "trial_id": trial_id, "sample": config["sample"], "tokens": config["tokens"],
            "hash": config["hash"], "name": config["spec"]["name"], "accuracy": accuracy,
            "latency_ms": config["latency_ms"], "reward": value, "status": status,
            "reason": result.get("reason", "trial raised an error (see Ray's logs)" if error else ""),
            "wall_s": result.get("seconds", float("nan")), "trained": True, "lut_hits": config["lut"]["hits"],
            "lut_misses": config["lut"]["misses"], "madds": result.get("madds"), "params": result.get("params"),
        })

    def _complete(self, record: dict) -> None:
        self.journal.append(record)
        self.records.append(record)
        self.strategy.tell(record["sample"], record["reward"])
        if record["status"] == "ok" and record.get("trained", True):
            self.cache.setdefault(record["hash"], record)
        self._save_state()
        if self.on_record:
            self.on_record(record)

    def save(self, checkpoint_path: str) -> None:
        atomic_write_text(Path(checkpoint_path), json.dumps({"strategy": self.strategy.state_dict()}))

    def restore(self, checkpoint_path: str) -> None:
        self.strategy.load_state_dict(json.loads(Path(checkpoint_path).read_text())["strategy"])
