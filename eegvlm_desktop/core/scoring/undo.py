"""Undo/redo of label changes, one entry per user action.

An entry is the list of :class:`~eegvlm_desktop.core.hypnogram.hypnogram.Change` one action made
(labelling a selection of 40 epochs is one entry, undone with one Ctrl+Z). The stack only
stores changes; applying them is :meth:`Hypnogram.apply_changes`' job, and persisting them
is :class:`~eegvlm_desktop.core.scoring.session.ScoringSession`'s.

Depth is unlimited: a night is ~1,000 epochs and each change is a few small strings, so
even thousands of actions cost little memory, and the expert can undo back to file open.
"""
from __future__ import annotations

from typing import Sequence

from eegvlm_desktop.core.hypnogram.hypnogram import Change


class UndoStack:
    """A linear undo history: undone entries can be redone until a new entry is pushed."""

    def __init__(self) -> None:
        # Tuples, so nobody can edit a recorded batch after the fact through a returned list.
        self._done: list[tuple[str, tuple[Change, ...]]] = []
        self._undone: list[tuple[str, tuple[Change, ...]]] = []

    def push(self, changes: Sequence[Change], label: str) -> None:
        """Record one action's changes (ignored when ``changes`` is empty).

        Pushing drops everything that was undone: after undo + a new edit, the old "future"
        no longer follows from the present, so redoing it would be wrong.

        Parameters
        ----------
        changes : sequence of Change
            The changes in the order they were made.
        label : str
            Short description for menus, e.g. ``"Set N2 (3 epochs)"``.
        """
        batch = tuple(changes)
        for c in batch:
            if not isinstance(c, Change):
                raise TypeError(f"UndoStack.push expects Change objects, got {type(c).__name__}.")
        if not batch:
            return
        self._done.append((str(label), batch))
        self._undone.clear()

    def undo(self) -> list[Change] | None:
        """Move the last action to the redo side and return its changes (to be reverted).

        Returns
        -------
        list of Change or None
            The batch as pushed (revert it with ``apply_changes(batch, reverse=True)``),
            or ``None`` when there is nothing to undo.
        """
        if not self._done:
            return None
        entry = self._done.pop()
        self._undone.append(entry)
        return list(entry[1])

    def redo(self) -> list[Change] | None:
        """Move the last undone action back and return its changes (to be re-applied).

        Returns
        -------
        list of Change or None
            The batch as pushed (re-apply it with ``apply_changes(batch)``), or ``None``
            when there is nothing to redo.
        """
        if not self._undone:
            return None
        entry = self._undone.pop()
        self._done.append(entry)
        return list(entry[1])

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_label(self) -> str | None:
        """Label of the action :meth:`undo` would revert (for an "Undo ..." menu item)."""
        return self._done[-1][0] if self._done else None

    @property
    def redo_label(self) -> str | None:
        """Label of the action :meth:`redo` would re-apply."""
        return self._undone[-1][0] if self._undone else None

    def __len__(self) -> int:
        """Number of actions that can be undone."""
        return len(self._done)

    def clear(self) -> None:
        """Forget all history (e.g. when another recording is opened)."""
        self._done.clear()
        self._undone.clear()
