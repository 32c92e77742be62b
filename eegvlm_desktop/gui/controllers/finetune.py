"""Export corrections and fine-tune from the window, as cancellable background jobs.

Both jobs run on their own long-job worker (``JobWorker``), not the one that serves
statistics and prefetching, so a fine-tuning run of minutes never delays a page step. The
functions the worker runs are plain core code; they open their own copy of the recording.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PySide6.QtCore import QObject

from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui import dialogs
from eegvlm_desktop.gui.panels.finetune_panel import FinetunePanel
from eegvlm_desktop.gui.workers import JobWorker

if TYPE_CHECKING:
    from eegvlm_desktop.gui.main_window import MainWindow


def run_export(recording_path: str, hypnogram, layer: ModelLayer | None, model_folder: str | None,
               out: str, scorer: str, include_identity: bool, *,
               should_stop: Callable[[], bool], progress: Callable[..., None]) -> Any:
    """Worker-thread job: write the fine-tuning dataset of one scored night."""
    from eegvlm_desktop.core.export.finetune import export_finetune_dataset
    from eegvlm_desktop.core.recording.recording import read_recording

    # The folder, not its parsed card: the manifest then records the sha256 of the file.
    manifest = Path(model_folder) if model_folder and layer is not None else None
    return export_finetune_dataset(read_recording(recording_path), hypnogram, Path(out),
                                   model_layer=layer, model_manifest=manifest, scorer=scorer,
                                   include_identity=include_identity,
                                   should_stop=should_stop, progress=progress)


#: Share of each export's epochs (the last ones in time) kept out of fine-tuning to measure it.
HOLDOUT = 0.2


def split_holdout(data, share: float = HOLDOUT):
    """(tune, held-out) examples: the last ``share`` of each night in time, so the held-out
    epochs are a contiguous stretch never fine-tuned on (neighbours leak less than a random
    pick would)."""
    tune, held = [], []
    for night in np.unique(data.night):
        idx = np.flatnonzero(data.night == night)
        idx = idx[np.argsort(data.epochs[idx], kind="stable")]
        cut = len(idx) - int(round(share * len(idx)))
        tune.extend(idx[:cut])
        held.extend(idx[cut:])
    return data.subset(np.array(tune, int)), data.subset(np.array(held, int))


def run_finetune(model_folder: str, folders: list[str], out: str, epochs: int,
                 freeze_vision: bool, holdout: bool = True, *,
                 should_stop: Callable[[], bool], progress: Callable[..., None]) -> str:
    """Worker-thread job: fine-tune ``model_folder`` on export folders, save as ``out``."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.export.finetune_folder import load_finetune_dataset
    from eegvlm_desktop.core.staging.model_card import read_manifest_json
    from eegvlm_desktop.ml.finetune.run import FinetuneSettings, finetune, save_finetuned

    if Path(out).exists():
        raise EEGVLMError(f"A model named {Path(out).name!r} already exists in "
                          f"{Path(out).parent}: choose another name.")
    data = load_finetune_dataset([Path(f) for f in folders])
    held = None
    if holdout and len(data) >= 10:
        data, held = split_holdout(data)
    settings = FinetuneSettings(epochs=epochs, freeze_vision=freeze_vision)
    result = finetune(model_folder, data, settings, "auto", progress=progress,
                      should_stop=should_stop, eval_data=held)
    if result.stopped:
        raise EEGVLMError("Fine-tuning was cancelled; no model was saved.")
    save_finetuned(result, Path(out), read_manifest_json(model_folder), data.meta, settings)
    return out


def _metrics_line(folder: str) -> str:
    """Accuracy before/after on the held-out epochs, from the new model's card."""
    from eegvlm_desktop.core.errors import EEGVLMError
    from eegvlm_desktop.core.staging.model_card import read_manifest_json

    try:
        metrics = (read_manifest_json(folder).get("card") or {}).get("metrics")
    except EEGVLMError:
        return ""
    if not metrics or not metrics.get("before") or not metrics.get("after"):
        return "No held-out epochs: accuracy was not measured."
    b, a = metrics["before"], metrics["after"]
    return (f"Held-out accuracy {b['accuracy']:.1%} → {a['accuracy']:.1%}, kappa "
            f"{(b.get('kappa') or 0):.2f} → {(a.get('kappa') or 0):.2f} ({metrics['split']})")


class LoopController(QObject):
    """The *Fine-tune* dock of a :class:`MainWindow`: export, fine-tune, show progress."""

    def __init__(self, window: MainWindow, panel: FinetunePanel) -> None:
        super().__init__(window)
        self.w = window
        self.panel = panel
        self.jobs = JobWorker(name="eegvlm-long-jobs", parent=self)
        self.jobs.jobDone.connect(self._on_done)
        self.jobs.jobFailed.connect(self._on_failed)
        self.jobs.jobProgressed.connect(self._on_progress)
        panel.exportRequested.connect(self.export_dataset)
        panel.finetuneRequested.connect(self.start_finetune)
        panel.cancelRequested.connect(self.cancel)
        self._kind: str | None = None
        self._last_epoch = None

    def export_dataset(self, out: str, include_identity: bool = False) -> int | None:
        """Export the open night's expert labels (and the model's answers) to ``out``."""
        doc, mc = self.w.doc, self.w.model
        if doc is None:
            return None
        # A snapshot: the GUI thread keeps updating the live layer during a run.
        layer = mc.layer.copy() if mc.layer is not None and mc.layer.n_done else None
        self._start("export", f"Exporting to {out}…")
        return self.jobs.submit("export", run_export, str(doc.recording.path),
                                doc.hypnogram.copy(), layer, mc.model_panel.folder(), out,
                                self.w.user, include_identity, cancellable=True)

    def start_finetune(self, params: dict) -> int | None:
        folder = self.w.model.model_panel.folder()
        if not folder:
            self.panel.append_log("Choose a model to fine-tune in the Model panel first.")
            return None
        out = str(Path(folder).parent / params["name"])
        self._start("finetune", f"Fine-tuning {Path(folder).name} on "
                                f"{len(params['folders'])} export(s) → {out}")
        return self.jobs.submit("finetune", run_finetune, folder, list(params["folders"]), out,
                                int(params["epochs"]), bool(params["freeze_vision"]),
                                bool(params.get("holdout", True)), cancellable=True)

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
        else:
            self.panel.append_log(f"New model saved: {result}")
            self.panel.append_log(_metrics_line(result))
            self.w.model.model_panel.refresh_models()  # it appears in the model list

    def _on_failed(self, request_id: int, kind: str, message: str) -> None:
        if kind != self._kind:
            return
        self._finish()
        self.panel.append_log(f"{kind.capitalize()} failed: {message}")
        dialogs.show_error(self.w, f"{kind.capitalize()} failed", message)

    def shutdown(self) -> bool:
        if self._kind is not None:
            self.jobs.cancel(self._kind)
        # A fine-tuning step in progress finishes first (it polls between steps).
        return self.jobs.shutdown(timeout_ms=60000)
