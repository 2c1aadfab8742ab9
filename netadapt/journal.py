"""The run's journal: append-only JSON lines, each fsync'd before the run goes on.

A kill can tear only the last line; :meth:`Journal.read` ignores a torn tail and
:meth:`Journal.repair` cuts it off before a resumed run appends, so later records are never
hidden behind it. Every record has its wall-clock ``time`` (seconds since the epoch) and a ``type``:

``seed``       the starting spec, its predicted latency and proxy accuracy (weights: ``seed.pt``)
``iteration``  an iteration's step target and every proposal (skipped ones with their reason)
``proposal``   one finished proposal (accuracies before/after fine-tune, weights file)
``chosen``     the proposal an iteration kept (``iter_KK.yaml`` / ``iter_KK.pt`` written first)
``final``      the long-term fine-tune of the final spec (``final.yaml`` / ``final.pt`` written first)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _clean(value):
    """JSON has no NaN: write None instead (read back as None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _lines(self) -> tuple[list[dict], int]:
        """Records up to the first unreadable line, and the byte length of that readable prefix."""
        if not self.path.exists():
            return [], 0
        records, good = [], 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn by a kill mid-write
                try:
                    records.append(json.loads(raw))
                except json.JSONDecodeError:
                    break
                good += len(raw)
        return records, good

    def read(self) -> list[dict]:
        return self._lines()[0]

    def repair(self) -> list[dict]:
        """Cut off a torn tail (a kill mid-write) and return the records."""
        records, good = self._lines()
        if self.path.exists() and self.path.stat().st_size != good:
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        return records

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(_clean(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
