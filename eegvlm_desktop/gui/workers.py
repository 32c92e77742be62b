"""Background work. This is the only module that starts threads.

Shape (superqt / mne-qt-browser): one long-lived worker object lives on its own QThread
and runs jobs in order. Every job has a request id; results come back as queued signals
carrying plain data, and the GUI drops results whose id is stale. A ``threading.Event``
set directly from the GUI thread cancels, because a queued signal cannot reach a slot
that is busy. On close: cancel, quit, wait with a timeout.
"""
from __future__ import annotations

import itertools
import os
import threading
import traceback
from functools import partial
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from eegvlm_desktop.core.errors import EEGVLMError, is_oom


class _JobRunner(QObject):
    """Lives on the worker thread; runs one job at a time."""

    done = Signal(int, str, object)  # request id, kind, result
    failed = Signal(int, str, str)  # request id, kind, message for the user
    progressed = Signal(int, str, int, int, object)  # request id, kind, done, total, info

    def __init__(self) -> None:
        super().__init__()
        # Written only by the worker thread (the GUI thread writes only ``submitted``),
        # so neither counter needs a lock.
        self.finished = 0

    @Slot(int, str, object)
    def run(self, request_id: int, kind: str, job: object) -> None:
        fn, args, cancel, cancellable = job
        if cancellable:
            # Long jobs poll ``should_stop`` and report ``progress``; both cross threads as
            # an Event read and a queued signal, so the GUI thread is never called into.
            def progress(done: int, total: int, info: object = None) -> None:
                self.progressed.emit(request_id, kind, int(done), int(total), info)

            fn = partial(fn, should_stop=cancel.is_set, progress=progress)
        try:
            if not cancel.is_set():
                self._run(request_id, kind, fn, args, cancel)
        finally:
            self.finished += 1

    def _run(self, request_id, kind, fn, args, cancel) -> None:
        try:
            result = fn(*args)
        except Exception as err:  # noqa: BLE001 - report, never crash the thread
            if not cancel.is_set():  # a cancelled job's error is the cancel itself: silent
                self.failed.emit(request_id, kind, user_message(err))
        else:
            if not cancel.is_set():
                self.done.emit(request_id, kind, result)


def user_message(err: BaseException, task: str = "running this task", prefix: str = "") -> str:
    """The one relay from a worker-thread exception to what the user reads.

    Errors written for users (:class:`EEGVLMError`) are shown as they are; running out of
    memory says so; anything else is a bug: its traceback goes to stderr and the message
    names it after ``prefix``.

    Parameters
    ----------
    err : BaseException
        What the job raised.
    task : str
        What was running, as in "Out of memory while <task>."
    prefix : str
        Put before an unexpected error's type and text ("Staging stopped: ").
    """
    if isinstance(err, EEGVLMError):
        return str(err)
    if isinstance(err, MemoryError):
        return f"Out of memory while {task}."
    if is_oom(err):
        return f"Out of GPU memory while {task}: try the CPU or a smaller batch."
    traceback.print_exception(err)
    return f"{prefix}{type(err).__name__}: {err}"


