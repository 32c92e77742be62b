"""The scorer's keys on the expert hypnogram: label, undo, redo, next unscored.

Every change goes through the document's session (saved and audited before the key press
returns). The controller gets the navigation state and callables to report with; it never sees
the window.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from eegvlm_desktop.core.errors import ReadOnlyError, StorageError
from eegvlm_desktop.core.scoring.document import Document
from eegvlm_desktop.core.scoring.navigation import Navigation
from eegvlm_desktop.core.stages import UNS

#: ``notify(text, ms)``: a transient status-bar message.
Notify = Callable[[str, int], None]
#: ``alert(title, message)``: a dialog the scorer must see.
Alert = Callable[[str, str], None]


class ScoringController(QObject):
    """Applies the scorer's label changes to the open document.

    Parameters
    ----------
    nav : Navigation
        The current epoch (read) and where to go after a change (moved).
    notify, alert : callable
        Status-bar message and error dialog.
    on_change_done : callable
        Called after every change attempt, saved or not, to refresh the status and the
        enabled actions (Undo/Redo follow the session's stack).
    """

    def __init__(self, nav: Navigation, *, notify: Notify, alert: Alert,
                 on_change_done: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.nav = nav
        self.notify = notify
        self.alert = alert
        self.on_change_done = on_change_done
        self.doc: Document | None = None

    def set_document(self, doc: Document | None) -> None:
        self.doc = doc

    def apply(self, change: Callable[[], Any]) -> Any:
        """Run a label change; if it could not be saved, say so loudly and keep scoring.

        The session keeps the change in memory and on the undo stack and retries the save
        with the next change, so the scorer is warned, not blocked. Returns what ``change``
        returned, or None when saving failed.
        """
        try:
            return change()
        except ReadOnlyError as err:  # nothing changed: not a failed save, a refusal
            self.alert("Labels cannot be changed here", str(err))
            return None
        except StorageError as err:
            self.on_change_done()
            self.alert("Labels NOT saved", str(err))
            return None
        finally:
            # The hypnogram announces a change before the session pushes it on the undo
            # stack, so Undo/Redo are re-enabled here, once the action is complete.
            self.on_change_done()

    def label_current(self, stage: str) -> None:
        """Score the current epoch (saved before returning), then auto-advance if on."""
        if self.doc is None:
            return
        doc, epoch = self.doc, self.nav.epoch
        # Even when saving failed the label is applied (and retried), so advance as usual;
        # a read-only night changed nothing, so the scorer stays on the epoch.
        self.apply(lambda: doc.session.label([epoch], stage))
        if doc.read_only is None:
            self.nav.advance()

    def undo(self) -> None:
        if self.doc is not None:
            changes = self.apply(self.doc.session.undo)
            if changes:
                self.nav.go_to(changes[0].index)

    def redo(self) -> None:
        if self.doc is not None:
            changes = self.apply(self.doc.session.redo)
            if changes:
                self.nav.go_to(changes[0].index)

    def goto_next_unscored(self) -> None:
        if self.doc is None:
            return
        nxt = self.nav.next_where([s == UNS for s in self.doc.hypnogram.stages])
        if nxt is None:
            self.notify("Every epoch is scored.", 5000)
        else:
            self.nav.go_to(nxt)
