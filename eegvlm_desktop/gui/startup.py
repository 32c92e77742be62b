"""Start-up order: what runs once the window is on screen, not before.

Issue 18 (launch -> window <= 1 s on 2 cores): the window paints first; reading the night
and warming the recording reader (MNE's imports, ~0.5 s of GIL-holding Python) follow from
the event loop, so that neither delays the first paint.
"""
from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

#: Give up waiting for the window system after this long and run anyway (a hidden window,
#: e.g. in tests, is never exposed).
EXPOSE_WAIT_MS = 1000
_POLL_MS = 10
#: Freed blocks at least this large go back to the system (see return_freed_memory).
MMAP_THRESHOLD = 1 << 20


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


def return_freed_memory() -> bool:
    """Make glibc hand large freed blocks back to the system; True if it was set.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after
    which the display's block-sized arrays (a filter run's FFT buffers, ~2 MB each) come from
    the job worker's heap arena and stay resident when freed: ~15 MB of the viewer's 200-MB
    budget (issue 18). A fixed 1-MiB threshold sends those back to the system, while a page
    step's own arrays (~0.6 MB for 10 channels) stay on the heap and are reused: at glibc's
    initial 128 KiB, mapping and unmapping them on every step cost ~2 ms of median and ~6 ms
    of p95 page step (bench/viewer.py, 8-h night: 9.3 ms / 17 ms at 128 KiB, 7.9 ms / 11 ms
    at 1 MiB, default 7.2 ms / 11 ms at 204-214 MB peak; 1 MiB: 195 MB).
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        m_mmap_threshold = -3  # <malloc.h>
        return bool(ctypes.CDLL(None).mallopt(m_mmap_threshold, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
