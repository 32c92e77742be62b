"""Wires the model into the scoring window: worker, model layer, panels, overlays, keys.

Kept out of ``main_window.py`` so that the window stays about scoring. The GUI thread only
moves data between the :class:`ModelWorker` (which owns the model), the :class:`ModelLayer`
(the model's probabilities, never the expert's labels) and the views.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.rendering import render_night
from eegvlm_desktop.core.recording.montage import pick_roles
from eegvlm_desktop.core.staging.attention_map import channel_attention, window_span
from eegvlm_desktop.core.staging.model_card import read_manifest_json, trained_on
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui import dialogs
from eegvlm_desktop.gui.controllers.finetune import LoopController
from eegvlm_desktop.gui.controllers.review import ExpertActions
from eegvlm_desktop.gui.panels.agreement_panel import AgreementPanel
from eegvlm_desktop.gui.panels.epoch_panel import EpochPanel
from eegvlm_desktop.gui.panels.finetune_panel import FinetunePanel
from eegvlm_desktop.gui.panels.model_panel import ModelPanel
from eegvlm_desktop.gui.panels.review_panel import ReviewPanel
from eegvlm_desktop.gui.workers import ModelWorker

if TYPE_CHECKING:
    from eegvlm_desktop.gui.main_window import MainWindow

#: Wait this long after the last navigation before generating an explanation, so holding
#: an arrow key does not queue one explanation per epoch passed.
EXPLAIN_DELAY_MS = 350
#: The side panels follow the current epoch once navigation pauses this long.
PANEL_DELAY_MS = 80


def _dock(window: QMainWindow, title: str, name: str, widget: QWidget) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(widget)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                     | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    return dock


class ModelController(ExpertActions, QObject):
    """The model side of a :class:`MainWindow`."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        # Compute threads for the model (0 = all cores but one); a setting, not a dialog.
        threads = int(window.settings.value("model/threads", 0) or 0)
        self.worker = ModelWorker(parent=self, threads=threads or None)
        self.layer: ModelLayer | None = None
        self.roles: dict[str, int | None] = {}
        self.explanation: Any = None
        self.explained_epoch: int | None = None
        self.attention_on = True
        self.auto_explain = True
        self._image_request = 0
        # (folder, device, recording) the worker was last asked to load: loading is lazy,
        # on the first run or explanation, so opening a night never waits for torch.
        self._requested: tuple[str, str, str] | None = None
        self._load_failed = False

        self.model_panel = ModelPanel()
        self.epoch_panel = EpochPanel()
        self.review_panel = ReviewPanel()
        self.agreement_panel = AgreementPanel()
        self.opacity = self.epoch_panel.opacity  # one opacity for the image and the traces
        self._explaining = False
        self._actions: dict = {}
        self._shown_map: np.ndarray | None = None
        self.epoch_dock = _dock(window, "Model: this epoch", "epochDock", self.epoch_panel)
        self.model_dock = _dock(window, "Model", "modelDock", self.model_panel)
        self.review_dock = _dock(window, "Review queue", "reviewDock", self.review_panel)
        self.agreement_dock = _dock(window, "Agreement", "agreementDock", self.agreement_panel)
        window.tabifyDockWidget(window.stats_dock, self.model_dock)
        window.tabifyDockWidget(self.model_dock, self.review_dock)
        window.tabifyDockWidget(self.review_dock, self.agreement_dock)
        self.finetune_panel = FinetunePanel()
        self.finetune_dock = _dock(window, "Fine-tune", "finetuneDock", self.finetune_panel)
        window.tabifyDockWidget(self.agreement_dock, self.finetune_dock)
        self.loop = LoopController(window, self.finetune_panel)
        window.stats_dock.raise_()

        self._panel_timer = QTimer(self)
        self._panel_timer.setSingleShot(True)
        self._panel_timer.setInterval(PANEL_DELAY_MS)
        self._panel_timer.timeout.connect(self._sync_panels)
        self._explain_timer = QTimer(self)
        self._explain_timer.setSingleShot(True)
        self._explain_timer.setInterval(EXPLAIN_DELAY_MS)
        self._explain_timer.timeout.connect(self.explain)
        # Per-batch updates (about 50 a night) and label changes are coalesced into one
        # refresh of the review list and agreement numbers.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(400)
        self._refresh_timer.timeout.connect(self._refresh_lists)

        mp = self.model_panel
        mp.modelChosen.connect(self._load)
        mp.runNightRequested.connect(self.run_night)
        mp.runPageRequested.connect(self.run_page)
        mp.cancelRequested.connect(self.cancel)
        ep = self.epoch_panel
        ep.explainRequested.connect(self.explain)
        ep.cancelRequested.connect(self.worker.cancel_explain)
        ep.stepSelected.connect(self._on_step)
        ep.opacityChanged.connect(self._on_opacity)
        ep.overlayToggled.connect(self.set_attention_visible)
        self.review_panel.epochActivated.connect(self.w.goto_epoch)
        wk = self.worker
        wk.modelLoaded.connect(self._on_loaded)
        wk.modelFailed.connect(self._on_load_failed)
        wk.probsReady.connect(self._on_probs)
        wk.progressed.connect(mp.set_progress)
        wk.runFinished.connect(self._on_run_finished)
        wk.runFailed.connect(self._on_run_failed)
        wk.textStreamed.connect(self._on_text)
        wk.explained.connect(self._on_explained)
        wk.explainFailed.connect(self._on_explain_failed)
        window.worker.jobDone.connect(self._on_job_done)

    # ----------------------------------------------------------------- actions
    def handlers(self) -> dict[str, Any]:
        """Handlers of the 'Model' shortcuts, for the window's action table."""
        return {"run_model": self.run_night, "run_model_page": self.run_page,
                "cancel_model": self.cancel, "explain": self.explain,
                "accept_model": self.accept_current, "accept_model_page": self.accept_page,
                "next_uncertain": self.goto_next_unsure, "next_review": self.goto_next_review,
                "toggle_attention": lambda: self.set_attention_visible(not self.attention_on),
                "export_finetune": self.finetune_panel._choose_export,
                "finetune": self.finetune_dock.raise_,
                "show_model_hypnogram": lambda: self._toggle("show_model_hypnogram"),
                "show_hypnodensity": lambda: self._toggle("show_hypnodensity"),
                "show_disagreements": lambda: self._toggle("show_disagreements"),
                "night_context": lambda: self.set_night_context(
                    self._actions["night_context"].isChecked())}

    def setup_actions(self, actions: dict) -> None:
        """Make the model layer toggles checkable (all on at start)."""
        self._actions = actions
        for aid in ("show_model_hypnogram", "show_hypnodensity", "show_disagreements",
                    "toggle_attention", "night_context"):
            actions[aid].setCheckable(True)
            actions[aid].setChecked(True)
        actions["night_context"].setEnabled(False)  # until a model with one is loaded

    def _toggle(self, action_id: str) -> None:
        on = self._actions[action_id].isChecked()
        view = self.w.hypnogram_view
        {"show_model_hypnogram": view.set_model_visible,
         "show_hypnodensity": view.set_hypnodensity_visible,
         "show_disagreements": view.set_disagreements_visible}[action_id](on)

    # ----------------------------------------------------------------- document
    def set_document(self, doc) -> None:
        """A recording was opened: new model layer, load the chosen model for it."""
        self.worker.cancel()
        self.worker.cancel_explain()
        if self.layer is not None:
            self.layer.unsubscribe(self._on_layer_changed)
        name = self.model_panel.folder() or ""
        self.layer = ModelLayer(doc.hypnogram.n_epochs, name)
        self.layer.subscribe(self._on_layer_changed)
        self.roles = pick_roles(doc.recording.ch_names, doc.recording.ch_types)
        self.explanation = self.explained_epoch = None
        self.w.hypnogram_view.set_model_layer(self.layer)
        self._apply_night_context()
        self.review_panel.set_data(self.layer, list(doc.hypnogram.stages),
                                   origin=doc.recording.meas_date)
        self.agreement_panel.update_metrics(None)
        self.epoch_panel.clear()
        self.model_panel.set_finished(" ")
        self._requested = None
        self._update_training_warning()
        self.model_panel.set_loaded(bool(self.model_panel.folder()),
                                    "The model loads when you stage or explain (Ctrl+R, E).")

    def _update_training_warning(self) -> None:
        """Agreement on a night the model learnt from is no accuracy: say so where it shows."""
        folder, doc = self.model_panel.folder(), self.w.doc
        warning = None
        if folder and doc is not None:
            try:
                if trained_on(read_manifest_json(folder), doc.recording.path):
                    warning = ("This night was in the model's training data: agreement here "
                               "is not an accuracy.")
            except EEGVLMError:
                pass  # an unreadable card is reported when the model loads
        self.agreement_panel.set_training_data_warning(warning)

    def _load(self, folder: str, device: str) -> None:
        """The user chose a model or device: results of the old one are dropped."""
        if self.w.doc is None:
            return
        self.worker.cancel()
        if self.layer is not None:
            self.layer.clear(folder)  # results of another model must never mix in
        self._update_training_warning()
        self._ensure_loaded()

    def _ensure_loaded(self) -> bool:
        """Queue a load if the chosen model is not the one loaded; False if none chosen."""
        folder, device = self.model_panel.folder(), self.model_panel.device()
        if self.w.doc is None or not folder:
            return False
        want = (folder, device, str(self.w.doc.recording.path))
        if want != self._requested:
            self._requested = want
            self._load_failed = False
            if self.layer is not None:
                self.layer.model_name = folder
            self.model_panel.set_loaded(True, f"Loading {folder} on {device}…")
            # The worker runs requests in order: a run or explanation queued right after
            # this starts once the model is in memory.
            self.worker.load(folder, want[2], device)
        return True

    def _on_loaded(self, info: dict) -> None:
        notes = " ".join(info.get("notes", []))
        roles = "; ".join(info.get("channel_map", []))
        self.model_panel.set_loaded(True, f"Ready on {info['device']}. {notes}"
                                          f"<br><small>Channels: {roles}</small>")
        self._apply_night_context()
        if self.auto_explain and self.explanation is None and not self._explaining:
            self._explain_timer.start()

    def _on_load_failed(self, message: str) -> None:
        self._load_failed = True
        self._requested = None  # let the next request try again
        self.model_panel.set_loaded(True, "The model could not be loaded.")
        self.model_panel.set_finished(" ")
        dialogs.show_error(self.w, "Model not loaded", message)

    # ----------------------------------------------------------------- runs
    def _run(self, epochs: list[int]) -> None:
        if not self._ensure_loaded():
            self.w.statusBar().showMessage("No model folder is chosen.", 5000)
            return
        self.worker.run(epochs)
        self.worker.prioritise(self.w.epoch)
        self.model_panel.set_running(True)

    def run_night(self) -> None:
        if self.w.doc is not None:
            self._run(list(range(self.w._n_epochs())))

    def run_page(self) -> None:
        if self.w.doc is not None:
            first = (self.w.epoch // self.w._epochs_per_page()) * self.w._epochs_per_page()
            last = min(first + self.w._epochs_per_page(), self.w._n_epochs())
            self._run(list(range(first, last)))

    def cancel(self) -> None:
        if self.worker.busy:
            self.worker.cancel()
            n = self.layer.n_done if self.layer is not None else 0
            self.model_panel.set_finished(f"Cancelled; {n} epochs staged so far are kept.")

    def _on_probs(self, epochs: np.ndarray, probs: np.ndarray) -> None:
        if self.layer is not None:
            self.layer.set_proba(epochs, probs)

    def _on_run_finished(self, report) -> None:
        rate = report.epochs / report.seconds if report.seconds > 0 else 0.0
        text = (f"Staged {report.epochs} epochs in {report.seconds:.1f} s "
                f"({rate:.0f} epochs/s) on {report.device}.")
        if report.notes:
            text += " " + " ".join(dict.fromkeys(report.notes))
        self.model_panel.set_finished(text)
        if self.layer is not None and self.w.doc is not None:
            # Re-sort the queue now that the run is complete; reviewed marks are kept.
            self.review_panel.set_data(self.layer, list(self.w.doc.hypnogram.stages),
                                       origin=self.w.doc.recording.meas_date,
                                       keep_reviewed=True)
        self._refresh_lists()

    def _on_run_failed(self, message: str) -> None:
        self.model_panel.set_finished("Staging stopped; results so far are kept.")
        if not self._load_failed:  # a failed load has already said why
            dialogs.show_error(self.w, "Staging stopped", message)

    def _on_layer_changed(self, indices: list[int]) -> None:
        # The hypnogram view redraws itself from the layer's events.
        if self.w.epoch in indices:
            self._show_epoch_header()
        # Throttled, not debounced: during a run batches arrive every ~0.25 s, and a timer
        # restarted by each would only fire at the end; this refreshes at most every 400 ms.
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh_lists(self) -> None:
        if self.layer is None or self.w.doc is None:
            return
        expert = list(self.w.doc.hypnogram.stages)
        self.review_panel.refresh(expert)
        self.agreement_panel.update_metrics(self.layer.agreement(expert))

    # ----------------------------------------------------------------- navigation
    def on_epoch(self, epoch: int) -> None:
        """The current epoch changed: it and its neighbours go first; the panels follow.

        Only the cheap part runs now. The side panels (header, queue selection, image,
        reasoning) update once navigation pauses for ``PANEL_DELAY_MS``: redrawing them on
        every step added ~5 ms to a page step (measured with bench/viewer.py).
        """
        self.worker.prioritise(epoch)
        if epoch != self.explained_epoch:
            self.worker.cancel_explain()
            self._explaining = False
            if self.explanation is not None:  # its shading belongs to another epoch
                self.w.signal_view.set_attention(0.0, 30.0, None)
            self.explanation = self.explained_epoch = None
            self._explain_timer.stop()
        self._panel_timer.start()

    def _sync_panels(self) -> None:
        """Bring the side panels to the current epoch (after navigation paused)."""
        if self.w.doc is None:
            return
        epoch = self.w.epoch
        self.review_panel.select_epoch(epoch)
        if epoch != self.explained_epoch:
            self.epoch_panel.clear()
            self._request_image(epoch)
            if self.auto_explain and self.worker.loaded_info is not None:
                self._explain_timer.start()
        self._show_epoch_header()

    def _show_epoch_header(self) -> None:
        doc, e = self.w.doc, self.w.epoch
        if doc is None or self.layer is None:
            return
        row = self.layer.proba[e]
        alone = self.layer.epoch_proba[e] if self.layer.context_active else None
        self.epoch_panel.set_epoch(e, doc.hypnogram[e], row if np.isfinite(row).all() else None,
                                   alone=alone)

    def _request_image(self, epoch: int) -> None:
        rec = self.w.doc.recording
        self._image_request = self.w.worker.submit("model_image", render_night, rec,
                                                   self.roles, [epoch])

    def _on_job_done(self, request_id: int, kind: str, result: object) -> None:
        if kind == "model_image" and request_id == self._image_request \
                and self.explanation is None:
            self.epoch_panel.set_image(result[0])

    def on_labels_changed(self, indices: list[int]) -> None:
        for i in indices:
            self.review_panel.mark_reviewed(i)
        if self.layer is not None:
            self._refresh_timer.start()
            if self.w.epoch in indices:
                self._show_epoch_header()

    # ----------------------------------------------------------------- explanations
    def explain(self) -> None:
        if not self._ensure_loaded():
            return
        self._explain_timer.stop()
        self.explanation = None
        self._explaining = True
        self.epoch_panel.start_reasoning()
        self.worker.explain(self.w.epoch)

    def _on_text(self, epoch: int, text: str) -> None:
        if epoch == self.w.epoch:
            self.epoch_panel.stream_text(text)

    def _on_explained(self, epoch: int, image: np.ndarray, ex) -> None:
        self._explaining = False
        if epoch != self.w.epoch:
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
        doc = self.w.doc
        self._shown_map = att
        # The spectrogram strip's attention is folded into the EEG channel it was made from.
        lanes = channel_attention(att, self.roles).merged()
        start, length = window_span(self.w.epoch, doc.hypnogram.epoch_length)
        self.w.signal_view.set_attention(start, length, lanes, self.opacity)

    def set_attention_visible(self, on: bool) -> None:
        self.attention_on = bool(on)
        act = self._actions.get("toggle_attention")
        if act is not None and act.isChecked() != self.attention_on:
            act.setChecked(self.attention_on)
        self.w.signal_view.set_attention_visible(self.attention_on)
        self.epoch_panel.set_overlay_visible(self.attention_on)

    def _on_opacity(self, value: float) -> None:
        self.opacity = float(value)
        if self.explanation is not None and self._shown_map is not None:
            self._show_map(self._shown_map)

    def shutdown(self) -> bool:
        self._explain_timer.stop()
        self._refresh_timer.stop()
        self._panel_timer.stop()
        self.loop.shutdown()
        # Long enough for a model load in progress (torch's first import takes seconds).
        return self.worker.shutdown(timeout_ms=30000)