class JobWorker(QObject):
    """Runs callables on one background thread, in submission order.

    Signals
    -------
    jobDone(int, str, object)
        ``(request_id, kind, result)`` of a finished job.
    jobFailed(int, str, str)
        ``(request_id, kind, message)`` of a failed job.
    """

    jobDone = Signal(int, str, object)
    jobFailed = Signal(int, str, str)
    jobProgressed = Signal(int, str, int, int, object)
    _submit = Signal(int, str, object)

    def __init__(self, name: str = "eegvlm-jobs", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner = _JobRunner()
        self._runner.moveToThread(self._thread)
        self._submit.connect(self._runner.run)
        self._runner.done.connect(self.jobDone)
        self._runner.failed.connect(self.jobFailed)
        self._runner.progressed.connect(self.jobProgressed)
        self._ids = itertools.count(1)
        self._submitted = 0
        self._cancels: dict[str, threading.Event] = {}
        self._thread.start()

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any,
               cancellable: bool = False) -> int:
        """Queue ``fn(*args)``; a newer job of the same ``kind`` cancels a queued older one.

        With ``cancellable``, ``fn`` is also given ``should_stop`` (a callable polled by the
        job) and ``progress(done, total, info=None)`` (re-emitted as ``jobProgressed``), and
        :meth:`cancel` stops it while it runs.
        """
        old = self._cancels.get(kind)
        if old is not None:
            old.set()
        cancel = threading.Event()
        self._cancels[kind] = cancel
        request_id = next(self._ids)
        self._submitted += 1
        self._submit.emit(request_id, kind, (fn, args, cancel, cancellable))
        return request_id

    def cancel(self, kind: str) -> None:
        """Cancel the latest job of ``kind`` (queued, or running if it polls should_stop)."""
        ev = self._cancels.get(kind)
        if ev is not None:
            ev.set()

    def idle(self) -> bool:
        """True when no job is queued or running."""
        return self._runner.finished >= self._submitted

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel queued jobs, stop the thread and wait; True when it stopped in time."""
        for ev in self._cancels.values():
            ev.set()
        self._thread.quit()
        stopped = self._thread.wait(timeout_ms)
        try:
            self._runner.done.disconnect(self.jobDone)
            self._runner.failed.disconnect(self.jobFailed)
            self._runner.progressed.disconnect(self.jobProgressed)
        except (RuntimeError, TypeError):
            pass
        return bool(stopped)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()


# --------------------------------------------------------------------------- the model worker
def default_model_threads() -> int:
    """Compute threads for the model: all cores but one, which stays with the GUI thread.

    On the 2-core reference machine that is 1 thread; see bench/app_inference.py for the
    measured trade between staging speed and event-loop latency.
    """
    return max(1, (os.cpu_count() or 1) - 1)


class _ModelRunner(QObject):
    """Lives on the model thread and owns the :class:`InferenceEngine` (model + recording).

    A staging run blocks this thread until it ends, so an explanation request cannot arrive
    as a queued call meanwhile: the GUI thread parks it in ``_pending`` (under a lock) and
    the run serves it between two batches; when no run is going, a queued ``serve`` call
    does.
    """

    loaded = Signal(int, object)  # request id, info dict
    loadFailed = Signal(int, str)
    batchDone = Signal(int, object, object)  # run id, epochs (int array), probs (n, 5)
    runFinished = Signal(int, object)  # run id, RunReport
    runFailed = Signal(int, str)
    textStreamed = Signal(int, int, str)  # explain id, epoch, text so far
    explained = Signal(int, int, object, object)  # explain id, epoch, image, Explanation
    explainFailed = Signal(int, str)

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.engine = None
        self.threads = threads
        self._lock = threading.Lock()
        self._pending: tuple[int, int, threading.Event] | None = None

    # Called from the GUI thread: only touches the lock-protected slot.
    def park_explain(self, request_id: int, epoch: int, cancel: threading.Event) -> None:
        with self._lock:
            self._pending = (request_id, epoch, cancel)

    @Slot(int, str, str, str)
    def load(self, request_id: int, folder: str, recording_path: str, device: str) -> None:
        from eegvlm_desktop.core.recording.recording import read_recording
        from eegvlm_desktop.ml.inference import InferenceEngine, use_threads

        self.engine = None  # the old model is released before the new one is read
        notes: list[str] = []
        try:
            use_threads(self.threads)  # on THIS thread (see use_threads)
            # Its own Recording object: the GUI thread keeps reading the display one.
            rec = read_recording(recording_path)
            try:
                engine = InferenceEngine.load(folder, rec, device)
            except Exception as err:  # noqa: BLE001 - any GPU failure falls back to the CPU
                from eegvlm_desktop.ml.vlm.weights import ModelFolderError

                # A broken folder fails on the CPU too: say so instead of retrying.
                if device == "cpu" or isinstance(err, ModelFolderError):
                    raise
                why = "not enough GPU memory" if is_oom(err) else str(err)
                notes.append(f"Could not use the GPU ({why}): loaded on the CPU instead.")
                engine = InferenceEngine.load(folder, rec, "cpu")
        except Exception as err:  # noqa: BLE001 - relayed to the user, never crash the thread
            self.loadFailed.emit(request_id, user_message(err, "loading the model",
                                                          "The model could not be loaded: "))
            return
        self.engine = engine
        card = engine.manifest.get("card") or {}
        self.loaded.emit(request_id, {"folder": folder, "device": engine.device,
                                      "card": card, "channel_map": engine.channel_map,
                                      "n_parameters": engine.manifest.get("n_parameters"),
                                      "notes": notes})

    @Slot(int, object, object)
    def run(self, run_id: int, queue: object, cancel: threading.Event) -> None:
        if cancel.is_set():
            return
        if self.engine is None:
            self.runFailed.emit(run_id, "No model is loaded.")
            return
        try:
            report = self.engine.run(
                queue, lambda e, p: self.batchDone.emit(run_id, e, p),
                should_stop=cancel.is_set, between_batches=self.serve)
        except Exception as err:  # noqa: BLE001 - relayed to the user, never crash the thread
            self.runFailed.emit(run_id, user_message(err, "staging", "Staging stopped: "))
        else:
            self.runFinished.emit(run_id, report)

    @Slot()
    def serve(self) -> None:
        """Explain the parked epoch, if any (the newest request wins)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        request_id, epoch, cancel = pending
        if cancel.is_set():
            return
        if self.engine is None:
            self.explainFailed.emit(request_id, "No model is loaded: choose one first.")
            return
        try:
            image, ex = self.engine.explain(
                epoch, on_text=lambda text: self.textStreamed.emit(request_id, epoch, text),
                should_stop=cancel.is_set)
        except Exception as err:  # noqa: BLE001 - relayed to the user, never crash the thread
            self.explainFailed.emit(request_id, user_message(err, "explaining this epoch"))
        else:
            self.explained.emit(request_id, epoch, image, ex)


