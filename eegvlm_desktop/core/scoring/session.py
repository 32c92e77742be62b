"""The scoring session: the one place where labels change, so every change is undoable,
audited and saved the same way.

The GUI never calls ``Hypnogram.set_stages`` directly; it calls :meth:`ScoringSession.label`
(and :meth:`undo` / :meth:`redo` / :meth:`replace_hypnogram`). Each call, before returning:

1. changes the in-memory hypnogram (views redraw through its change events),
2. records the batch on the undo stack,
3. appends one audit line per changed epoch and fsyncs the log, **then**
4. rewrites the sidecar atomically.

Audit first: if the process dies between 3 and 4, the trail already shows the change (it can
be replayed) and the old sidecar is still intact; the reverse order could leave a saved label
with no record of who set it. Everything is synchronous (no threads, no debounce timer), so
once ``label()`` returns the label survives a SIGKILL. It is fast enough to run on the GUI
thread per keypress: for 2,650 epochs, ~2 ms median without model probabilities and ~20 ms
with them, almost all of it ``Hypnogram.to_dict`` and JSON float formatting, not disk I/O.
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, Sequence

from eegvlm_desktop.core.errors import ReadOnlyError, StorageError
from eegvlm_desktop.core.hypnogram.hypnogram import PROVENANCES, Change, Hypnogram
from eegvlm_desktop.core.scoring.audit_replay import Recovery
from eegvlm_desktop.core.scoring.history import utc_now_iso
from eegvlm_desktop.core.scoring.label_store import LabelStore
from eegvlm_desktop.core.scoring.undo import UndoStack
from eegvlm_desktop.core.stages import ALL_LABELS


class ScoringSession:
    """Labels of one open recording, with undo/redo, audit trail and autosave.

    Parameters
    ----------
    hypnogram : Hypnogram
        The labels being edited (kept and mutated in place, so views subscribed to it stay
        connected).
    store : LabelStore
        Where the labels and audit trail are persisted.
    user : str
        Who is scoring; written to every audit line.
    read_only : str or None
        Why the labels may not be changed here (e.g. another window is scoring the night);
        ``None`` for a normal session. A read-only session writes nothing, not even the
        ``"open"`` audit line, and every change raises :class:`ReadOnlyError` with this
        reason before anything changes.

    Notes
    -----
    If saving fails (disk full, share gone), the change is kept in memory and on the undo
    stack, the error is raised as :class:`StorageError` for the GUI to show, and both the
    unsaved audit lines and the sidecar are written again with the next change or
    :meth:`flush`. :attr:`has_unsaved` tells the GUI to show a "not saved" warning meanwhile.
    """

    def __init__(self, hypnogram: Hypnogram, store: LabelStore, user: str,
                 read_only: str | None = None) -> None:
        if not isinstance(hypnogram, Hypnogram):
            raise TypeError(f"'hypnogram' must be a Hypnogram, got {type(hypnogram).__name__}.")
        if not isinstance(store, LabelStore):
            raise TypeError(f"'store' must be a LabelStore, got {type(store).__name__}.")
        if not isinstance(user, str) or not user.strip():
            raise ValueError(f"'user' must be a non-empty name, got {user!r}; every label in "
                             f"the audit trail has to say who set it.")
        self._hyp = hypnogram
        self._store = store
        self._user = user
        self._undo = UndoStack()
        self._pending_events: list[dict[str, Any]] = []
        self._dirty = False
        self._read_only = read_only
        if read_only is not None:
            return
        self._pending_events.append({
            "time": utc_now_iso(), "event": "open", "user": user,
            "recording": store.recording, "fingerprint": store.fingerprint,
            "n_epochs": hypnogram.n_epochs, "n_scored": hypnogram.n_scored(),
            "sidecar": str(store.location), "fallback": store.is_fallback,
        })
        try:
            self._flush_events()
        except StorageError:
            # Opening must not fail just because the disk is momentarily unwritable: the
            # event stays pending, and the first label() retries and reports the problem.
            pass

    # ------------------------------------------------------------------ properties
    @property
    def hypnogram(self) -> Hypnogram:
        """The labels being edited (the same object that was passed in)."""
        return self._hyp

    @property
    def store(self) -> LabelStore:
        return self._store

    @property
    def user(self) -> str:
        return self._user

    @property
    def can_undo(self) -> bool:
        return self._undo.can_undo

    @property
    def can_redo(self) -> bool:
        return self._undo.can_redo

    @property
    def undo_label(self) -> str | None:
        """What :meth:`undo` would revert, e.g. ``"Set N2 (3 epochs)"``, for the Edit menu."""
        return self._undo.undo_label

    @property
    def redo_label(self) -> str | None:
        return self._undo.redo_label

    @property
    def read_only(self) -> str | None:
        """Why these labels cannot be changed here, or ``None`` when they can."""
        return self._read_only

    @property
    def has_unsaved(self) -> bool:
        """True after a failed save until a later save succeeds."""
        return self._dirty or bool(self._pending_events)

    # ------------------------------------------------------------------ editing
    def _refuse_if_read_only(self) -> None:
        if self._read_only is not None:
            raise ReadOnlyError(f"These labels are open read-only: {self._read_only} Nothing "
                                f"was changed.")

    def _validate(self, indices: Iterable[int], stage: str | Sequence[str],
                  source: str) -> list[int]:
        """Check everything up front: ``set_stages`` validates epoch by epoch while it
        writes, so a bad index late in the list would leave earlier epochs changed but
        neither undoable nor saved."""
        self._refuse_if_read_only()
        try:
            idx = [operator.index(i) for i in indices]
        except TypeError as err:
            raise TypeError(f"Epoch indices must be integers ({err}).") from err
        n = self._hyp.n_epochs
        for i in idx:
            if not 0 <= i < n:
                raise IndexError(f"Epoch {i} is out of range 0..{n - 1}.")
        labels = [stage] if isinstance(stage, str) else [str(s) for s in stage]
        if not isinstance(stage, str) and len(labels) != len(idx):
            raise ValueError(f"Got {len(idx)} indices but {len(labels)} stages.")
        for lab in labels:
            if lab not in ALL_LABELS:
                raise ValueError(f"Invalid value for the 'stage' parameter. Allowed values are "
                                 f"{', '.join(ALL_LABELS)}, but got {lab!r}.")
        if source not in PROVENANCES:
            raise ValueError(f"Invalid value for the 'source' parameter. Allowed values are "
                             f"{', '.join(PROVENANCES)}, but got {source!r}.")
        return idx

    def label(self, indices: Iterable[int], stage: str | Sequence[str],
              source: str = "expert", detail: dict | None = None) -> list[Change]:
        """Set the label of epochs, as one undoable action, audited and saved on return.

        Parameters
        ----------
        indices : iterable of int
            Epochs to label.
        stage : str or sequence of str
            One label for all epochs, or one per epoch.
        source : str
            Provenance of the new labels (``"expert"`` for a keypress, ``"accepted"`` when
            the expert takes the model's stage).
        detail : dict, optional
            JSON-ready facts added to each audit line (e.g. which model was accepted).

        Returns
        -------
        list of Change
            The changes made; empty (and nothing written) when every epoch already had
            that label from that source.

        Raises
        ------
        ValueError, IndexError, TypeError
            Bad stage, source or epoch; nothing is changed.
        StorageError
            The change was made in memory but could not be saved (see class notes).
        """
        idx = self._validate(indices, stage, source)
        changes = self._hyp.set_stages(idx, stage, source)
        if not changes:
            if self.has_unsaved:
                self.flush()  # a keypress is a good moment to retry a failed save
            return []
        what = stage if isinstance(stage, str) else "stages"
        n = len(changes)
        self._undo.push(changes, f"Set {what} ({n} epoch{'s' if n != 1 else ''})")
        self._record(changes, "set", detail)
        return changes

    def undo(self) -> list[Change]:
        """Revert the last action; returns the changes made (``[]`` if nothing to undo)."""
        self._refuse_if_read_only()
        batch = self._undo.undo()
        if batch is None:
            return []
        made = self._hyp.apply_changes(batch, reverse=True)
        self._record(made, "undo")
        return made

    def redo(self) -> list[Change]:
        """Re-apply the last undone action; returns the changes made (``[]`` if none)."""
        self._refuse_if_read_only()
        batch = self._undo.redo()
        if batch is None:
            return []
        made = self._hyp.apply_changes(batch)
        self._record(made, "redo")
        return made

    def replace_hypnogram(self, hyp: Hypnogram, reason: str) -> list[Change]:
        """Take all labels (and their provenance) from ``hyp``, as one undoable action.

        Used for imports: the current hypnogram object is updated in place (views stay
        subscribed), an ``"import"`` audit event with ``reason`` is written, plus one
        ``"label"`` line (action ``"import"``) per changed epoch. Probabilities are not
        copied (they are not part of the undo history).

        Parameters
        ----------
        hyp : Hypnogram
            The new labels; must have the same number of epochs and epoch length.
        reason : str
            Why, for the audit trail (e.g. ``"import SC4001EC-Hypnogram.edf"``).

        Returns
        -------
        list of Change
            The per-epoch changes (one undo entry).
        """
        if not isinstance(hyp, Hypnogram):
            raise TypeError(f"'hyp' must be a Hypnogram, got {type(hyp).__name__}.")
        self._refuse_if_read_only()
        if hyp.n_epochs != self._hyp.n_epochs or hyp.epoch_length != self._hyp.epoch_length:
            raise ValueError(
                f"The new hypnogram has {hyp.n_epochs} epochs of {hyp.epoch_length:g} s but "
                f"the recording has {self._hyp.n_epochs} epochs of "
                f"{self._hyp.epoch_length:g} s.")
        old_s, old_p = self._hyp.stages, self._hyp.provenance
        new_s, new_p = hyp.stages, hyp.provenance
        changes = [Change(i, str(old_s[i]), str(new_s[i]), str(new_p[i]), str(old_p[i]))
                   for i in range(hyp.n_epochs)
                   if old_s[i] != new_s[i] or old_p[i] != new_p[i]]
        if changes:
            self._hyp.apply_changes(changes)
            self._undo.push(changes, f"Import ({len(changes)} epochs)")
        self._pending_events.append({
            "time": utc_now_iso(), "event": "import", "user": self._user,
            "reason": str(reason), "scorer": hyp.scorer, "n_changed": len(changes),
        })
        self._record(changes, "import")
        return changes

    def adopt_recovery(self, recovery: Recovery) -> None:
        """Save labels that were replayed from the audit trail on open.

        Their audit lines are already in the trail, so only one ``"replay"`` line is added
        (which epochs, how many); then the sidecar is rewritten so that it includes them.
        Like opening, this never raises: a failed save stays pending and is retried (and
        reported) with the next change.
        """
        if not recovery.changes or self._read_only is not None:
            return
        self._pending_events.append({
            "time": utc_now_iso(), "event": "replay", "user": self._user,
            "epochs": sorted({c.index for c in recovery.changes}),
            "n_changes": len(recovery.changes), "skipped": recovery.skipped,
        })
        self._dirty = True
        try:
            self.flush()
        except StorageError:
            pass

    # ------------------------------------------------------------------ persistence
    def _record(self, changes: Sequence[Change], action: str,
                detail: dict | None = None) -> None:
        """Queue one audit line per change, mark the sidecar dirty, and persist now."""
        now = utc_now_iso()  # stamped now, not at write time, in case a retry is needed
        self._pending_events.extend(
            {"time": now, "event": "label", "user": self._user, "epoch": c.index,
             "old": c.old, "new": c.new, "source": c.source, "old_source": c.old_source,
             "action": action, **(detail or {})}
            for c in changes)
        self._dirty = True
        try:
            self.flush()
        except StorageError as err:
            raise StorageError(
                f"{err} Your change is shown but NOT saved yet; saving is retried with your "
                f"next change.") from err

    def _flush_events(self) -> None:
        if not self._pending_events:
            return
        # A lock taken over by another window: write nothing, not even the trail (lines
        # after the new owner's sidecar would be replayed into its labels on the next open).
        self._store.check_lock()
        try:
            self._store.audit.append_many(self._pending_events)
        except OSError as err:
            raise StorageError(f"Could not write the audit trail {self._store.audit.path}: "
                               f"{err.strerror or err}.") from err
        self._pending_events.clear()

    def flush(self) -> None:
        """Write pending audit lines (fsync), then the sidecar (atomic), if any are pending.

        Raises
        ------
        StorageError
            If either cannot be written; what was not written stays pending.
        """
        if self._read_only is not None:
            return
        self._flush_events()
        if self._dirty:
            self._store.save(self._hyp)
            self._dirty = False

    def __repr__(self) -> str:
        return (f"<ScoringSession {self._store.recording!r} user={self._user!r} "
                f"{self._hyp.n_scored()}/{self._hyp.n_epochs} scored>")
