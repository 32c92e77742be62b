"""Append-only audit trail of label changes, as JSON lines.

Every label an expert sets, undoes or imports is one line; lines are never rewritten or
removed, so the file is a complete, replayable history even if the sidecar is replaced.

Durability: each :meth:`AuditLog.append` opens the file with ``O_APPEND`` (the kernel puts
each write at the current end, so two writers cannot overwrite each other's lines), writes
whole lines in one call, and fsyncs before returning. A crash mid-write can only leave a
*torn last line*; :meth:`AuditLog.read` skips it, and the next append first ends it with a
newline so the torn fragment cannot swallow the next good line.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from eegvlm_desktop.core.atomic import fsync_directory


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. ``2024-05-01T22:13:04.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """An append-only JSON-lines log at ``path``.

    Parameters
    ----------
    path : path-like
        The log file; it and its folder are created on the first append if missing
        (the folder's parent must exist).

    Notes
    -----
    Known event shapes (the log accepts any JSON-serialisable dict with an ``"event"`` key):

    * ``{"event": "label", "user", "epoch", "old", "new", "source", "old_source",
      "action": "set" | "undo" | "redo" | "import"}``
    * ``{"event": "open", ...}`` and ``{"event": "import", ...}``
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._dir_synced = False
        #: Number of unreadable (torn) lines the last :meth:`read` skipped.
        self.skipped_lines = 0
        #: Size of the log after this object's last append (``None`` before the first):
        #: the sidecar saved next includes every line up to here (see :mod:`.audit_replay`).
        self.written_end: int | None = None

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    def __repr__(self) -> str:
        return f"<AuditLog {str(self._path)!r}>"

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _encode(event: dict[str, Any]) -> bytes:
        if not isinstance(event, dict):
            raise TypeError(f"An audit event must be a dict, got {type(event).__name__}.")
        if not isinstance(event.get("event"), str):
            raise ValueError(f"An audit event needs an 'event' name (str), got {event!r}.")
        # 'time' first so a human reading the file sees when before what; the caller's dict
        # is copied, never modified.
        record = {"time": None, **event}
        if not record["time"]:
            record["time"] = utc_now_iso()
        # allow_nan=False: NaN is not JSON and would make the line unreadable elsewhere.
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        # json.dumps escapes newlines inside strings, so one event is always one line.
        return line.encode("utf-8") + b"\n"

    def append(self, event: dict[str, Any]) -> int:
        """Append one event durably (fsync-ed before returning); returns the new end offset.

        Parameters
        ----------
        event : dict
            JSON-serialisable; must have an ``"event"`` name. A ``"time"`` (UTC ISO, ms)
            is added when missing.

        Raises
        ------
        TypeError, ValueError
            If the event is not a dict, lacks a name, or is not JSON-serialisable; nothing
            is written then.
        OSError
            If the file cannot be written.
        """
        return self.append_many([event])

    def append_many(self, events: Iterable[dict[str, Any]]) -> int:
        """Append several events with a single write and a single fsync.

        A batch (e.g. an import touching 2,000 epochs) would take seconds with one fsync
        per line; one fsync makes the whole batch durable at once. All events are
        validated before anything is written.

        Parameters
        ----------
        events : iterable of dict
            As for :meth:`append`.

        Returns
        -------
        int
            The size of the log after the write: the offset where the next event will start.
            A sidecar records it (``audit_end``) so that on open the lines it does not
            include yet are exactly those after it (see :mod:`.audit_replay`).
        """
        data = b"".join(self._encode(e) for e in events)
        if not data:
            return self.size()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT
                     | getattr(os, "O_BINARY", 0), 0o666)
        try:
            size = os.fstat(fd).st_size
            # A previous writer died mid-line: terminate that fragment, or it would merge
            # with our first line and make *that* line unreadable too.
            # (lseek + read rather than os.pread, which Windows lacks; O_APPEND still sends
            # the write to the end whatever the read offset.)
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)
            if size and os.read(fd, 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                # os.write may write less than asked (signals, quotas); loop until done.
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
            end = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self.written_end = end
        if not self._dir_synced:
            # The file's directory entry must be durable too, or a power loss right after
            # the first append could lose the whole (new) file.
            fsync_directory(self._path.parent)
            self._dir_synced = True
        return end

    def size(self) -> int:
        """Bytes in the log (0 when it does not exist)."""
        try:
            return self._path.stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------ reading
    def read(self) -> list[dict[str, Any]]:
        """All readable events, oldest first; ``[]`` when the log does not exist.

        Lines that are not a complete JSON object (a torn write from a crash) are skipped
        and counted in :attr:`skipped_lines`.
        """
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        return self._parse(raw)

    def read_from(self, offset: int) -> list[dict[str, Any]] | None:
        """The events that start at byte ``offset`` or later, oldest first.

        Returns ``None`` (rather than guessing) when ``offset`` does not fit this log: past
        its end, or not at the start of a line, as when the log was replaced or truncated.
        """
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"Invalid value for the 'offset' parameter: it must be a byte "
                             f"offset >= 0, but got {offset!r} instead.")
        try:
            with open(self._path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:
                    return None
                if offset:
                    f.seek(offset - 1)
                    if f.read(1) != b"\n":
                        return None
                raw = f.read()
        except FileNotFoundError:
            return None if offset else []
        return self._parse(raw)

    def _parse(self, raw: bytes) -> list[dict[str, Any]]:
        self.skipped_lines = 0
        events: list[dict[str, Any]] = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self.skipped_lines += 1
                continue
            if isinstance(obj, dict):
                events.append(obj)
            else:
                self.skipped_lines += 1
        return events