class ModelWorker(QObject):
    """The model on its own thread: load, stage a night (or part), explain one epoch.

    The GUI thread never touches the model: it calls these methods, which only queue work,
    set events or reorder the (thread-safe) epoch queue. Results from an older request id
    are dropped here, so receivers only ever see current ones.

    Signals
    -------
    modelLoaded(dict)
        ``folder``, ``device``, ``card``, ``channel_map``, ``n_parameters``, ``notes``.
    modelFailed(str)
        A load that failed, with a message for the user.
    probsReady(object, object)
        ``(epochs, probs)`` of one batch of the current run.
    progressed(int, int, float)
        ``(done, total, epochs_per_second)`` of the current run.
    runFinished(object)
        The current run's :class:`~eegvlm_desktop.ml.inference.RunReport`.
    runFailed(str)
    textStreamed(int, str)
        ``(epoch, text so far)`` of the current explanation.
    explained(int, object, object)
        ``(epoch, image, Explanation)``.
    explainFailed(str)
    """

    modelLoaded = Signal(object)
    modelFailed = Signal(str)
    probsReady = Signal(object, object)
    progressed = Signal(int, int, float)
    runFinished = Signal(object)
    runFailed = Signal(str)
    textStreamed = Signal(int, str)
    explained = Signal(int, object, object)
    explainFailed = Signal(str)
    _load = Signal(int, str, str, str)
    _run = Signal(int, object, object)
    _serve = Signal()

    def __init__(self, parent: QObject | None = None, threads: int | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("eegvlm-model")
        self.threads = threads if threads else default_model_threads()
        self._runner = _ModelRunner(self.threads)
        self._runner.moveToThread(self._thread)
        self._load.connect(self._runner.load)
        self._run.connect(self._runner.run)
        self._serve.connect(self._runner.serve)
        r = self._runner
        r.loaded.connect(self._on_loaded)
        r.loadFailed.connect(self._on_load_failed)
        r.batchDone.connect(self._on_batch)
        r.runFinished.connect(self._on_run_finished)
        r.runFailed.connect(self._on_run_failed)
        r.textStreamed.connect(self._on_text)
        r.explained.connect(self._on_explained)
        r.explainFailed.connect(self._on_explain_failed)
        self._ids = itertools.count(1)
        self._load_id = self._run_id = self._explain_id = 0
        self._run_cancel = threading.Event()
        self._explain_cancel = threading.Event()
        self._queue = None
        self._done = 0
        self._t0 = 0.0
        self.loaded_info: dict | None = None
        self._thread.start()

    # ----------------------------------------------------------------- requests (GUI thread)
    def load(self, folder: str, recording_path: str, device: str = "cpu") -> int:
        """Load a model folder for a recording; cancels any run and explanation first."""
        self.cancel()
        self.cancel_explain()
        self.loaded_info = None
        self._load_id = next(self._ids)
        self._load.emit(self._load_id, str(folder), str(recording_path), device)
        return self._load_id

    def run(self, epochs) -> int:
        """Stage ``epochs`` (any iterable of int); a running run is cancelled first."""
        import time

        from eegvlm_desktop.ml.inference import EpochQueue

        self.cancel()
        self._run_cancel = threading.Event()
        self._queue = EpochQueue(epochs)
        self._done = 0
        self._t0 = time.perf_counter()
        self._run_id = next(self._ids)
        self._run.emit(self._run_id, self._queue, self._run_cancel)
        return self._run_id

    def prioritise(self, epoch: int, radius: int = 2) -> None:
        """Move ``epoch`` and its neighbours to the front of the current run."""
        if self._queue is not None:
            self._queue.prioritise(epoch, radius)

    def cancel(self) -> None:
        """Stop the current run before its next batch; its results stop arriving now."""
        self._run_cancel.set()
        self._run_id = 0
        self._queue = None

    def explain(self, epoch: int) -> int:
        """Explain ``epoch`` (reasoning + attention); replaces any pending explanation."""
        self._explain_cancel.set()
        self._explain_cancel = threading.Event()
        self._explain_id = next(self._ids)
        self._runner.park_explain(self._explain_id, int(epoch), self._explain_cancel)
        self._serve.emit()  # served at once when idle, else between two batches of the run
        return self._explain_id

    def cancel_explain(self) -> None:
        self._explain_cancel.set()
        self._explain_id = 0

    @property
    def busy(self) -> bool:
        """True while a run is current (not finished, failed or cancelled)."""
        return self._run_id != 0

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything, stop the thread and wait; True when it stopped in time."""
        self.cancel()
        self.cancel_explain()
        self._thread.quit()
        stopped = bool(self._thread.wait(timeout_ms))
        self._runner.engine = None
        return stopped

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    # ----------------------------------------------------------------- results (GUI thread)
    @Slot(int, object)
    def _on_loaded(self, request_id: int, info: dict) -> None:
        if request_id == self._load_id:
            self.loaded_info = info
            self.modelLoaded.emit(info)

    @Slot(int, str)
    def _on_load_failed(self, request_id: int, message: str) -> None:
        if request_id == self._load_id:
            self.modelFailed.emit(message)

    @Slot(int, object, object)
    def _on_batch(self, run_id: int, epochs, probs) -> None:
        import time

        if run_id != self._run_id or self._queue is None:
            return  # stale: a cancelled or replaced run
        self._done += len(epochs)
        rate = self._done / max(time.perf_counter() - self._t0, 1e-6)
        self.probsReady.emit(epochs, probs)
        self.progressed.emit(self._done, self._queue.total, rate)

    @Slot(int, object)
    def _on_run_finished(self, run_id: int, report) -> None:
        if run_id == self._run_id:
            self._run_id = 0
            self._queue = None
            self.runFinished.emit(report)

    @Slot(int, str)
    def _on_run_failed(self, run_id: int, message: str) -> None:
        if run_id == self._run_id:
            self._run_id = 0
            self._queue = None
            self.runFailed.emit(message)

    @Slot(int, int, str)
    def _on_text(self, request_id: int, epoch: int, text: str) -> None:
        if request_id == self._explain_id:
            self.textStreamed.emit(epoch, text)

    @Slot(int, int, object, object)
    def _on_explained(self, request_id: int, epoch: int, image, ex) -> None:
        if request_id == self._explain_id:
            self.explained.emit(epoch, image, ex)

    @Slot(int, str)
    def _on_explain_failed(self, request_id: int, message: str) -> None:
        if request_id == self._explain_id:
            self.explainFailed.emit(message)
