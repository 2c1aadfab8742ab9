"""Ray Tune adapter: a thin ``Searcher`` over a strategy, with a journal that survives kills.

``suggest(trial_id)`` asks the strategy for a sample, decodes it, predicts its latency on the
target and returns the trial config; ``on_trial_complete`` turns the child's accuracy into the
reward, appends the child to the journal (:class:`jobs.Journal`: fsync'd JSON lines) and tells
the strategy. After every completed child the searcher's state (the strategy's JSON state, the
samples in flight) is written atomically, so a killed search resumes exactly: completed children
are never retrained, children that were in flight are run again, the controller is as it was.
A journal that lacks children ``searcher.json`` counts as told is refused (:class:`jobs.JournalMismatch`).

Duplicates: the strategy samples with replacement and learns from every sample, as MnasNet's
controller does. A network that already finished (``ok``) is a new sample all the same: it is
told to the strategy with the reward it got (every child trains with the same seed, so retraining
would reproduce it), journaled with ``trained: false``, and not trained again nor counted against
the budget. A network still in flight, or one that failed, is trained again. When the strategy
proposes ``max_duplicates`` finished networks in a row (it has converged), the search stops
early and says why in :attr:`StrategySearcher.stopped`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from ray.tune.search import Searcher

from jobs import Journal, atomic_write_text
from jobs.jsonio import JSONShapeError, dumps, read_json
from search_spaces.spaces import SearchSpace

from .reward import INVALID_REWARD, reward
from .strategies import Strategy

MAX_DUPLICATES_IN_A_ROW = 1000


def _number(value) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def record_problem(record: dict, counts: list[int]) -> str | None:
    """Why a journal line is not a child of this search (None if it is): a missing or mistyped
    field, a non-finite number, a sample of another space (``counts``: options per decision)."""
    if not _index(record.get("index")):
        return f"index {record.get('index')!r} is not a child's index"
    sample = record.get("sample")
    if not (isinstance(sample, list) and len(sample) == len(counts)
            and all(_index(v) and v < n for v, n in zip(sample, counts))):
        return "sample is not a sample of this search's space"
    if not _number(record.get("reward")):
        return f"reward {str(record.get('reward'))[:40]!r} is not a finite number"
    if not isinstance(record.get("status"), str):
        return "status is not a string"
    if not isinstance(record.get("hash"), str):
        return "hash is not a string"
    tokens = record.get("tokens")
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        return "tokens is not a list of strings"
    if not isinstance(record.get("trained", True), bool):
        return "trained is not true or false"
    for key in ("accuracy", "test_accuracy"):
        if record.get(key) is not None and not (_number(record[key]) and 0 <= record[key] <= 1):
            return f"{key} {str(record[key])[:40]!r} is not an accuracy in [0, 1] or null"
    for key in ("wall_s", "lut_hits", "lut_misses", "madds", "params"):
        if record.get(key) is not None and not _number(record[key]):
            return f"{key} {str(record[key])[:40]!r} is not a finite number or null"
    for key in ("name", "trial_id", "reason", "status_detail"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"{key} is not a string"
    if not _number(record.get("latency_ms")) or record["latency_ms"] <= 0:
        return f"latency_ms {record.get('latency_ms')!r} is not a positive number"
    return None


def state_problem(state, counts: list[int]) -> str | None:
    """Why a loaded ``searcher.json`` cannot be this search's state (None if it can)."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    if not (isinstance(state.get("told"), list) and all(_index(i) for i in state["told"])):
        return "'told' is not a list of child indices"
    pending = state.get("pending")
    if not (isinstance(pending, list) and all(isinstance(p, dict) and isinstance(p.get("sample"), list)
                                              and len(p["sample"]) == len(counts)
                                              and all(_index(v) and v < n for v, n in zip(p["sample"], counts))
                                              for p in pending)):
        return "'pending' is not a list of samples of this space"
    if not _index(state.get("next_index")):
        return "'next_index' is not a child index"
    if not isinstance(state.get("strategy"), dict):
        return "'strategy' is not an object"
    return None


