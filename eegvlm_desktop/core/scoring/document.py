"""An open recording with its labels: the object the window (and the CLI) work on.

Opening does, in order: read the recording lazily, find its sidecar (labels saved by this
app), restore them, or else look for the recording's own hypnogram next to it (Sleep-EDF
naming) and import it. All label changes then go through the ``ScoringSession`` so that
each one is undoable, audited and saved atomically before the call returns.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

from eegvlm_desktop.core.errors import (HypnogramError, HypnogramFitError, HypnogramMismatchError,
                                        StorageError, as_sentences)
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
from eegvlm_desktop.core.hypnogram.read import ImportResult, read_hypnogram
from eegvlm_desktop.core.recording.edf import open_error
from eegvlm_desktop.core.recording.quality import (SignalIssue, check_signal_quality,
                                                   recording_notes)
from eegvlm_desktop.core.recording.recording import Recording, read_recording
from eegvlm_desktop.core.scoring.audit_replay import Recovery, replay_events, unsaved_events
from eegvlm_desktop.core.scoring.label_lock import LabelsLockedError
from eegvlm_desktop.core.scoring.label_store import LabelStore, recording_fingerprint
from eegvlm_desktop.core.scoring.session import ScoringSession

EPOCH_LENGTH = 30.0
_HYPNO_PATTERNS = ("{stem}-Hypnogram.*", "{stem}_hypnogram.*", "{stem}.hypnogram.*",
                   "{stem}-hypnogram.*")


def default_user() -> str:
    """The login name, used as the scorer in the audit trail."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return os.environ.get("USER", "scorer")


def find_sibling_hypnogram(path: Path) -> Path | None:
    """A hypnogram that belongs to ``path`` by name, or None.

    Sleep-EDF pairs 'SC4001E0-PSG.edf' with 'SC4001EC-Hypnogram.edf' (same first six
    characters); other tools write '<stem>-Hypnogram.*' or '<stem>_hypnogram.*'.
    """
    path = Path(path)
    stem = path.stem
    candidates: list[Path] = []
    base = stem[:-4] if stem.upper().endswith("-PSG") else stem
    for pat in _HYPNO_PATTERNS:
        candidates += sorted(path.parent.glob(pat.format(stem=base)))
    if not candidates and len(stem) >= 6 and stem[:2].upper() in ("SC", "ST"):
        candidates = sorted(path.parent.glob(f"{stem[:6]}*-Hypnogram.edf"))
    candidates = [c for c in candidates if c != path and ".eegvlm" not in c.name]
    return candidates[0] if candidates else None


@dataclass
class Document:
    """A recording, its scoring session and what the user should be told about opening it."""

    recording: Recording
    session: ScoringSession
    store: LabelStore
    notes: list[str] = field(default_factory=list)
    source: str = ""  # where the current labels came from, in words
    mapping: list[tuple[str, str]] = field(default_factory=list)
    #: Problems found in the signal on open (flat, tiny, clipped channels).
    quality: list[SignalIssue] = field(default_factory=list)
    #: Labels replayed from the audit trail on open (a crash before the sidecar write).
    recovery: Recovery = field(default_factory=Recovery)
    #: False while the signal check is still to come (opened with ``check_quality=False``).
    quality_checked: bool = True
    #: How many of ``notes`` are the reader's own (unit fixes, warnings): the signal check's
    #: notes go right after them, as :func:`recording_notes` orders them.
    reader_notes: int = 0

    def set_quality(self, issues: list[SignalIssue]) -> None:
        """Add the signal check's findings (run after opening) to ``quality`` and ``notes``."""
        self.quality = list(issues)
        self.notes[self.reader_notes:self.reader_notes] = [str(q) for q in issues]
        self.quality_checked = True

    @property
    def hypnogram(self) -> Hypnogram:
        return self.session.hypnogram

    @property
    def read_only(self) -> str | None:
        """Why the labels cannot be changed in this document, or ``None``."""
        return self.session.read_only

    def close(self) -> None:
        """Give up the lock on the labels (they are saved already); never raises."""
        self.store.release_lock()

    def __enter__(self) -> "Document":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def import_hypnogram(self, path: Path, policy: str | None = None) -> ImportResult:
        """Import stages from ``path`` as one undoable change.

        Raises :class:`HypnogramFitError` (with ``problems``) when the file does not fit the
        recording and no ``policy`` ('crop', 'pad' or 'crop_or_pad') was chosen, and
        :class:`HypnogramError` when it cannot be made to fit (other epoch length, epochs
        that do not line up, or the chosen policy does not resolve the mismatch).
        """
        rec = self.recording
        try:
            result = read_hypnogram(path, epoch_length=EPOCH_LENGTH,
                                    recording_start=rec.meas_date,
                                    recording_duration=rec.duration)
        except HypnogramMismatchError as err:
            # Read-time mismatches (another epoch length) cannot be cropped or padded away.
            raise HypnogramError(str(err)) from err
        n = rec.n_epochs(EPOCH_LENGTH)
        hyp = result.hypnogram
        problems = check_fit(hyp, n, EPOCH_LENGTH)
        if problems:
            message = (f"The hypnogram {Path(path).name} does not match the recording "
                       f"{rec.path.name}: " + as_sentences(problems))
            if policy is None:
                raise HypnogramFitError(message, problems)
            try:
                hyp = fit_to_recording(hyp, n, policy)
            except HypnogramMismatchError as err:
                raise HypnogramError(as_sentences([message, str(err)])) from err
            result.notes.append(f"Fitted to the recording ({policy}): " + as_sentences(problems))
        hyp.scorer = hyp.scorer or Path(path).name
        self.session.replace_hypnogram(hyp, reason=f"import {Path(path).name}")
        self.source = f"Imported from {Path(path).name} ({result.fmt})"
        self.mapping = list(result.mapping)
        self.notes += result.notes
        return result


