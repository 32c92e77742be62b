"""Start-up order: what runs once the window is on screen, not before.

Issue 18 (launch -> window <= 1 s on 2 cores): the window paints first; reading the night
and warming the recording reader (MNE's imports, ~0.5 s of GIL-holding Python) follow from
the event loop, so that neither delays the first paint.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

#: Give up waiting for the window system after this long and run anyway (a hidden window,
#: e.g. in tests, is never exposed).
EXPOSE_WAIT_MS = 1000
_POLL_MS = 10


def when_exposed(window: QWidget, fn: Callable[[], None], waited_ms: int = 0) -> None:
    """Call ``fn`` from the event loop once ``window`` is exposed (painted), or after 1 s.

    A window manager maps a new window asynchronously, so a zero timer alone could run
    ``fn`` before the window's first paint. Qt paints a widget window while handling its
    expose event: "exposed" means "painted". The timers take ``window`` as their context,
    so nothing runs once the window is gone.
    """
    handle = window.windowHandle()
    if (handle is not None and handle.isExposed()) or waited_ms >= EXPOSE_WAIT_MS:
        QTimer.singleShot(0, window, fn)
    else:
        QTimer.singleShot(_POLL_MS, window,
                          lambda: when_exposed(window, fn, waited_ms + _POLL_MS))

