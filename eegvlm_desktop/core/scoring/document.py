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
                                        StorageError)
from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
from eegvlm_desktop.core.hypnogram.read import ImportResult, read_hypnogram
from eegvlm_desktop.core.recording.recording import Recording, read_recording
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

    @property
    def hypnogram(self) -> Hypnogram:
        return self.session.hypnogram

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
                       f"{rec.path.name}: " + "; ".join(problems))
            if policy is None:
                raise HypnogramFitError(message, problems)
            try:
                hyp = fit_to_recording(hyp, n, policy)
            except HypnogramMismatchError as err:
                raise HypnogramError(f"{message}. {err}") from err
            result.notes.append(f"Fitted to the recording ({policy}): " + "; ".join(problems))
        hyp.scorer = hyp.scorer or Path(path).name
        self.session.replace_hypnogram(hyp, reason=f"import {Path(path).name}")
        self.source = f"Imported from {Path(path).name} ({result.fmt})"
        self.mapping = list(result.mapping)
        self.notes += result.notes
        return result


def open_document(path: str | Path, *, user: str | None = None, data_dir: Path | None = None,
                  auto_hypnogram: bool = True, discard_mismatched: bool = False) -> Document:
    """Open ``path`` with its saved labels (or its sibling hypnogram, or none).

    Raises :class:`~eegvlm_desktop.core.errors.RecordingError` for an unreadable recording
    and :class:`~eegvlm_desktop.core.errors.StorageError` when saved labels cannot be used
    (``discard_mismatched=True`` moves a sidecar of another file version aside instead).
    """
    path = Path(path)
    user = user or default_user()
    recording = read_recording(path)
    store = LabelStore.for_recording(path, fingerprint=recording_fingerprint(path),
                                     data_dir=data_dir)
    try:
        saved = store.load()
    except StorageError:
        if not discard_mismatched:
            raise
        # The store never overwrites a sidecar it could not use: its first save moves the
        # old file aside (``store.set_aside_path``), so nothing is lost by starting fresh.
        saved = None
    n = recording.n_epochs(EPOCH_LENGTH)
    notes = list(getattr(recording, "unit_notes", []))
    hyp = saved if saved is not None else Hypnogram.unscored(n, EPOCH_LENGTH, 0.0, scorer=user)
    session = ScoringSession(hyp, store, user)
    doc = Document(recording, session, store, notes)
    if saved is not None:
        doc.source = f"Restored {saved.n_scored()} saved labels from {store.location.name}"
    elif auto_hypnogram and (sibling := find_sibling_hypnogram(path)) is not None:
        try:
            doc.import_hypnogram(sibling)
        except HypnogramError as err:  # a bad sibling must never stop the recording opening
            doc.notes.append(f"Found {sibling.name} but did not import it: {err}")
            doc.source = "Unscored"
    else:
        doc.source = "Unscored"
    return doc
