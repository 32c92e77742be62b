"""Who is scoring a night right now: a lock file next to its labels.

Two windows writing one sidecar overwrite each other's labels: each saves its own whole
hypnogram, so the last save wins and the other side's labels survive only in the audit
trail. So the first window to open a night for scoring takes a lock
(``night1.edf.eegvlm.lock`` beside ``night1.edf.eegvlm.json``) saying who holds it: host,
process id, user and since when. A second window is refused read-write and may open the
night read-only instead.

A lock whose owner died cannot stay forever: it is *stale*, and taken over, when

* its process no longer runs on this host (a crash, ``kill -9``), or
* its heartbeat is older than :data:`STALE_AFTER_S` (an owner on another host that vanished:
  its pid cannot be checked from here). The owner refreshes the heartbeat
  (:meth:`LabelLock.refresh`) at least every :data:`HEARTBEAT_S` while the night is open.

The owner checks that the lock is still its own before every write
(:meth:`LabelLock.verify`), so if it was taken over (a laptop that slept past the stale
limit), its next change is refused loudly instead of overwriting the new owner's labels.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from eegvlm_desktop.core.atomic import atomic_write_text
from eegvlm_desktop.core.errors import StorageError
from eegvlm_desktop.core.scoring.history import utc_now_iso

LOCK_FORMAT = "eegvlm-lock"
#: Suffix of the lock file, after the recording's file name.
LOCK_SUFFIX = ".eegvlm.lock"
#: The owner refreshes its heartbeat at least this often (seconds).
HEARTBEAT_S = 60.0
#: A lock not refreshed for this long is stale whatever its pid (seconds).
STALE_AFTER_S = 15 * 60.0
# A lock file without readable content is being written right now, unless it is this old:
# then its writer died between creating and filling it.
_UNREADABLE_GRACE_S = 10.0


@dataclass(frozen=True)
class LockOwner:
    """What a lock file says about its owner."""

    host: str
    pid: int
    user: str
    since: str
    heartbeat: str
    token: str

    def describe(self) -> str:
        """``'ana on ward-pc (process 4242) since 2024-05-01 22:13 UTC'``."""
        return (f"{self.user or 'someone'} on {self.host or 'an unknown computer'} "
                f"(process {self.pid}) since {_short_time(self.since)}")


class LabelsLockedError(StorageError):
    """The night is open for scoring in another window (or process) that is still alive.

    Parameters
    ----------
    message : str
        Shown to the user verbatim.
    owner : LockOwner
        Who holds the lock.
    lock_path : Path
        The lock file.
    """

    def __init__(self, message: str, owner: LockOwner, lock_path: Path) -> None:
        super().__init__(message)
        self.owner = owner
        self.lock_path = lock_path


def _short_time(iso: str) -> str:
    """``'2024-05-01T22:13:04.123Z'`` -> ``'2024-05-01 22:13 UTC'`` (as is when unparsable)."""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return str(iso)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _parse_time(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return None


def pid_is_running(pid: int) -> bool:
    """Whether a process with this id exists on this host.

    ``os.kill(pid, 0)`` sends nothing; it only checks. ``PermissionError`` means the
    process exists but belongs to another user, which still counts as running.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        # Windows raises OSError for a pid that does not exist.
        return False
    return True


def read_owner(path: Path) -> LockOwner | None:
    """The owner written in a lock file, or ``None`` if it is missing or unreadable."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT:
        return None
    try:
        return LockOwner(host=str(doc.get("host", "")), pid=int(doc.get("pid", 0)),
                         user=str(doc.get("user", "")), since=str(doc.get("since", "")),
                         heartbeat=str(doc.get("heartbeat", "")),
                         token=str(doc.get("token", "")))
    except (TypeError, ValueError):
        return None


def stale_reason(path: Path, owner: LockOwner | None, *, now: float | None = None,
                 host: str | None = None, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why the lock at ``path`` may be taken over, or ``None`` if its owner may be alive.

    Parameters
    ----------
    path : Path
        The lock file (its modification time counts as a heartbeat too).
    owner : LockOwner or None
        Its content (``None``: unreadable).
    now : float or None
        Current time (``time.time()`` by default).
    host : str or None
        This computer's name (``socket.gethostname()`` by default).
    stale_after_s : float
        Age of the last heartbeat after which the lock is stale whatever its pid.
    """
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return "it has gone"
    if owner is None:
        if now - mtime > _UNREADABLE_GRACE_S:
            return "it is unreadable (its writer stopped while creating it)"
        return None
    if owner.host == host and not pid_is_running(owner.pid):
        return f"process {owner.pid} on this computer is no longer running"
    # The newer of the written heartbeat and the file's time: clocks of two hosts differ,
    # and a lock must not look stale because its owner's clock is slow.
    beat = max(mtime, _parse_time(owner.heartbeat) or 0.0)
    if now - beat > stale_after_s:
        return (f"it has not been refreshed for {(now - beat) / 60:.0f} minutes "
                f"(the limit is {stale_after_s / 60:.0f})")
    return None


