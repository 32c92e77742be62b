"""Coalesce bursts of calls on the GUI thread: the one throttle/debounce helper.

Shaped like superqt's ``qthrottled`` / ``qdebounced``: wrap a function once, call the wrapper
as often as events arrive, and the function runs on the event loop:

* :class:`Throttled` — at most once per interval, the first call of a burst drawn after at most
  the interval, so a long stream (a staging run's batches) still shows progress while it comes;
* :class:`Debounced` — once, after the calls have paused for the interval (navigation: only the
  epoch the scorer stops on is worth an explanation).
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class _Coalesced(QObject):
    def __init__(self, fn: Callable[[], object], ms: int, parent: QObject | None = None) -> None:
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"Invalid value for the 'ms' parameter: it must be a whole number "
                             f"of milliseconds >= 0, but got {ms!r}.")
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(ms)
        self._timer.timeout.connect(fn)

    @property
    def pending(self) -> bool:
        """True while a call is waiting to run."""
        return self._timer.isActive()

    def cancel(self) -> None:
        """Drop the waiting call, if any (on close, or when its data is gone)."""
        self._timer.stop()


class Throttled(_Coalesced):
    """Run ``fn`` at most once per ``ms``: a call while one is waiting is merged into it."""

    def __call__(self) -> None:
        if not self._timer.isActive():
            self._timer.start()


class Debounced(_Coalesced):
    """Run ``fn`` once ``ms`` after the last call: every call restarts the wait."""

    def __call__(self) -> None:
        self._timer.start()
