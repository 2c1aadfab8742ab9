"""Append-only journals: one JSON object a line, each fsync'd before the job goes on.

Every journal of the project (the search's, NetAdapt's) is read back by one rule:

* a kill can tear only the last line (a line without its newline): :meth:`Journal.read` leaves it
  out, and :meth:`Journal.repair` / :meth:`Journal.append` cut it off, so that a resumed job's
  records start on a line of their own. Nothing else is ever cut;
* any other line that is not a JSON object is damaged (a disk error, a hand edit): it is skipped
  with a :class:`JournalWarning` naming the file and the line, and every good record before and
  after it is kept (blank lines hold nothing and are passed over);
* a journal that lacks records its job's state file counts as done, more than its damaged lines
  can account for (an empty or missing journal next to a state that counts children, another
  run's journal), is refused: :meth:`Journal.check_state` raises :class:`JournalMismatch`, one
  line naming both files.

Records are written as strict JSON: NaN and infinities become ``null``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Iterable


class JournalWarning(UserWarning):
    """A damaged journal line was skipped, or a torn last line cut."""


class JournalMismatch(ValueError):
    """A journal disagrees with its job's state file."""


def _strict(value):
    """JSON has no NaN: write None instead (read back as None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.damaged: list[int] = []  # line numbers (from 1) the last read skipped

    def _scan(self) -> tuple[list[dict], int | None, int]:
        """(good records, byte offset of a torn last line or None, its line number); warns of damage."""
        self.damaged = []
        if not self.path.exists():
            return [], None, 0
        data = self.path.read_bytes()
        lines = data.split(b"\n")  # the last item is b"" when the file ends with a newline
        records, offset = [], 0
        for number, raw in enumerate(lines[:-1], start=1):
            offset += len(raw) + 1
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if isinstance(record, dict):
                records.append(record)
                continue
            self.damaged.append(number)
            warnings.warn(f"{self.path}:{number}: damaged journal line skipped ({raw[:60]!r} is not a JSON "
                          "record); the good records before and after it are kept", JournalWarning, stacklevel=3)
        torn = offset if lines[-1] else None
        return records, torn, len(lines)

    def read(self) -> list[dict]:
        """The good records, in order (damaged lines skipped with a warning, a torn last line left out)."""
        return self._scan()[0]

    def repair(self) -> list[dict]:
        """Cut off a torn last line (a kill mid-write), with a warning; return the good records."""
        records, torn, number = self._scan()
        if torn is not None:
            self._truncate(torn)
            warnings.warn(f"{self.path}:{number}: cut a torn last line (a kill mid-write)", JournalWarning,
                          stacklevel=2)
        return records

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and fsync it (after cutting a torn last line, if any)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                clean_end = f.read(1) == b"\n"
            if not clean_end:
                self.repair()
        with open(self.path, "a") as f:
            f.write(json.dumps(_strict(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def check_state(self, records: list[dict], state_path: str | Path, done: Iterable, key: str = "index") -> None:
        """Refuse (:class:`JournalMismatch`) when the job's state file at ``state_path`` counts ``done``
        records (values of ``key``) that ``records`` (this journal's last read) lack, more of them
        than the damaged lines of that read can account for; warn of those the damage cost."""
        done = set(done)
        missing = sorted(done - {r.get(key) for r in records})
        if not missing:
            return
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        if len(missing) > len(self.damaged):
            raise JournalMismatch(
                f"{self.path} holds {len(records)} record(s) but {state_path} counts {len(done)} as done, "
                f"{len(missing)} of them ({key} {shown}) not in the journal; put back the journal that belongs "
                "to that state, or start a new run in another folder")
        warnings.warn(f"{self.path}: record(s) {key} {shown} that {state_path} counts as done were on damaged "
                      "lines and are lost", JournalWarning, stacklevel=2)
