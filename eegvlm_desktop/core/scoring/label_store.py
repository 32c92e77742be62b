"""The label sidecar of one recording: where it lives, how it is read and written.

Labels are stored next to the recording (``night1.edf`` -> ``night1.edf.eegvlm.json`` and
the audit trail ``night1.edf.eegvlm-audit.jsonl``), so they travel with the file. When the
recording's folder is not writable (a read-only share, a CD, another user's folder) they go
to the per-user data folder instead, keyed by a hash of the recording's absolute path.

Writes are atomic (:mod:`.atomic`), so a crash never leaves a half-written sidecar in place
of a good one. A *fingerprint* of the recording's content is stored with the labels, so
labels are never silently applied to a different recording that happens to have the same
name (a re-exported EDF, a file replaced by a colleague).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from eegvlm_desktop.core.atomic import (TEMP_SUFFIX, atomic_write_text, cleanup_stale_temps,
                                        fsync_directory, temp_name)
from eegvlm_desktop.core.errors import StorageError
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.scoring.history import AuditLog, utc_now_iso
from eegvlm_desktop.core.scoring.label_lock import LabelLock

SIDECAR_FORMAT = "eegvlm-labels"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".eegvlm.json"
AUDIT_SUFFIX = ".eegvlm-audit.jsonl"
APP_NAME = "eegvlm-desktop"
#: Bytes of the recording hashed by :func:`recording_fingerprint`.
FINGERPRINT_BYTES = 64 * 1024


@dataclass(frozen=True)
class SavedLabels:
    """A sidecar as read: the labels and what says how current they are.

    Attributes
    ----------
    hypnogram : Hypnogram
    saved : str
        When the sidecar was written (ISO UTC; ``''`` if absent).
    audit_end : int or None
        Bytes of the audit trail these labels include (``None`` in sidecars of older
        versions); later audit lines are replayed on open (:mod:`.audit_replay`).
    fingerprint : str
        The recording fingerprint stored with the labels.
    from_seed : bool
        Read from the read-only sidecar beside the recording (see :class:`LabelStore`),
        whose ``audit_end`` counts another audit file than the store's.
    """

    hypnogram: Hypnogram
    saved: str
    audit_end: int | None
    fingerprint: str
    from_seed: bool = False


class SidecarMismatchError(StorageError):
    """The sidecar's labels were saved for a different version of the recording.

    Parameters
    ----------
    message : str
        Shown to the user verbatim.
    stored, expected : str
        The fingerprint in the sidecar and that of the recording now open.
    hypnogram : Hypnogram or None
        The labels found anyway, so the GUI can offer "use them regardless".
    """

    def __init__(self, message: str, stored: str, expected: str,
                 hypnogram: Hypnogram | None = None) -> None:
        super().__init__(message)
        self.stored = stored
        self.expected = expected
        self.hypnogram = hypnogram


def recording_fingerprint(path: str | os.PathLike[str]) -> str:
    """Identify a recording's content cheaply: its size plus the SHA-1 of its first 64 KiB.

    Reading the whole file would take seconds for a multi-GB PSG; the size and the header
    (which in EDF holds patient, date, channel set and sampling rates) change whenever the
    recording is re-exported or replaced, which is what this is meant to catch.

    Returns
    -------
    str
        ``"<size>:<sha1 hex>"``, e.g. ``"48338048:3f2a..."``.

    Raises
    ------
    StorageError
        If the file cannot be read.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(FINGERPRINT_BYTES)
    except OSError as err:
        raise StorageError(f"Could not read {p} to identify it for its labels: "
                           f"{err.strerror or err}.") from err
    return f"{size}:{hashlib.sha1(head).hexdigest()}"


