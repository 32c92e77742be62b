"""Explaining the current epoch, mixed into :class:`ModelController`.

``E`` (or a pause on an epoch) asks the model worker for the epoch's reasoning and attention;
the text streams into the epoch panel, the answer's map shades the traces, a click on a step
shows that step's map. The attention geometry is Qt-free
(:mod:`eegvlm_desktop.core.staging.attention_map`); this keeps the wiring apart so the model
controller stays about staging runs.
"""
from __future__ import annotations

import numpy as np

from eegvlm_desktop.core.staging.attention_map import channel_attention, window_span


class ExplainActions:
    """Mixin: needs ``nav``, ``doc``, ``roles``, ``unscorable``, ``worker``, ``epoch_panel``, ``signal_view``,
    ``actions``, ``opacity``, ``explanation``, ``_explain_later`` and ``_ensure_loaded`` (all set
    by :class:`ModelController`)."""

    def explain(self) -> None:
        reason = self.unscorable.get(self.nav.epoch)
        if reason:
            # The quality gate gave this epoch no stage: reasoning about it would be made up.
            self._explain_later.cancel()
            self.explanation = None
            self.epoch_panel.start_reasoning()
            self.epoch_panel.stream_text(f"No explanation: this epoch is unscorable ({reason}).")
            return
        if not self._ensure_loaded():
            return
        self._explain_later.cancel()
        self.explanation = None
        self._explaining = True
        self.epoch_panel.start_reasoning()
        self.worker.explain(self.nav.epoch)

    def _on_text(self, epoch: int, text: str) -> None:
        if epoch == self.nav.epoch:
            self.epoch_panel.stream_text(text)

    def _on_explained(self, epoch: int, image: np.ndarray, ex) -> None:
        self._explaining = False
        if epoch != self.nav.epoch:
            return
        self.explanation, self.explained_epoch = ex, epoch
        self.epoch_panel.set_image(image)
        self.epoch_panel.set_explanation(ex)
        self._show_map(ex.answer_map)

    def _on_explain_failed(self, message: str) -> None:
        self._explaining = False
        if not self._load_failed:
            self.epoch_panel.stream_text(f"No explanation: {message}")

    def _on_step(self, k: int) -> None:
        ex = self.explanation
        if ex is not None:
            self._show_map(ex.answer_map if k < 0 or k >= len(ex.step_maps) else ex.step_maps[k])

    def _show_map(self, att: np.ndarray) -> None:
        doc = self.doc
        self._shown_map = att
        # The spectrogram strip's attention is folded into the EEG channel it was made from.
        lanes = channel_attention(att, self.roles).merged()
        start, length = window_span(self.nav.epoch, doc.hypnogram.epoch_length)
        self.signal_view.set_attention(start, length, lanes, self.opacity)

    def set_attention_visible(self, on: bool) -> None:
        self.attention_on = bool(on)
        act = self.actions.get("toggle_attention")
        if act is not None and act.isChecked() != self.attention_on:
            act.setChecked(self.attention_on)
        self.signal_view.set_attention_visible(self.attention_on)
        self.epoch_panel.set_overlay_visible(self.attention_on)

    def _on_opacity(self, value: float) -> None:
        self.opacity = float(value)
        if self.explanation is not None and self._shown_map is not None:
            self._show_map(self._shown_map)