def open_document(path: str | Path, *, user: str | None = None, data_dir: Path | None = None,
                  auto_hypnogram: bool = True, discard_mismatched: bool = False,
                  read_only: str | None = None, check_quality: bool = True) -> Document:
    """Open ``path`` with its saved labels (or its sibling hypnogram, or none).

    Opening is all-or-nothing: it either returns a complete document, holding the lock on
    the night's labels, or raises having changed nothing (the lock is given back).

    Parameters
    ----------
    path : str or Path
        The recording.
    user : str or None
        Who is scoring (the login name by default).
    data_dir : Path or None
        Base folder of fallback sidecars (see :class:`~.label_store.LabelStore`).
    auto_hypnogram : bool
        Import the recording's own hypnogram beside it when it has no saved labels.
    discard_mismatched : bool
        Start without labels saved for another version of the file (their sidecar is
        moved aside by the first save, never overwritten).
    read_only : str or None
        Open without the lock, for viewing only; the text says why (shown to the user with
        any refused change). Nothing is written then.
    check_quality : bool
        Check the signal for flat, tiny and clipped channels now (``quality`` and ``notes``
        hold the findings). False leaves it to the caller, through
        :func:`~eegvlm_desktop.core.recording.quality.check_signal_quality` and
        :meth:`Document.set_quality`: the window shows the first page first, and the check
        (~15-30 ms of reads across the night) follows off its thread.

    Raises
    ------
    RecordingError
        The recording cannot be read, or is shorter than one 30-s epoch.
    LabelsLockedError
        (a StorageError) Another window is scoring the night; open it ``read_only``.
    StorageError
        The saved labels cannot be used (``discard_mismatched=True`` starts afresh).
    """
    path = Path(path)
    user = user or default_user()
    recording = read_recording(path)
    n = recording.n_epochs(EPOCH_LENGTH)
    if n < 1:
        raise open_error(recording.path, f"it is only {recording.duration:g} s long, shorter "
                         f"than one {EPOCH_LENGTH:g}-s scoring epoch, so there is nothing to "
                         f"score.", "Choose the whole-night recording; a file this short is "
                         "usually a test or an export that stopped early.")
    quality = check_signal_quality(recording) if check_quality else []
    store = LabelStore.for_recording(path, fingerprint=recording_fingerprint(path),
                                     data_dir=data_dir)
    lock_note = None
    if read_only is None:
        try:
            lock = store.acquire_lock(user)
        except LabelsLockedError:
            raise
        except StorageError as err:
            # Nothing can be written there anyway (the first change will say so loudly);
            # refusing to open would only hide the recording.
            lock_note = f"{err} Another window could open this night for scoring too."
        else:
            if lock.took_over:
                lock_note = f"Took over the labels' lock left by {lock.took_over}."
    try:
        doc = _load(recording, store, user, n, auto_hypnogram, discard_mismatched, read_only)
    except BaseException:
        store.release_lock()
        raise
    doc.quality, doc.quality_checked = quality, check_quality
    reader = recording_notes(recording, [])
    doc.reader_notes = len(reader)
    doc.notes = (reader + [str(q) for q in quality] + ([lock_note] if lock_note else [])
                 + doc.notes)
    return doc


def _load(recording: Recording, store: LabelStore, user: str, n: int, auto_hypnogram: bool,
          discard_mismatched: bool, read_only: str | None) -> Document:
    """The labels of an opened recording: sidecar, then audit lines it lacks, then sibling."""
    try:
        state = store.load_state()
    except StorageError:
        if not discard_mismatched:
            raise
        # The store never overwrites a sidecar it could not use: its first save moves the
        # old file aside (``store.set_aside_path``), so nothing is lost by starting fresh.
        state = None
    if state is not None and not state.from_seed:
        hyp = state.hypnogram
        events = unsaved_events(store.audit, audit_end=state.audit_end, saved=state.saved,
                                has_sidecar=True)
        session_fp: str | None = state.fingerprint
    else:
        # No sidecar of ours: every audit line of a session on this recording is unsaved.
        hyp = state.hypnogram if state is not None else Hypnogram.unscored(
            n, EPOCH_LENGTH, 0.0, scorer=user)
        events, session_fp = store.audit.read(), None
    n_saved = hyp.n_scored() if state is not None else 0
    recovery = replay_events(hyp, events, fingerprint=store.fingerprint,
                             session_fingerprint=session_fp)
    session = ScoringSession(hyp, store, user, read_only=read_only)
    session.adopt_recovery(recovery)
    doc = Document(recording, session, store, [], recovery=recovery)
    path = recording.path
    if state is not None:
        doc.source = f"Restored {n_saved} saved labels from {store.location.name}"
        if recovery.changes:
            doc.source += f", and {recovery.n_epochs} from the audit trail"
    elif recovery.changes:
        k = recovery.n_epochs
        doc.source = f"Recovered {k} label{'s' if k != 1 else ''} from the audit trail"
    elif auto_hypnogram and read_only is None and (
            sibling := find_sibling_hypnogram(path)) is not None:
        try:
            doc.import_hypnogram(sibling)
        except HypnogramError as err:  # a bad sibling must never stop the recording opening
            doc.notes.append(f"Found {sibling.name} but did not import it: {err}")
            doc.source = "Unscored"
    else:
        doc.source = "Unscored"
    return doc
