"""Export corrections and fine-tune from the window, as cancellable background jobs.

Both jobs run on their own long-job worker (``JobWorker``), not the one that serves
statistics and prefetching, so a fine-tuning run of minutes never delays a page step. The
functions the worker runs are plain ml code (:mod:`eegvlm_desktop.ml.finetune.jobs`); they
open their own copy of the recording.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject

from eegvlm_desktop.core.scoring.document import Document
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui.panels.finetune_panel import FinetunePanel
from eegvlm_desktop.gui.panels.model_panel import ModelPanel
from eegvlm_desktop.gui.workers import JobWorker
from eegvlm_desktop.ml.finetune.jobs import (guard_line, metrics_line, run_adapt, run_export,
                                             run_finetune)

#: ``snapshot()``: the open document and the model layer to export (either may be None).
Snapshot = Callable[[], "tuple[Document | None, ModelLayer | None]"]


class LoopController(QObject):
    """The *Fine-tune* dock: export, fine-tune, show progress.

    Parameters
    ----------
    panel, model_panel : FinetunePanel, ModelPanel
        The dock it drives, and the model panel (the chosen model; refreshed after a run).
    snapshot : callable
        ``snapshot() -> (document, model layer)`` of the open night.
    user, alert
        The scorer's name (written in exports) and the error dialog.
    """

    def __init__(self, panel: FinetunePanel, model_panel: ModelPanel, snapshot: Snapshot, *,
                 user: str, alert: Callable[[str, str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.model_panel = model_panel
        self.snapshot = snapshot
        self.user = user
        self.alert = alert
        self.jobs = JobWorker(name="eegvlm-long-jobs", parent=self)
        self.jobs.jobDone.connect(self._on_done)
        self.jobs.jobFailed.connect(self._on_failed)
        self.jobs.jobProgressed.connect(self._on_progress)
        panel.exportRequested.connect(self.export_dataset)
        panel.finetuneRequested.connect(self.start_finetune)
        panel.adaptRequested.connect(self.start_adapt)
        panel.cancelRequested.connect(self.cancel)
        self._kind: str | None = None
        self._last_epoch = None

    def export_dataset(self, out: str, include_identity: bool = False) -> int | None:
        """Export the open night's expert labels (and the model's answers) to ``out``."""
        doc, live = self.snapshot()
        if doc is None:
            return None
        # A snapshot: the GUI thread keeps updating the live layer during a run.
        layer = live.copy() if live is not None and live.n_done else None
        self._start("export", f"Exporting to {out}…")
        return self.jobs.submit("export", run_export, str(doc.recording.path),
                                doc.hypnogram.copy(), layer, self.model_panel.folder(), out,
                                self.user, include_identity, cancellable=True)

    def start_finetune(self, params: dict) -> int | None:
        folder = self.model_panel.folder()
        if not folder:
            self.panel.append_log("Choose a model to fine-tune in the Model panel first.")
            return None
        out = str(Path(folder).parent / params["name"])
        self._start("finetune", f"Fine-tuning {Path(folder).name} on "
                                f"{len(params['folders'])} export(s) → {out}")
        return self.jobs.submit("finetune", run_finetune, folder, list(params["folders"]), out,
                                int(params["epochs"]), bool(params["freeze_vision"]),
                                bool(params.get("holdout", True)), cancellable=True)

    def start_adapt(self) -> int | None:
        """Adapt the current model to the open night's expert labels (a new model folder
        beside it), then restage the night with it; the labels themselves never change."""
        from eegvlm_desktop.core.export.finetune import select_epochs

        doc, _ = self.snapshot()
        folder = self.model_panel.folder()
        if doc is None or not folder:
            self.panel.append_log("Open a recording and choose a model first.")
            return None
        labels = {e: doc.hypnogram[e] for e in select_epochs(doc.hypnogram)}
        if not labels:
            self.panel.append_log("Nothing to adapt to: confirm (M) or score some epochs of "
                                  "this night first.")
            return None
        parent = Path(folder)
        k = 1
        while (parent.parent / f"{parent.name}-adapted-{k}").exists():
            k += 1
        out = str(parent.parent / f"{parent.name}-adapted-{k}")
        self._start("adapt", f"Adapting {parent.name} to this recording from {len(labels)} "
                             f"labelled epochs → {Path(out).name}")
        return self.jobs.submit("adapt", run_adapt, folder, str(doc.recording.path), labels,
                                out, cancellable=True)

    def cancel(self) -> None:
        if self._kind is not None:
            self.jobs.cancel(self._kind)
            self.panel.append_log(f"{self._kind.capitalize()} cancelled.")
            self._finish()

    def _start(self, kind: str, text: str) -> None:
        self._kind = kind
        self._last_epoch = None
        self.panel.set_busy(True)
        self.panel.set_progress(0, 1)
        self.panel.append_log(text)

    def _finish(self) -> None:
        self._kind = None
        self.panel.set_busy(False)

    def _on_progress(self, request_id: int, kind: str, done: int, total: int,
                     info: object) -> None:
        if kind != self._kind:
            return
        text = f"{kind} {done}/{total}"
        if isinstance(info, dict) and "loss" in info:
            text = f"epoch {info.get('epoch', '?')} · loss {float(info['loss']):.3f}"
            if info.get("epoch") != self._last_epoch:
                self._last_epoch = info.get("epoch")
                self.panel.append_log(text)
        self.panel.set_progress(done, total, text)

    def _on_done(self, request_id: int, kind: str, result: object) -> None:
        if kind != self._kind:
            return
        self._finish()
        if kind == "export":
            self.panel.append_log(f"Exported: {result}")
            folder = getattr(result, "folder", None)
            if folder is not None:
                self.panel.add_folder(str(folder))
        elif kind == "adapt":
            self.panel.append_log(f"New model saved: {Path(str(result)).name}")
            self.panel.append_log(metrics_line(result) + " " + guard_line(result))
            self.model_panel.refresh_models()
            # Switch to it and restage the night; the parent stays one click away in the
            # Model panel's list.
            self.model_panel.add_folder(str(result))
            self.model_panel.runNightRequested.emit()
        else:
            self.panel.append_log(f"New model saved: {result}")
            self.panel.append_log(metrics_line(result))
            self.model_panel.refresh_models()  # it appears in the model list

    def _on_failed(self, request_id: int, kind: str, message: str) -> None:
        if kind != self._kind:
            return
        self._finish()
        self.panel.append_log(f"{kind.capitalize()} failed: {message}")
        self.alert(f"{kind.capitalize()} failed", message)

    def shutdown(self) -> bool:
        if self._kind is not None:
            self.jobs.cancel(self._kind)
        # A fine-tuning step in progress finishes first (it polls between steps).
        return self.jobs.shutdown(timeout_ms=60000)
