"""The model's view of the current epoch: its stage and probabilities, the image it saw with
where it looked, and its chain of thought, step by step.

A plain view: the main window feeds it data (the model layer's probabilities, the rendered
image, an :class:`~eegvlm_desktop.ml.vlm.explain.Explanation`) and connects its signals; it
never runs the model. Explanations are plain numpy data, so torch is never imported here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QProgressBar, QPushButton, QSlider,
                               QVBoxLayout, QWidget)

from eegvlm_desktop.core.picture.rendering import IMAGE_SIZE
from eegvlm_desktop.core.stages import STAGE_COLORS, STAGES
from eegvlm_desktop.gui.views.epoch_image import HEAT_LUT, EpochImageView, display_map

if TYPE_CHECKING:
    from eegvlm_desktop.ml.vlm.explain import Explanation

WHOLE_ANSWER = -1


def _font(widget: QWidget, *, bold: bool = False, italic: bool = False,
          scale: float = 1.0) -> QFont:
    """The widget's font, bold/italic and scaled (relative to the user's font size)."""
    font = QFont(widget.font())
    font.setBold(bold)
    font.setItalic(italic)
    font.setPointSizeF(font.pointSizeF() * scale)
    return font


def _badge_style(stage: str | None) -> str:
    """Stage badge: stage colour as background, black or white text for contrast."""
    bg = QColor(STAGE_COLORS.get(stage or "", "#d9d9d9"))
    fg = "#000000" if bg.lightnessF() > 0.55 else "#ffffff"
    return (f"background: {bg.name()}; color: {fg}; border-radius: 6px; padding: 2px 6px;"
            " font-weight: bold;")


#: Verification statuses (``StepCheck.status``) and how a step row shows them.
MEASURED, VERIFIED, UNVERIFIED = "measured", "verified", "unverified"
STEP_MARKS: dict[str, tuple[str, str | None, str | None]] = {
    # status: (prefix of the note line, text colour, background)
    MEASURED: ("\u25b8 ", None, None),
    VERIFIED: ("\u2713 ", None, None),
    UNVERIFIED: ("\u2717 ", "#a1001f", "#fde3e6"),
}
#: Item data role holding a step row's verification status.
STATUS_ROLE = Qt.ItemDataRole.UserRole + 1


#: Short names of the sources an answer is pooled from (core.staging.fusion.SOURCES).
_SOURCE_NAMES = {"vlm": "EEG-VLM image", "rsn": "RobustSleepNet", "yasa": "YASA"}


def _sources_text(sources: dict) -> str:
    """'Pooled from: EEG-VLM image N2 62 % · RobustSleepNet N3 81 % · YASA N3 74 %'."""
    parts = []
    for key, name in _SOURCE_NAMES.items():
        p = sources.get(key)
        if p is None:
            continue
        p = np.asarray(p, dtype=float).ravel()
        k = int(p.argmax())
        parts.append(f"{name} {STAGES[k]} {p[k]:.0%}".replace("%", " %"))
    return "Pooled from: " + " · ".join(parts) if parts else ""


def _mark_step(item: QListWidgetItem, check: Any) -> None:
    """Show a step's verification: a note line under it, and red when it is unverified.

    ``check`` is a :class:`~eegvlm_desktop.core.picture.verify.StepCheck` (or any object with
    its ``status`` and ``note``). The note is part of the row's text, so it is read out and
    copied with the step; an unverified step is never shown like a true one.
    """
    prefix, fg, bg = STEP_MARKS.get(check.status, STEP_MARKS[UNVERIFIED])
    note = check.note.replace(" %", "\u00a0%")
    item.setText(f"{item.text()}\n{prefix}{note}")
    item.setData(STATUS_ROLE, check.status)
    item.setToolTip(check.note)
    if fg is not None:
        item.setForeground(QColor(fg))
    if bg is not None:
        item.setBackground(QColor(bg))


class EpochPanel(QWidget):
    """The model's stage, image with attention, and reasoning for the current epoch.

    Epoch numbers passed in are 0-based; they are shown 1-based, like the status bar.
    Setters that change a control's value (opacity, overlay, step) emit the matching signal,
    as Qt's own setters do, so the main window can mirror the overlay from one place.
    """

    opacityChanged = Signal(float)  # overlay opacity, 0..1
    overlayToggled = Signal(bool)  # overlay shown or hidden
    stepSelected = Signal(int)  # index into Explanation.steps; -1 = whole answer
    explainRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.epoch: int | None = None
        self.probs: np.ndarray | None = None
        self.explanation: Explanation | None = None
        self.current_map: np.ndarray | None = None  # the grid map now in the overlay
        self.current_step: int | None = None
        self._streamed = ""
        self._reasoning = False
        self._explain_allowed = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addLayout(self._build_header())
        self.image_view = EpochImageView(self)
        self.image_view.setToolTip(
            "The image the model saw: EEG frontal (F), central (C), occipital (O), EOG, chin "
            "EMG and a 0.5-30 Hz spectrogram (Hz). The overlay shows where it looked, scaled "
            "to each map's own range.")
        layout.addWidget(self.image_view)
        layout.addLayout(self._build_overlay_controls())
        layout.addLayout(self._build_reasoning_bar())
        self.stream = QPlainTextEdit(self)
        self.stream.setReadOnly(True)
        self.stream.setPlaceholderText("Press Explain to have the model reason step by step.")
        self.steps = QListWidget(self)
        self.steps.setWordWrap(True)
        # Long steps wrap over several lines: spacing and alternating rows keep them apart.
        self.steps.setSpacing(2)
        self.steps.setAlternatingRowColors(True)
        self.steps.setVerticalScrollMode(QListWidget.ScrollMode.ScrollPerPixel)
        self.steps.currentRowChanged.connect(self._on_step_row)
        for w in (self.stream, self.steps):
            w.setMinimumHeight(120)
            layout.addWidget(w, 1)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #9a5b00;")
        layout.addWidget(self.note)
        self.clear()

    # ------------------------------------------------------------------ construction
    def _build_header(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.epoch_label = QLabel(self)
        self.epoch_label.setFont(_font(self, bold=True, scale=1.15))
        grid.addWidget(self.epoch_label, 0, 0, 1, 2)
        big = _font(self, scale=1.9)
        self.stage_label, self.expert_label = QLabel(self), QLabel(self)
        for col, (caption, label) in enumerate((("Model", self.stage_label),
                                                ("Expert", self.expert_label))):
            grid.addWidget(QLabel(caption, self), 1, col, Qt.AlignmentFlag.AlignHCenter)
            label.setFont(big)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("N3") + 22)
            grid.addWidget(label, 2, col, 3, 1, Qt.AlignmentFlag.AlignTop)
        bars = QGridLayout()
        bars.setVerticalSpacing(1)
        bars.setHorizontalSpacing(6)
        self.bars: dict[str, QProgressBar] = {}
        self.pct_labels: dict[str, QLabel] = {}
        self._stage_names: dict[str, QLabel] = {}
        for row, stage in enumerate(STAGES):
            name, pct = QLabel(stage, self), QLabel(self)
            pct.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            pct.setMinimumWidth(pct.fontMetrics().horizontalAdvance("100 %") + 2)
            bar = QProgressBar(self)
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            bar.setFixedHeight(max(10, pct.fontMetrics().height() - 5))
            bar.setStyleSheet("QProgressBar { border: none; background: #e4e4e4; }"
                              f"QProgressBar::chunk {{ background: {STAGE_COLORS[stage]}; }}")
            self.bars[stage], self.pct_labels[stage] = bar, pct
            self._stage_names[stage] = name
            bars.addWidget(name, row, 0)
            bars.addWidget(self.bars[stage], row, 1)
            bars.addWidget(pct, row, 2)
        grid.addLayout(bars, 0, 2, 5, 1)
        grid.setColumnStretch(2, 1)
        self.status_label = QLabel(self)  # 'not scored by the model yet'
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #666666;")
        grid.addWidget(self.status_label, 5, 0, 1, 3)
        # What the answer was pooled from (image model, RobustSleepNet, YASA), per epoch.
        self.sources_label = QLabel(self)
        self.sources_label.setWordWrap(True)
        self.sources_label.setStyleSheet("color: #444444;")
        self.sources_label.setVisible(False)
        grid.addWidget(self.sources_label, 6, 0, 1, 3)
        return grid

    def _build_overlay_controls(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.overlay_check = QCheckBox("Attention", self)
        self.overlay_check.setChecked(True)
        self.overlay_check.toggled.connect(self._on_overlay_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setToolTip("Opacity of the attention overlay")
        self.opacity_slider.valueChanged.connect(self._on_opacity_slider)
        self.opacity_label = QLabel("60 %", self)
        self.opacity_label.setMinimumWidth(self.opacity_label.fontMetrics()
                                           .horizontalAdvance("100 %") + 2)
        self.opacity_label.setAlignment(Qt.AlignmentFlag.AlignRight
                                        | Qt.AlignmentFlag.AlignVCenter)
        self.map_label = QLabel(self)  # which map the overlay shows
        self.map_label.setStyleSheet("color: #666666;")
        # Wide enough for any step, so the slider does not jump when the step changes.
        self.map_label.setMinimumWidth(self.map_label.fontMetrics()
                                       .horizontalAdvance("map: line 10"))
        row.addWidget(self.overlay_check)
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_label)
        row.addWidget(self.map_label)
        return row

    def _build_reasoning_bar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        title = QLabel("Reasoning", self)
        title.setFont(_font(title, bold=True))
        self.reason_status = QLabel(self)
        self.reason_status.setStyleSheet("color: #666666;")
        self.explain_button = QPushButton("Explain", self)
        self.explain_button.setToolTip("Let the model reason about this epoch step by step")
        self.explain_button.clicked.connect(self.explainRequested)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancelRequested)
        for w in (title, self.reason_status):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.explain_button)
        row.addWidget(self.cancel_button)
        return row

    # ------------------------------------------------------------------ header
    def set_epoch(self, epoch: int, expert: str, probs: np.ndarray | None,
                  alone: np.ndarray | None = None, sources: dict | None = None,
                  unscorable: str | None = None) -> None:
        """Show an epoch's number, expert label and the model's probabilities over STAGES.

        Only the header changes: call :meth:`clear` first when moving to another epoch, so
        the previous epoch's image and explanation do not linger.

        Parameters
        ----------
        epoch : int
            0-based epoch index (shown 1-based).
        expert : str
            The expert's label (a stage, ``'UNS'`` or ``'ART'``).
        probs : ndarray (5,) or None
            Model probabilities in STAGES order; None (or NaN) when not scored yet.
        alone : ndarray (5,), optional
            With night context on, the epoch's own answer (from its image only): shown in
            a line under the bars, so the scorer sees when the neighbours changed the stage.
        sources : dict, optional
            ``{source: (5,) probabilities}`` the answer was pooled from ('vlm', 'rsn',
            'yasa'): one line names each source's stage and confidence.
        unscorable : str, optional
            Why the quality gate gave this epoch no stage (flat, clipped...): shown instead
            of a stage, in red.
        """
        self.epoch = int(epoch)
        self.epoch_label.setText(f"Epoch {self.epoch + 1}")
        scored = expert in STAGES
        self.expert_label.setText(expert if scored or expert == "ART" else "–")
        self.expert_label.setStyleSheet(_badge_style(expert if scored or expert == "ART"
                                                     else None))
        self.expert_label.setToolTip("Expert: " + ("unscored" if expert == "UNS" else expert))
        p = None if probs is None else np.asarray(probs, dtype=float).ravel()
        if p is not None and (p.shape != (len(STAGES),) or not np.isfinite(p).all()):
            p = None
        self.probs = p
        best = None if p is None else STAGES[int(p.argmax())]
        self.stage_label.setText(best or "–")
        self.stage_label.setStyleSheet(_badge_style(best))
        own = None if alone is None or p is None else np.asarray(alone, dtype=float).ravel()
        if own is not None and own.shape == (len(STAGES),) and np.isfinite(own).all():
            k = int(own.argmax())
            moved = STAGES[k] != best
            self.status_label.setText(
                f"With night context. This epoch alone: {STAGES[k]} {own[k]:.0%}"
                .replace("%", " %") + (" — its neighbours changed the stage." if moved else ""))
            self.status_label.setStyleSheet("color: #9a5b00;" if moved else "color: #666666;")
        else:
            self.status_label.setText("" if p is not None else "not scored by the model yet")
            self.status_label.setStyleSheet("color: #666666;")
        if unscorable:
            self.status_label.setText(f"Unscorable: {unscorable}. No stage is given.")
            self.status_label.setStyleSheet("color: #b00020;")
        self.status_label.setVisible(bool(self.status_label.text()))
        self.sources_label.setText(_sources_text(sources) if sources and not unscorable else "")
        self.sources_label.setVisible(bool(self.sources_label.text()))
        for i, stage in enumerate(STAGES):
            self.bars[stage].setValue(0 if p is None else round(float(p[i]) * 1000))
            self.pct_labels[stage].setText("" if p is None else f"{p[i]:.0%}".replace("%", " %"))
            font = _font(self, bold=stage == best)
            self._stage_names[stage].setFont(font)
            self.pct_labels[stage].setFont(font)

    # ------------------------------------------------------------------ image and overlay
    def set_image(self, image: np.ndarray | None) -> None:
        """Show the model's input image (``(224, 224, 3)`` uint8 RGB), or nothing."""
        qimg = None
        if image is not None:
            a = np.ascontiguousarray(image, dtype=np.uint8)
            if a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"The 'image' parameter must be an RGB array (h, w, 3), but "
                                 f"got shape {a.shape}.")
            h, w = a.shape[:2]
            # copy(): the QImage must own its pixels, not borrow the numpy buffer.
            qimg = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.image_view.set_images(image=qimg)

    def set_attention(self, att_map: np.ndarray | None) -> None:
        """Overlay an attention grid ``(g, g)`` (any scale: it is normalised for display)."""
        self.current_map = None if att_map is None else np.asarray(att_map)
        heat = None
        if self.current_map is not None:
            level = (display_map(self.current_map) * 255 + 0.5).astype(np.intp)
            rgba = np.ascontiguousarray(HEAT_LUT[level])
            heat = QImage(rgba.data, IMAGE_SIZE, IMAGE_SIZE, 4 * IMAGE_SIZE,
                          QImage.Format.Format_RGBA8888).copy()
        self.image_view.set_images(heat=heat)

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the attention overlay (emits overlayToggled when it changes)."""
        self.overlay_check.setChecked(bool(visible))

    def set_opacity(self, opacity: float) -> None:
        """Overlay opacity in 0..1, in 1 % steps (emits opacityChanged when it changes)."""
        self.opacity_slider.setValue(int(round(float(np.clip(opacity, 0.0, 1.0)) * 100)))

    @property
    def overlay_visible(self) -> bool:
        return self.overlay_check.isChecked()

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def _on_overlay_toggled(self, on: bool) -> None:
        self.image_view.overlay = on
        self.opacity_slider.setEnabled(on)
        self.image_view.update()
        self.overlayToggled.emit(on)

    def _on_opacity_slider(self, value: int) -> None:
        self.image_view.opacity = value / 100.0
        self.opacity_label.setText(f"{value} %")
        self.image_view.update()
        self.opacityChanged.emit(value / 100.0)

    # ------------------------------------------------------------------ reasoning
    def set_explain_enabled(self, enabled: bool) -> None:
        """Allow the Explain button (e.g. off while no model is loaded)."""
        self._explain_allowed = bool(enabled)
        self.explain_button.setEnabled(enabled and not self.reasoning)

    @property
    def reasoning(self) -> bool:
        """True between :meth:`start_reasoning` and :meth:`set_explanation` / :meth:`clear`."""
        return self._reasoning

    def start_reasoning(self) -> None:
        """Clear the reasoning and show that the model is writing (Cancel shown)."""
        self._reset_reasoning(reasoning=True)

    def _reset_reasoning(self, reasoning: bool) -> None:
        self.explanation = None
        self.current_step = None
        self._streamed = ""
        self.stream.clear()
        self.steps.clear()
        self.steps.hide()
        self.stream.show()
        self.note.clear()
        self.note.hide()
        self.reason_status.setText("reasoning…" if reasoning else "")
        self._reasoning = reasoning
        self.cancel_button.setVisible(reasoning)
        self.explain_button.setEnabled(self._explain_allowed and not reasoning)

    def stream_text(self, text_so_far: str) -> None:
        """Show the text generated so far (called per token: appends when it only grew)."""
        if text_so_far == self._streamed:
            return
        if self._streamed and text_so_far.startswith(self._streamed):
            # Appending the new tail is O(token); re-setting the whole text re-lays it out.
            cursor = self.stream.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            cursor.insertText(text_so_far[len(self._streamed):])
        else:
            self.stream.setPlainText(text_so_far)
        self._streamed = text_so_far
        self.stream.verticalScrollBar().setValue(self.stream.verticalScrollBar().maximum())

    def set_explanation(self, ex: Explanation) -> None:
        """Show a finished explanation as clickable steps.

        The whole answer's map is selected, and stepSelected(-1) emitted, so the main window
        can mirror the overlay from the signal alone. ``ex`` is an
        :class:`~eegvlm_desktop.ml.vlm.explain.Explanation` (or any object with its fields).
        """
        self.explanation = ex
        self._reasoning = False
        self.cancel_button.hide()
        self.explain_button.setEnabled(self._explain_allowed)
        self.stream.hide()
        self.steps.show()
        self.steps.blockSignals(True)
        self.steps.clear()
        whole = QListWidgetItem(f"Whole answer: {ex.stage or 'no stage named'}")
        whole.setFont(_font(self.steps, italic=True))
        whole.setData(Qt.ItemDataRole.UserRole, WHOLE_ANSWER)
        whole.setToolTip("Where the model looked when it wrote the stage")
        self.steps.addItem(whole)
        checks = list(getattr(ex, "checks", None) or [])
        for k, text in enumerate(ex.steps):
            check = checks[k] if k < len(checks) else None
            # A no-break space keeps "38 %" together when the row wraps.
            item = QListWidgetItem(text.replace(" %", "\u00a0%"))
            item.setData(Qt.ItemDataRole.UserRole, k)
            if check is not None:
                _mark_step(item, check)
            self.steps.addItem(item)
        self.steps.blockSignals(False)
        done = {"eos": "", "max_tokens": "stopped at the length limit",
                "cancelled": "cancelled"}.get(ex.stop_reason, ex.stop_reason)
        self.reason_status.setText(done or "click a step to see where it looked")
        self.note.setText(self._note(ex))
        self.note.setVisible(bool(self.note.text()))
        self.current_step = None
        self.select_step(WHOLE_ANSWER)

    @staticmethod
    def _note(ex: Explanation) -> str:
        probs = np.asarray(ex.probs, dtype=float)
        direct = STAGES[int(probs.argmax())] if probs.size == len(STAGES) else None
        notes = []
        if ex.stage is None:
            notes.append("The reasoning names no stage.")
        elif direct is not None and ex.stage != direct:
            notes.append(f"The reasoning ends in {ex.stage}, but the direct answer is "
                         f"{direct} ({probs.max() * 100:.0f} %).")
        if ex.stop_reason == "cancelled":
            notes.append("Cancelled: the steps cover only what was written.")
        checks = getattr(ex, "checks", None)  # None: made before verification existed
        bad = [c.step + 1 for c in checks or [] if c.status == UNVERIFIED]
        if bad:
            which = ", ".join(str(k) for k in bad)
            notes.append(f"Line{'s' if len(bad) > 1 else ''} {which} disagree"
                         f"{'' if len(bad) > 1 else 's'} with the measured evidence (marked "
                         "in red): do not rely on them.")
        elif checks is not None and not checks:
            notes.append("Not verified: no measured evidence for this epoch.")
        return " ".join(notes)

    def select_step(self, k: int) -> None:
        """Overlay step ``k``'s map (-1: the whole answer) and emit stepSelected(k)."""
        if self.explanation is None:
            return
        for row in range(self.steps.count()):
            if self.steps.item(row).data(Qt.ItemDataRole.UserRole) == k:
                if self.steps.currentRow() == row:
                    self._on_step_row(row)
                else:
                    self.steps.setCurrentRow(row)  # -> _on_step_row
                return
        raise IndexError(f"No step {k} in the explanation ({len(self.explanation.steps)} "
                         "steps).")

    def _on_step_row(self, row: int) -> None:
        ex = self.explanation
        if ex is None or row < 0:
            return
        k = self.steps.item(row).data(Qt.ItemDataRole.UserRole)
        if k != WHOLE_ANSWER and k >= len(ex.step_maps):  # a step without a map: keep the
            return  # current overlay rather than show a wrong one (cannot normally happen)
        self.set_attention(ex.answer_map if k == WHOLE_ANSWER else ex.step_maps[k])
        self.map_label.setText("map: answer" if k == WHOLE_ANSWER else f"map: line {k + 1}")
        if k != self.current_step:
            self.current_step = k
            self.stepSelected.emit(k)

    # ------------------------------------------------------------------ reset
    def clear(self) -> None:
        """Forget the epoch, image, overlay map and reasoning (overlay settings are kept)."""
        self.set_epoch(0, "UNS", None)
        self.epoch = None
        self.epoch_label.setText("No epoch")
        self.set_image(None)
        self.set_attention(None)
        self.map_label.clear()
        self._reset_reasoning(reasoning=False)