class LabelLock:
    """The lock this process holds on one night's labels.

    Use :meth:`acquire`; :meth:`release` when the night is closed.

    Parameters
    ----------
    path : Path
        The lock file.
    owner : LockOwner
        What this process wrote into it.
    took_over : str or None
        Why a stale lock was replaced by this one, if one was (for the user's information).
    """

    def __init__(self, path: Path, owner: LockOwner, took_over: str | None = None) -> None:
        self.path = Path(path)
        self.owner = owner
        self.took_over = took_over
        self._released = False
        self._last_beat = time.monotonic()

    @staticmethod
    def path_for(sidecar: Path) -> Path:
        """The lock file of a sidecar: ``night1.edf.eegvlm.json`` -> ``night1.edf.eegvlm.lock``."""
        sidecar = Path(sidecar)
        name = sidecar.name
        stem = name[:-len(".eegvlm.json")] if name.endswith(".eegvlm.json") else name
        return sidecar.with_name(stem + LOCK_SUFFIX)

    @classmethod
    def acquire(cls, path: str | os.PathLike[str], *, user: str,
                stale_after_s: float = STALE_AFTER_S) -> "LabelLock":
        """Take the lock at ``path``, taking over a stale one.

        Parameters
        ----------
        path : path-like
            The lock file (see :meth:`path_for`).
        user : str
            Who is scoring, shown to anyone refused.
        stale_after_s : float
            See :func:`stale_reason`.

        Raises
        ------
        LabelsLockedError
            Another live window holds the lock.
        OSError
            The lock file cannot be created (read-only or full disk).
        """
        path = Path(path)
        now = utc_now_iso()
        owner = LockOwner(host=socket.gethostname(), pid=os.getpid(), user=str(user),
                          since=now, heartbeat=now, token=secrets.token_hex(8))
        text = _to_json(owner)
        for _ in range(3):
            try:
                # O_EXCL: of two windows opening at once, exactly one creates the file.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                return cls(path, owner)
            current = read_owner(path)
            reason = stale_reason(path, current, stale_after_s=stale_after_s)
            if reason is None:
                if current is None:
                    time.sleep(0.05)  # being written right now: look again
                    continue
                raise LabelsLockedError(
                    f"These labels are open for scoring in another window: "
                    f"{current.describe()}. Two windows saving the same night would overwrite "
                    f"each other's labels, so this one cannot save. Close the other window, or "
                    f"open the night read-only here. (Lock file: {path})",
                    current, path)
            # Stale: replace it whole (atomic), then read back. Of two windows taking over
            # at the same moment the last rename wins; the other sees a foreign token here,
            # or at the latest in verify() before its first write.
            atomic_write_text(path, text)
            if (back := read_owner(path)) is not None and back.token == owner.token:
                who = current.describe() if current else "an unknown owner"
                return cls(path, owner, took_over=f"{who}: {reason}")
        current = read_owner(path)
        raise LabelsLockedError(
            f"These labels are being opened by another window right now "
            f"({current.describe() if current else 'owner unknown'}). Try again in a moment. "
            f"(Lock file: {path})", current or LockOwner("", 0, "", "", "", ""), path)

    # ------------------------------------------------------------------ holding
    @property
    def held(self) -> bool:
        """False once released."""
        return not self._released

    def verify(self) -> None:
        """Raise unless the lock file still names this process as its owner.

        Raises
        ------
        StorageError
            The lock was released, removed or taken over by another window.
        """
        if self._released:
            raise StorageError(f"The lock on these labels ({self.path}) was released; they "
                               f"can no longer be saved from here.")
        current = read_owner(self.path)
        if current is None or current.token != self.owner.token:
            who = current.describe() if current else "nobody (the lock file is gone)"
            raise StorageError(
                f"These labels are no longer this window's to save: the lock {self.path} "
                f"now belongs to {who}. Saving here would overwrite the other window's "
                f"labels. Reopen the night to continue from what was saved.")

    def refresh(self, *, force: bool = False) -> None:
        """Renew the heartbeat if :data:`HEARTBEAT_S` has passed (or ``force``).

        Raises
        ------
        StorageError
            The lock is no longer ours (see :meth:`verify`).
        OSError
            The lock file could not be rewritten.
        """
        if not force and time.monotonic() - self._last_beat < HEARTBEAT_S:
            return
        self.verify()
        owner = LockOwner(**{**self.owner.__dict__, "heartbeat": utc_now_iso()})
        atomic_write_text(self.path, _to_json(owner))
        self.owner = owner
        self._last_beat = time.monotonic()

    def release(self) -> None:
        """Remove the lock file if it is still ours; never raises (it runs on close)."""
        if self._released:
            return
        self._released = True
        current = read_owner(self.path)
        if current is not None and current.token == self.owner.token:
            try:
                os.unlink(self.path)
            except OSError:
                pass  # a lock left behind is stale at once: our pid is gone after exit

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<LabelLock {str(self.path)!r} {state}>"


def _to_json(owner: LockOwner) -> str:
    return json.dumps({"format": LOCK_FORMAT, "version": 1, **owner.__dict__},
                      ensure_ascii=False, indent=1) + "\n"


__all__ = ["LabelLock", "LabelsLockedError", "LockOwner", "LOCK_SUFFIX", "HEARTBEAT_S",
           "STALE_AFTER_S", "pid_is_running", "read_owner", "stale_reason"]
