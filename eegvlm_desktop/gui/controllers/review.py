"""The scorer's actions on the model's output, mixed into :class:`ModelController`.

Accepting the model's stage (``M``, ``Shift+M``: undoable expert actions, logged as
``accepted``), jumping to what needs a look (``N``, ``Q``) and night context (``C``). Kept
apart so the controller stays about wiring; the methods use the controller's window
(``self.w``), model layer, worker, review panel and actions.
"""
from __future__ import annotations

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.model_card import night_context, read_manifest_json

#: Below this top probability an epoch counts as one the model is unsure about ("N" key).
UNSURE_BELOW = 0.6


class ExpertActions:
    """Mixin: needs ``w``, ``layer``, ``worker``, ``review_panel`` and ``_actions``."""

    def set_night_context(self, on: bool) -> None:
        """Stages with night context (the model's transition model) or each epoch alone."""
        self._actions["night_context"].setChecked(on)
        if self.layer is not None:
            self.layer.set_context(on)
        self.w.statusBar().showMessage(
            "Night context on: each epoch's stage weighs its neighbours." if on else
            "Night context off: each epoch's stage from its own image only.", 5000)

    def _apply_night_context(self) -> None:
        """Give the layer the loaded model's transition model (None for older folders)."""
        info = self.worker.loaded_info
        seq = None
        if info is not None:
            try:
                seq = night_context(read_manifest_json(info["folder"]))
            except EEGVLMError:
                seq = None  # the folder changed on disk since it loaded; stage without
        self._actions["night_context"].setEnabled(seq is not None)
        if self.layer is not None:
            self.layer.set_sequence(seq, context=self._actions["night_context"].isChecked())

    def _accept(self, epochs: list[int]) -> int:
        doc = self.w.doc
        if doc is None or self.layer is None:
            return 0
        chosen = [e for e in epochs if self.layer.stage(e) is not None]
        if not chosen:
            self.w.statusBar().showMessage("The model has not staged this epoch yet.", 5000)
            return 0
        stages = [self.layer.stage(e) for e in chosen]
        conf = self.layer.confidence()
        detail = {"model": self.layer.model_name,
                  "model_confidence": [round(float(conf[e]), 4) for e in chosen],
                  "night_context": self.layer.context_active}
        changes = self.w._persisting(
            lambda: doc.session.label(chosen, stages, source="accepted", detail=detail))
        return len(changes or [])

    def accept_current(self) -> None:
        self._accept([self.w.epoch])
        if self.w.auto_advance and self.w.epoch < self.w._n_epochs() - 1:
            self.w.goto_epoch(self.w.epoch + 1)

    def accept_page(self) -> None:
        per = self.w._epochs_per_page()
        first = (self.w.epoch // per) * per
        n = self._accept(list(range(first, min(first + per, self.w._n_epochs()))))
        self.w.statusBar().showMessage(f"Accepted the model's stage for {n} epochs.", 5000)

    def goto_next_unsure(self) -> None:
        if self.layer is None or self.w.doc is None:
            return
        conf = self.layer.confidence()
        check = self.layer.done & ((conf < UNSURE_BELOW)
                                   | self.layer.disagreements(list(self.w.doc.hypnogram.stages)))
        n = len(check)
        for k in range(1, n + 1):
            i = (self.w.epoch + k) % n
            if check[i]:
                self.w.goto_epoch(i)
                return
        self.w.statusBar().showMessage("No epoch where the model is unsure or disagrees.", 5000)

    def goto_next_review(self) -> None:
        nxt = self.review_panel.next_epoch(self.w.epoch)
        if nxt is None:
            self.w.statusBar().showMessage("The review queue is done.", 5000)
        else:
            self.w.goto_epoch(nxt)