class StrategySearcher(Searcher):
    def __init__(self, strategy: Strategy, space: SearchSpace, latency_fn: Callable, *, budget: int,
                 target_ms: float, w: float, alpha: float | None, beta: float | None, trial_config: dict,
                 run_dir: Path, on_record: Callable[[dict], None] | None = None,
                 max_duplicates: int = MAX_DUPLICATES_IN_A_ROW):
        # Tune checks that every reported result carries the searcher's metric: the child's accuracy
        # (the reward itself is computed here, from the accuracy and the predicted latency).
        super().__init__(metric="accuracy", mode="max")
        self.strategy, self.space, self.latency_fn = strategy, space, latency_fn
        self.budget, self.target_ms, self.w, self.alpha, self.beta = budget, target_ms, w, alpha, beta
        self.trial_config = trial_config
        self.run_dir = Path(run_dir)
        counts = [len(options) for _, _, options in space.decisions]
        self.journal = Journal(self.run_dir / "journal.jsonl", check=lambda record: record_problem(record, counts))
        self.journal.check_target()  # a link out of the folder, a FIFO: refused before any child trains
        self.state_path = self.run_dir / "searcher.json"
        self.on_record = on_record
        self.max_duplicates = max_duplicates
        self.stopped = ""  # why the search stopped before its budget ("" while it has not)
        self.records: list[dict] = []
        self.pending: dict[str, dict] = {}  # trial_id -> config of a child in flight
        self.requeue: list[list[int]] = []  # samples in flight when a previous run was killed
        self.next_index = 0
        self.cache: dict[str, dict] = {}  # spec hash -> a completed record (duplicates are not retrained)

    # ----------------------------------------------------------------- resume
    def _load_state(self) -> dict | None:
        if not self.state_path.exists() and not self.state_path.is_symlink():
            return None
        try:
            state = read_json(self.state_path, what="searcher state")
        except JSONShapeError as err:
            raise ValueError(f"{err}; it is written atomically, so this is not a kill: restore it from a backup or "
                             "start a new search in another --out") from None
        problem = state_problem(state, [len(options) for _, _, options in self.space.decisions])
        if problem:
            raise ValueError(f"searcher state {self.state_path}: {problem}; restore it from a backup or start a new "
                             "search in another --out")
        return state

    def resume(self) -> int:
        """Load the journal and the last state; returns the number of completed children.

        Damaged journal lines are skipped with a warning; a journal that lacks children the state
        counts as told raises :class:`jobs.JournalMismatch`."""
        self.records = self.journal.read()
        state = self._load_state()
        told: set[int] = set()
        if state is not None:
            self.journal.check_state(self.records, self.state_path, state["told"])
            try:
                self.strategy.load_state_dict(state["strategy"])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
                raise ValueError(f"searcher state {self.state_path}: its strategy state cannot be loaded "
                                 f"({type(err).__name__}: {' '.join(str(err).split())[:160]}); restore it from a "
                                 "backup or start a new search in another --out") from None
            told = set(state["told"])
            self.requeue = [p["sample"] for p in state["pending"]]
            self.next_index = state["next_index"]
        for record in self.records:
            if record["index"] not in told:  # finished after the last state was written: no longer in flight
                self.strategy.tell(record["sample"], record["reward"])
                if record.get("trained", True) and record["sample"] in self.requeue:
                    self.requeue.remove(record["sample"])  # one of them: the same network may be in flight twice
            self.next_index = max(self.next_index, record["index"] + 1)
            if record["status"] == "ok":
                self.cache.setdefault(record["hash"], record)
        return len(self.records)

    def _save_state(self) -> None:
        state = {"strategy": self.strategy.state_dict(), "told": [r["index"] for r in self.records],
                 "pending": [{"index": c["index"], "sample": c["sample"]} for c in self.pending.values()]
                 + [{"index": -1, "sample": s} for s in self.requeue],
                 "next_index": self.next_index, "saved": time.time()}
        atomic_write_text(self.state_path, dumps(state))

    @property
    def trained(self) -> int:
        """Children actually trained (duplicates answered from the cache do not count)."""
        return sum(1 for r in self.records if r.get("trained", True))

    # ----------------------------------------------------------------- Tune API
    def suggest(self, trial_id: str):
        duplicates = 0
        while True:
            if self.stopped or self.trained + len(self.pending) >= self.budget:
                return Searcher.FINISHED if not self.pending else None
            sample = tuple(self.requeue.pop(0)) if self.requeue else self.strategy.ask()
            spec = self.space.decode(sample)
            cached = self.cache.get(spec.hash)
            if cached is None:
                break
            # A finished network again: a new sample of the policy, told with its known reward, not retrained.
            self._complete(dict(cached, index=self.next_index, sample=list(sample),
                                tokens=list(self.space.to_tokens(sample)), trial_id="", status_detail="duplicate",
                                wall_s=0.0, trained=False))
            self.next_index += 1
            duplicates += 1
            if duplicates >= self.max_duplicates:
                self.stopped = (f"stopped early after {self.trained} of {self.budget} children: the strategy proposed "
                                f"{duplicates} networks in a row that had already been trained (it has converged)")
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
            "test_accuracy": result.get("test_accuracy") if status == "ok" else None,
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
        atomic_write_text(Path(checkpoint_path), dumps({"strategy": self.strategy.state_dict()}))

    def restore(self, checkpoint_path: str) -> None:
        self.strategy.load_state_dict(read_json(checkpoint_path, what="searcher checkpoint")["strategy"])
