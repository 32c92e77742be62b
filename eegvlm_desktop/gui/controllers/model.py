"""Wires the model into the scoring window: worker, model layer, panels, overlays, keys.

Kept out of ``main_window.py`` so that the window stays about layout. The GUI thread only
moves data between the :class:`ModelWorker` (which owns the model), the :class:`ModelLayer`
(the model's probabilities, never the expert's labels) and the views. The controller gets the
navigation state, the views and panels it drives and callables to report with; it never sees
the window.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.recording.montage import pick_roles
from eegvlm_desktop.core.scoring.document import Document
from eegvlm_desktop.core.scoring.navigation import Navigation
from eegvlm_desktop.core.staging.model_card import read_manifest_json, trained_on
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui.controllers.explain import ExplainActions
from eegvlm_desktop.gui.controllers.finetune import LoopController
from eegvlm_desktop.gui.controllers.review import ExpertActions
from eegvlm_desktop.gui.panels.agreement_panel import AgreementPanel
from eegvlm_desktop.gui.panels.epoch_panel import EpochPanel
from eegvlm_desktop.gui.panels.finetune_panel import FinetunePanel
from eegvlm_desktop.gui.panels.model_panel import ModelPanel
from eegvlm_desktop.gui.panels.review_panel import ReviewPanel
from eegvlm_desktop.gui.throttle import Debounced, Throttled
from eegvlm_desktop.gui.views.hypnogram_view import HypnogramView
from eegvlm_desktop.gui.views.signal_view import SignalView
from eegvlm_desktop.gui.workers import JobWorker, ModelWorker

#: Wait this long after the last navigation before generating an explanation, so holding
#: an arrow key does not queue one explanation per epoch passed.
EXPLAIN_DELAY_MS = 350
#: The side panels follow the current epoch once navigation pauses this long.
PANEL_DELAY_MS = 80
#: Per-batch updates (about 50 a night) and label changes refresh the review list and the
#: agreement numbers at most this often.
REFRESH_MS = 400


def _render_night(*args: Any, **kwargs: Any) -> Any:
    """:func:`~eegvlm_desktop.core.picture.rendering.render_night`, imported on first use.

    The renderer's scipy.signal costs ~0.6 s and ~75 MB: paid on the job worker when the
    model first needs pictures, not at launch (issue 18).
    """
    from eegvlm_desktop.core.picture.rendering import render_night

    return render_night(*args, **kwargs)


@dataclass
class ModelPanels:
    """The dock panels the model side drives (the window lays them out)."""

    model: ModelPanel
    epoch: EpochPanel
    review: ReviewPanel
    agreement: AgreementPanel
    finetune: FinetunePanel


class ModelController(ExplainActions, ExpertActions, QObject):
    """The model side of the scoring window.

    Parameters
    ----------
    nav : Navigation
        The current epoch and page (read, followed through its ``moved`` event, and moved).
    panels : ModelPanels
        The dock panels it fills.
    hypnogram_view, signal_view
        The views it adds the model's layer and the attention shading to.
    jobs : JobWorker
        The window's job worker (renders the model's image of an epoch).
    notify, alert : callable
        ``notify(text, ms)`` status message; ``alert(title, message)`` error dialog.
    apply_change : callable
        Runs a label change of the session and reports a failed save (accepting the
        model's stage is an expert label change).
    user : str
        The scorer (written in fine-tuning exports).
    threads : int or None
        Compute threads of the model worker (None: all cores but one).
    """

    def __init__(self, nav: Navigation, panels: ModelPanels, hypnogram_view: HypnogramView,
                 signal_view: SignalView, jobs: JobWorker, *,
                 notify: Callable[[str, int], None], alert: Callable[[str, str], None],
                 apply_change: Callable[[Callable[[], Any]], Any], user: str = "",
                 threads: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.nav = nav
        self.hypnogram_view = hypnogram_view
        self.signal_view = signal_view
        self.jobs = jobs
        self.notify = notify
        self.alert = alert
        self.apply_change = apply_change
        self.worker = ModelWorker(parent=self, threads=threads)
        self.doc: Document | None = None
        self.layer: ModelLayer | None = None
        self.roles: dict[str, int | None] = {}
        self.explanation: Any = None
        self.explained_epoch: int | None = None
        self.sources: dict[str, np.ndarray] = {}  # per-source answers of the last run
        self.unscorable: dict[int, str] = {}  # epochs the quality gate gave no stage
        self._context_default_of: str | None = None  # model whose context default was applied
        self.attention_on = True
        self.auto_explain = True
        self._image_request = 0
        # (folder, device, recording) the worker was last asked to load: loading is lazy,
        # on the first run or explanation, so opening a night never waits for torch.
        self._requested: tuple[str, str, str] | None = None
        self._load_failed = False

        self.model_panel = panels.model
        self.epoch_panel = panels.epoch
        self.review_panel = panels.review
        self.agreement_panel = panels.agreement
        self.finetune_panel = panels.finetune
        self.opacity = self.epoch_panel.opacity  # one opacity for the image and the traces
        self._explaining = False
        self.actions: dict = {}
        self._shown_map: np.ndarray | None = None
        self.loop = LoopController(self.finetune_panel, self.model_panel,
                                   lambda: (self.doc, self.layer), user=user, alert=alert,
                                   parent=self)

        self._panel_sync = Debounced(self._sync_panels, PANEL_DELAY_MS, self)
        self._explain_later = Debounced(self.explain, EXPLAIN_DELAY_MS, self)
        # Throttled, not debounced: during a run batches arrive every ~0.25 s, and a wait
        # restarted by each would only end with the run.
        self._refresh = Throttled(self._refresh_lists, REFRESH_MS, self)

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
        self.review_panel.epochActivated.connect(self.nav.go_to)
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
        jobs.jobDone.connect(self._on_job_done)
        nav.moved.connect(self.on_epoch)

    # ----------------------------------------------------------------- actions
    def handlers(self) -> dict[str, Any]:
        """Handlers of the 'Model' shortcuts, for the window's action table."""
        return {"run_model": self.run_night, "run_model_page": self.run_page,
                "cancel_model": self.cancel, "explain": self.explain,
                "accept_model": self.accept_current, "accept_model_page": self.accept_page,
                "next_uncertain": self.goto_next_unsure, "next_review": self.goto_next_review,
                "toggle_attention": lambda: self.set_attention_visible(not self.attention_on),
                "export_finetune": self.finetune_panel.choose_export,
                "show_model_hypnogram": lambda: self._toggle("show_model_hypnogram"),
                "show_hypnodensity": lambda: self._toggle("show_hypnodensity"),
                "show_disagreements": lambda: self._toggle("show_disagreements"),
                "night_context": lambda: self.set_night_context(
                    self.actions["night_context"].isChecked())}

    def setup_actions(self, actions: dict) -> None:
        """Make the model layer toggles checkable (all on at start)."""
        self.actions = actions
        for aid in ("show_model_hypnogram", "show_hypnodensity", "show_disagreements",
                    "toggle_attention", "night_context"):
            actions[aid].setCheckable(True)
            actions[aid].setChecked(True)
        actions["night_context"].setEnabled(False)  # until a model with one is loaded

    def _toggle(self, action_id: str) -> None:
        on = self.actions[action_id].isChecked()
        view = self.hypnogram_view
        {"show_model_hypnogram": view.set_model_visible,
         "show_hypnodensity": view.set_hypnodensity_visible,
         "show_disagreements": view.set_disagreements_visible}[action_id](on)

    # ----------------------------------------------------------------- document
    def set_document(self, doc: Document) -> None:
        """A recording was opened: new model layer, load the chosen model for it."""
        self.worker.cancel()
        self.worker.cancel_explain()
        if self.layer is not None:
            self.layer.changed.disconnect(self._on_layer_changed)
        if self.doc is not None:
            self.doc.hypnogram.changed.disconnect(self.on_labels_changed)
        self.doc = doc
        doc.hypnogram.changed.connect(self.on_labels_changed)
        name = self.model_panel.folder() or ""
        self.layer = ModelLayer(doc.hypnogram.n_epochs, name)
        self.sources, self.unscorable = {}, {}  # the last run's, of another night
        self.layer.changed.connect(self._on_layer_changed)
        self.roles = pick_roles(doc.recording.ch_names, doc.recording.ch_types)
        self.explanation = self.explained_epoch = None
        self.hypnogram_view.set_model_layer(self.layer)
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
        folder, doc = self.model_panel.folder(), self.doc
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
        if self.doc is None:
            return
        self.worker.cancel()
        if self.layer is not None:
            self.layer.clear(folder)  # results of another model must never mix in
        self._update_training_warning()
        self._ensure_loaded()

    def _ensure_loaded(self) -> bool:
        """Queue a load if the chosen model is not the one loaded; False if none chosen."""
        folder, device = self.model_panel.folder(), self.model_panel.device()
        if self.doc is None or not folder:
            return False
        want = (folder, device, str(self.doc.recording.path))
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
            self._explain_later()

    def _on_load_failed(self, message: str) -> None:
        self._load_failed = True
        self._requested = None  # let the next request try again
        self.model_panel.set_loaded(True, "The model could not be loaded.")
        self.model_panel.set_finished(" ")
        self.alert("Model not loaded", message)

    # ----------------------------------------------------------------- runs
    def _run(self, epochs: list[int]) -> None:
        if not self._ensure_loaded():
            self.notify("No model folder is chosen.", 5000)
            return
        self.worker.run(epochs)
        self.worker.prioritise(self.nav.epoch)
        self.model_panel.set_running(True)

    def run_night(self) -> None:
        if self.doc is not None:
            self._run(list(range(self.nav.n_epochs)))

    def run_page(self) -> None:
        if self.doc is not None:
            self._run(self.nav.page_epochs())

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
        self.sources = dict(report.sources)
        self.unscorable = dict(report.unscorable)
        self._show_epoch_header()
        if self.layer is not None and self.doc is not None:
            # Re-sort the queue now that the run is complete; reviewed marks are kept.
            self.review_panel.set_data(self.layer, list(self.doc.hypnogram.stages),
                                       origin=self.doc.recording.meas_date,
                                       keep_reviewed=True)
        self._refresh_lists()

    def _on_run_failed(self, message: str) -> None:
        self.model_panel.set_finished("Staging stopped; results so far are kept.")
        if not self._load_failed:  # a failed load has already said why
            self.alert("Staging stopped", message)

    def _on_layer_changed(self, indices: list[int]) -> None:
        # The hypnogram view redraws itself from the layer's events.
        if self.nav.epoch in indices:
            self._show_epoch_header()
        self._refresh()

    def _refresh_lists(self) -> None:
        if self.layer is None or self.doc is None:
            return
        expert = list(self.doc.hypnogram.stages)
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
                self.signal_view.set_attention(0.0, 30.0, None)
            self.explanation = self.explained_epoch = None
            self._explain_later.cancel()
        self._panel_sync()

    def _sync_panels(self) -> None:
        """Bring the side panels to the current epoch (after navigation paused)."""
        if self.doc is None:
            return
        epoch = self.nav.epoch
        self.review_panel.select_epoch(epoch)
        if epoch != self.explained_epoch:
            self.epoch_panel.clear()
            self._request_image(epoch)
            if self.auto_explain and self.worker.loaded_info is not None:
                self._explain_later()
        self._show_epoch_header()

    def _show_epoch_header(self) -> None:
        doc, e = self.doc, self.nav.epoch
        if doc is None or self.layer is None:
            return
        row = self.layer.proba[e]
        alone = self.layer.epoch_proba[e] if self.layer.context_active else None
        sources = {k: v[e] for k, v in self.sources.items()
                   if e < len(v) and np.isfinite(v[e]).all()}
        self.epoch_panel.set_epoch(e, doc.hypnogram[e], row if np.isfinite(row).all() else None,
                                   alone=alone, sources=sources or None,
                                   unscorable=self.unscorable.get(e))

    def _request_image(self, epoch: int) -> None:
        rec = self.doc.recording
        self._image_request = self.jobs.submit("model_image", _render_night, rec,
                                               self.roles, [epoch])

    def _on_job_done(self, request_id: int, kind: str, result: object) -> None:
        if kind == "model_image" and request_id == self._image_request \
                and self.explanation is None:
            self.epoch_panel.set_image(result[0])

    def on_labels_changed(self, indices: list[int]) -> None:
        for i in indices:
            self.review_panel.mark_reviewed(i)
        if self.layer is not None:
            self._refresh()
            if self.nav.epoch in indices:
                self._show_epoch_header()

    def shutdown(self) -> bool:
        self._explain_later.cancel()
        self._refresh.cancel()
        self._panel_sync.cancel()
        self.nav.moved.disconnect(self.on_epoch)
        self.loop.shutdown()
        # Long enough for a model load in progress (torch's first import takes seconds).
        return self.worker.shutdown(timeout_ms=30000)
