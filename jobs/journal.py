"""Append-only journals: one JSON object a line, each fsync'd before the job goes on.

Every journal of the project (the search's, NetAdapt's) is read back by one rule:

* a kill can tear only the last line (a line without its newline): :meth:`Journal.read` leaves it
  out, and :meth:`Journal.repair` / :meth:`Journal.append` cut it off, so that a resumed job's
  records start on a line of their own. Nothing else is ever cut;
* any other line that is not a JSON object is damaged (a disk error, a hand edit): it is skipped
  with a :class:`JournalWarning` naming the file and the line, and every good record before and
  after it is kept (blank lines hold nothing and are passed over). So is valid JSON of the wrong
  shape: a non-finite number (``NaN``, ``1e400``), a line nested too deep, and a record the job's
  ``check`` refuses (a missing or mistyped field, a sample of another space);
* a journal that lacks records its job's state file counts as done, more than its damaged lines
  can account for (an empty or missing journal next to a state that counts children, another
  run's journal), is refused: :meth:`Journal.check_state` raises :class:`JournalMismatch`, one
  line naming both files.

Records are written as strict JSON (:func:`jobs.jsonio.dumps`: NaN and infinities become ``null``).
The journal is a regular file inside its job's folder: a link out of the folder, a FIFO, a
device or a folder in its place is refused in one line (:class:`jobs.files.FileKindError`),
never followed, truncated or waited on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

from .files import check_write_target, open_regular
from .jsonio import dumps, loads


class JournalWarning(UserWarning):
    """A damaged journal line was skipped, or a torn last line cut."""


class JournalMismatch(ValueError):
    """A journal disagrees with its job's state file."""


class Journal:
    """The journal at ``path``. ``check(record)`` (optional) says why a JSON object is not a record
    of this job (a string, or None when it is one); a record it refuses is a damaged line."""

    def __init__(self, path: str | Path, check: Callable[[dict], str | None] | None = None):
        self.path = Path(path)
        self.check = check
        self.damaged: list[int] = []  # line numbers (from 1) the last read skipped

    def _problem(self, raw: bytes) -> tuple[dict | None, str]:
        """(the record of a line, "") or (None, why it is damaged)."""
        try:
            record = loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            return None, f"{raw[:60]!r} is not a JSON record: {' '.join(str(err).split())[:80]}"
        if not isinstance(record, dict):
            return None, f"{raw[:60]!r} is not a JSON record"
        try:
            problem = self.check(record) if self.check is not None else None
        except Exception as err:  # noqa: BLE001 -- a check that trips over a shape is a damaged line
            problem = f"{type(err).__name__}: {err}"
        if problem:
            return None, f"{raw[:60]!r}: {' '.join(str(problem).split())[:120]}"
        return record, ""

    def _scan(self) -> tuple[list[dict], int | None, int]:
        """(good records, byte offset of a torn last line or None, its line number); warns of damage."""
        self.damaged = []
        try:
            with open_regular(check_write_target(self.path, what="journal"), what="journal") as f:
                data = f.read()
        except FileNotFoundError:
            return [], None, 0
        lines = data.split(b"\n")  # the last item is b"" when the file ends with a newline
        records, offset = [], 0
        for number, raw in enumerate(lines[:-1], start=1):
            offset += len(raw) + 1
            if not raw.strip():
                continue
            record, problem = self._problem(raw)
            if record is not None:
                records.append(record)
                continue
            self.damaged.append(number)
            warnings.warn(f"{self.path}:{number}: damaged journal line skipped ({problem}); the good records "
                          "before and after it are kept", JournalWarning, stacklevel=3)
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
        target = check_write_target(self.path, what="journal")
        with open_regular(target, what="journal", write=True) as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and fsync it (after cutting a torn last line, if any)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (dumps(record) + "\n").encode()
        target = check_write_target(self.path, what="journal")
        with open_regular(target, what="journal", write=True) as f:
            if f.seek(0, os.SEEK_END):
                with open_regular(target, what="journal") as r:
                    r.seek(-1, os.SEEK_END)
                    clean_end = r.read(1) == b"\n"
                if not clean_end:
                    self.repair()
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def check_target(self) -> None:
        """Refuse now (:class:`jobs.files.FileKindError`), before any work, a journal path that is a
        link out of its folder or not a regular file: the job could not write its records."""
        check_write_target(self.path, what="journal")

    def check_state(self, records: list[dict], state_path: str | Path, done: Iterable, key: str = "index") -> None:
        """Refuse (:class:`JournalMismatch`) when the job's state file at ``state_path`` counts ``done``
        records (values of ``key``) that ``records`` (this journal's last read) lack, more of them
        than the damaged lines of that read can account for; warn of those the damage cost."""
        done = set(done)
        missing = sorted(done - {r.get(key) for r in records if isinstance(r.get(key), (int, str))}, key=str)
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
