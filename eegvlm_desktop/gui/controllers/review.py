"""The scorer's actions on the model's output, mixed into :class:`ModelController`.

Accepting the model's stage (``M``, ``Shift+M``: undoable expert actions, logged as
``accepted``), jumping to what needs a look (``N``, ``Q``) and night context (``C``). The rules
are Qt-free (:mod:`eegvlm_desktop.core.staging.review`); this keeps the key wiring apart so the
controller stays about the worker.
"""
from __future__ import annotations

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.model_card import (context_default, night_context,
                                                    read_manifest_json)
from eegvlm_desktop.core.staging.review import acceptance, needs_a_look


class ExpertActions:
    """Mixin: needs ``nav``, ``doc``, ``layer``, ``worker``, ``review_panel``, ``actions``,
    ``notify``, ``apply_change`` and ``_context_default_of`` (all set by
    :class:`ModelController`)."""

    def set_night_context(self, on: bool) -> None:
        """Stages with night context (the model's transition model) or each epoch alone."""
        self.actions["night_context"].setChecked(on)
        if self.layer is not None:
            self.layer.set_context(on)
        self.notify("Night context on: each epoch's stage weighs its neighbours." if on else
                    "Night context off: each epoch's stage from its own image only.", 5000)

    def _apply_night_context(self) -> None:
        """Give the layer the loaded model's transition model (None for older folders)."""
        info = self.worker.loaded_info
        seq = manifest = None
        if info is not None:
            try:
                manifest = read_manifest_json(info["folder"])
                seq = night_context(manifest)
            except EEGVLMError:
                seq = None  # the folder changed on disk since it loaded; stage without
        if manifest is not None and self._context_default_of != info["folder"]:
            # Once per loaded model: a model pooled with cohort stagers says context is off
            # by default (they read the neighbours already); the scorer's toggle wins after.
            self._context_default_of = info["folder"]
            self.actions["night_context"].setChecked(context_default(manifest))
        self.actions["night_context"].setEnabled(seq is not None)
        if self.layer is not None:
            self.layer.set_sequence(seq, context=self.actions["night_context"].isChecked())

    def _accept(self, epochs: list[int]) -> int:
        doc = self.doc
        if doc is None or self.layer is None:
            return 0
        chosen, stages, detail = acceptance(self.layer, epochs)
        if not chosen:
            self.notify("The model has not staged this epoch yet.", 5000)
            return 0
        changes = self.apply_change(
            lambda: doc.session.label(chosen, stages, source="accepted", detail=detail))
        return len(changes or [])

    def accept_current(self) -> None:
        self._accept([self.nav.epoch])
        self.nav.advance()

    def accept_page(self) -> None:
        n = self._accept(self.nav.page_epochs())
        self.notify(f"Accepted the model's stage for {n} epochs.", 5000)

    def goto_next_unsure(self) -> None:
        if self.layer is None or self.doc is None:
            return
        nxt = self.nav.next_where(needs_a_look(self.layer, self.doc.hypnogram.stages))
        if nxt is None:
            self.notify("No epoch where the model is unsure or disagrees.", 5000)
        else:
            self.nav.go_to(nxt)

    def goto_next_review(self) -> None:
        nxt = self.review_panel.next_epoch(self.nav.epoch)
        if nxt is None:
            self.notify("The review queue is done.", 5000)
        else:
            self.nav.go_to(nxt)