def folder_is_writable(folder: str | os.PathLike[str]) -> bool:
    """Whether files can really be created in ``folder``.

    ``os.access`` alone is not enough: it says yes to root on a read-only share, and it
    ignores ACLs and read-only mounts on some systems. So after it agrees, a probe file is
    actually created and deleted.
    """
    folder = Path(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    probe = folder / temp_name(".eegvlm-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass  # a leftover probe is harmless: hidden, empty, never read
    return True


def fallback_folder(recording_path: str | os.PathLike[str],
                    data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The per-user folder for a recording's sidecar when its own folder is read-only.

    ``<data_dir>/<first 16 hex of sha1(absolute recording path)>``; ``data_dir`` defaults to
    ``platformdirs.user_data_dir("eegvlm-desktop")/sidecars``. Symlinks are resolved so the
    same file reached two ways shares one sidecar.
    """
    base = Path(data_dir) if data_dir is not None else Path(user_data_dir(APP_NAME)) / "sidecars"
    absolute = str(Path(recording_path).resolve())
    return base / hashlib.sha1(absolute.encode("utf-8")).hexdigest()[:16]


class LabelStore:
    """The sidecar (labels) and audit log of one recording.

    Use :meth:`for_recording` to get the right locations; the constructor takes explicit
    paths (useful for tests and tools).

    Parameters
    ----------
    location : path-like
        The sidecar JSON file.
    audit_path : path-like
        The audit JSON-lines file.
    fingerprint : str
        The recording's content fingerprint (see :func:`recording_fingerprint`).
    recording : str
        The recording's file name, stored in the sidecar for humans.
    is_fallback : bool
        Whether ``location`` is in the per-user data folder rather than next to the recording.
    seed : path-like or None
        A read-only sidecar next to the recording to load from while ``location`` does not
        exist yet (labels shipped with a recording on read-only media).
    """

    def __init__(self, location: str | os.PathLike[str], audit_path: str | os.PathLike[str], *,
                 fingerprint: str, recording: str, is_fallback: bool = False,
                 seed: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"'fingerprint' must be a non-empty str, got {fingerprint!r}.")
        self._location = Path(location)
        self._audit = AuditLog(audit_path)
        self._fingerprint = fingerprint
        self._recording = str(recording)
        self._is_fallback = bool(is_fallback)
        self._seed = Path(seed) if seed is not None else None
        # Whether the file at `location` is known to be ours (matching fingerprint) or
        # absent. Until then, save() first checks, so it never overwrites someone else's
        # labels (see _set_aside_foreign).
        self._verified = False
        #: Where a mismatched or unreadable sidecar was moved by the last save, if any.
        self.set_aside_path: Path | None = None
        #: The lock this process holds on the labels (see :meth:`acquire_lock`), if any.
        self.lock: LabelLock | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_recording(cls, recording_path: str | os.PathLike[str], *, fingerprint: str,
                      data_dir: str | os.PathLike[str] | None = None) -> "LabelStore":
        """The store for ``recording_path``: next to it if possible, else in ``data_dir``.

        An existing sidecar wins: if labels were saved to the fallback folder while the
        recording's folder was read-only, they are used even once the folder is writable
        again, so they never seem to vanish.

        Parameters
        ----------
        recording_path : path-like
            The recording file.
        fingerprint : str
            Its content fingerprint (see :func:`recording_fingerprint`).
        data_dir : path-like or None
            Base folder for fallback sidecars; default
            ``platformdirs.user_data_dir("eegvlm-desktop")/sidecars``.

        Raises
        ------
        StorageError
            If the fallback folder is needed and cannot be created.
        """
        rec = Path(recording_path).absolute()
        name = rec.name
        local = rec.parent / f"{name}{SIDECAR_SUFFIX}"
        local_audit = rec.parent / f"{name}{AUDIT_SUFFIX}"
        fb_dir = fallback_folder(rec, data_dir)
        fb = fb_dir / f"{name}{SIDECAR_SUFFIX}"
        fb_audit = fb_dir / f"{name}{AUDIT_SUFFIX}"

        if folder_is_writable(rec.parent):
            if fb.exists() and not local.exists():
                store = cls(fb, fb_audit, fingerprint=fingerprint, recording=name,
                            is_fallback=True)
            else:
                store = cls(local, local_audit, fingerprint=fingerprint, recording=name)
        else:
            try:
                fb_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StorageError(
                    f"The folder of {rec} is read-only and the labels folder {fb_dir} could "
                    f"not be created ({err.strerror or err}), so labels cannot be saved."
                ) from err
            store = cls(fb, fb_audit, fingerprint=fingerprint, recording=name,
                        is_fallback=True, seed=local if local.exists() else None)
        # Temps from a crashed save are never read, but they would pile up.
        cleanup_stale_temps(store.location.parent, store.location.name)
        return store

    # ------------------------------------------------------------------ properties
    @property
    def location(self) -> Path:
        """Path of the sidecar JSON."""
        return self._location

    @property
    def audit(self) -> AuditLog:
        """The recording's append-only audit log."""
        return self._audit

    @property
    def is_fallback(self) -> bool:
        """True when the sidecar is in the per-user data folder, not next to the recording."""
        return self._is_fallback

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def recording(self) -> str:
        return self._recording

    def __repr__(self) -> str:
        where = "fallback" if self._is_fallback else "local"
        return f"<LabelStore {str(self._location)!r} ({where})>"

    # ------------------------------------------------------------------ reading
    def _read(self, path: Path) -> SavedLabels:
        """Parse a sidecar. Raises StorageError."""
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise StorageError(f"Could not read the labels file {path}: "
                               f"{err.strerror or err}.") from err
        damaged = (f"The labels file {path} is damaged and cannot be read. It has been left "
                   f"untouched; move it elsewhere to start labelling afresh, or restore it "
                   f"from a backup.")
        try:
            doc: Any = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise StorageError(f"{damaged} ({err})") from err
        if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
            raise StorageError(f"{path} is not an EEG-VLM labels file (its 'format' is not "
                               f"{SIDECAR_FORMAT!r}); it has been left untouched.")
        version = doc.get("version")
        if not isinstance(version, int) or version < 1:
            raise StorageError(f"{damaged} (invalid 'version' {version!r})")
        if version > SIDECAR_VERSION:
            raise StorageError(f"The labels file {path} was written by a newer version of "
                               f"EEG-VLM Desktop (format version {version}); update the app "
                               f"to open these labels.")
        try:
            hyp = Hypnogram.from_dict(doc["hypnogram"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise StorageError(f"{damaged} (bad 'hypnogram': {err})") from err
        end = doc.get("audit_end")
        return SavedLabels(hyp, str(doc.get("saved") or ""),
                           end if isinstance(end, int) and end >= 0 else None,
                           str(doc.get("fingerprint", "")))

    def load(self) -> Hypnogram | None:
        """The saved labels, or ``None`` when there are none yet (see :meth:`load_state`)."""
        state = self.load_state()
        return None if state is None else state.hypnogram

    def load_state(self) -> SavedLabels | None:
        """The saved sidecar, or ``None`` when there is none yet.

        Raises
        ------
        StorageError
            If the sidecar cannot be read or parsed (the message names the file).
        SidecarMismatchError
            (a StorageError) if the labels were saved for a different version of the
            recording. Saving afterwards moves that sidecar aside rather than destroying it.
        """
        path = self._location
        if not path.exists():
            if self._seed is None or not self._seed.exists():
                self._verified = True
                return None
            path = self._seed  # read-only labels next to the recording
        state = self._read(path)
        if state.fingerprint != self._fingerprint:
            raise SidecarMismatchError(
                f"The labels in {path} belong to a different version of "
                f"{self._recording} (the recording's size or header changed since they were "
                f"saved). They were not loaded. If you continue, new labels are saved and the "
                f"old file is kept as a backup.",
                state.fingerprint, self._fingerprint, state.hypnogram)
        if path == self._location:
            self._verified = True
            return state
        return dataclasses.replace(state, from_seed=True)

    # ------------------------------------------------------------------ writing
    def _set_aside_foreign(self) -> None:
        """Move an existing sidecar that is not ours (other fingerprint, unreadable) aside.

        Runs once, before the first save of this store: labels of another version of the
        recording, or a file we cannot parse, may still be valuable to someone, so they are
        renamed to ``<sidecar>.conflict-<UTC time>`` rather than overwritten.
        """
        if not self._location.exists():
            return
        try:
            if self._read(self._location).fingerprint == self._fingerprint:
                return
        except StorageError:
            pass
        stamp = utc_now_iso().replace(":", "").replace("-", "")
        backup = self._location.with_name(f"{self._location.name}.conflict-{stamp}")
        os.replace(self._location, backup)
        fsync_directory(self._location.parent)
        self.set_aside_path = backup

    def to_json(self, hyp: Hypnogram, audit_end: int | None = None) -> str:
        """The sidecar document for ``hyp`` as JSON text."""
        doc = {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "fingerprint": self._fingerprint,
            "recording": self._recording,
            "saved": utc_now_iso(),
            # An older reader ignores this key, so the format version stays 1.
            **({} if audit_end is None else {"audit_end": int(audit_end)}),
            "hypnogram": hyp.to_dict(),
        }
        # Compact: the sidecar is rewritten on every keypress, and a 1,000-epoch night with
        # probabilities is several times bigger indented. allow_nan=False keeps it strict
        # JSON (to_dict already maps NaN to null).
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def save(self, hyp: Hypnogram) -> None:
        """Write the whole sidecar atomically; on return the labels are on disk.

        The sidecar records how much of the audit trail it includes: everything this
        store's :attr:`audit` has appended so far (the session appends before it saves).

        Raises
        ------
        StorageError
            If the file cannot be written, or this process no longer holds the lock it
            took (:meth:`check_lock`); the previous sidecar is then still intact.
        """
        if not isinstance(hyp, Hypnogram):
            raise TypeError(f"'hyp' must be a Hypnogram, got {type(hyp).__name__}.")
        self.check_lock()
        text = self.to_json(hyp, self._audit.written_end)
        try:
            if not self._verified:
                self._set_aside_foreign()
            atomic_write_text(self._location, text)
        except OSError as err:
            raise StorageError(
                f"Could not save the labels to {self._location}: {err.strerror or err}. "
                f"The previously saved labels in that file are intact."
            ) from err
        self._verified = True

    # ------------------------------------------------------------------ locking
    @property
    def lock_path(self) -> Path:
        """The lock file beside the sidecar (see :mod:`.label_lock`)."""
        return LabelLock.path_for(self._location)

    def acquire_lock(self, user: str) -> LabelLock:
        """Take the lock on these labels for this process (see :class:`LabelLock`).

        Raises
        ------
        LabelsLockedError
            (a StorageError) Another live window holds it.
        StorageError
            The lock file cannot be created (its folder is not writable).
        """
        try:
            self.lock = LabelLock.acquire(self.lock_path, user=user)
        except OSError as err:
            raise StorageError(f"Could not create the lock file {self.lock_path}: "
                               f"{err.strerror or err}.") from err
        return self.lock

    def check_lock(self, renew: bool = False) -> None:
        """Before a write: raise StorageError if the lock taken here is no longer ours.

        Also renews the lock's heartbeat when one is due, or now with ``renew`` (the
        window's timer). Does nothing for a store that never took a lock (tools and tests
        that write sidecars directly).
        """
        if self.lock is None:
            return
        self.lock.verify()
        try:
            self.lock.refresh(force=renew)
        except OSError as err:
            raise StorageError(f"Could not renew the lock file {self.lock.path}: "
                               f"{err.strerror or err}.") from err

    def release_lock(self) -> None:
        """Give the lock up (the night is closed); never raises."""
        if self.lock is not None:
            self.lock.release()


__all__ = ["LabelStore", "SidecarMismatchError", "SavedLabels", "recording_fingerprint",
           "folder_is_writable", "fallback_folder", "SIDECAR_SUFFIX", "AUDIT_SUFFIX", "TEMP_SUFFIX"]
