"""Background work. This is the only module that starts threads.

Shape (superqt / mne-qt-browser): one long-lived worker object lives on its own QThread
and runs jobs in order. Every job has a request id; results come back as queued signals
carrying plain data, and the GUI drops results whose id is stale. A ``threading.Event``
set directly from the GUI thread cancels, because a queued signal cannot reach a slot
that is busy. On close: cancel, quit, wait with a timeout.
"""
from __future__ import annotations

import itertools
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.errors import EEGVLMError


class _JobRunner(QObject):
    """Lives on the worker thread; runs one job at a time."""

    done = Signal(int, str, object)  # request id, kind, result
    failed = Signal(int, str, str)  # request id, kind, message for the user

    def __init__(self) -> None:
        super().__init__()
        # Written only by the worker thread (the GUI thread writes only ``submitted``),
        # so neither counter needs a lock.
        self.finished = 0

    @Slot(int, str, object)
    def run(self, request_id: int, kind: str, job: object) -> None:
        fn, args, cancel = job
        try:
            if not cancel.is_set():
                self._run(request_id, kind, fn, args, cancel)
        finally:
            self.finished += 1

    def _run(self, request_id, kind, fn, args, cancel) -> None:
        try:
            result = fn(*args)
        except EEGVLMError as err:  # errors written for users: show as they are
            self.failed.emit(request_id, kind, str(err))
        except MemoryError:
            self.failed.emit(request_id, kind, "Out of memory while running this task.")
        except Exception as err:  # noqa: BLE001 - report, never crash the thread
            traceback.print_exc()
            self.failed.emit(request_id, kind, f"{type(err).__name__}: {err}")
        else:
            if not cancel.is_set():
                self.done.emit(request_id, kind, result)


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
        self._ids = itertools.count(1)
        self._submitted = 0
        self._cancels: dict[str, threading.Event] = {}
        self._thread.start()

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any) -> int:
        """Queue ``fn(*args)``; a newer job of the same ``kind`` cancels a queued older one."""
        old = self._cancels.get(kind)
        if old is not None:
            old.set()
        cancel = threading.Event()
        self._cancels[kind] = cancel
        request_id = next(self._ids)
        self._submitted += 1
        self._submit.emit(request_id, kind, (fn, args, cancel))
        return request_id

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
        except (RuntimeError, TypeError):
            pass
        return bool(stopped)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()
