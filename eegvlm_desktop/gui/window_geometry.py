"""Fit the main window to the screen it opens on, and restore its last geometry only if it fits.

A window taller than the screen hides its status bar, where the open file's notes appear,
below the screen's edge; a geometry saved on a large monitor and restored on a laptop does
the same. So the window's size is bounded by the screen's *available* geometry (without
task bars and docks), down to 1366 x 768, and a saved geometry is used only when it lies
entirely on one of the screens present now.
"""
from __future__ import annotations

from PySide6.QtCore import QRect, QSettings, QSize, Qt
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QMainWindow, QWidget

#: Where the geometry is kept between sessions.
GEOMETRY_KEY = "window/geometry"
#: The size the window asks for on a screen big enough.
PREFERRED_SIZE = QSize(1600, 900)
# Room for the window manager's frame before the window is shown (title bar, borders);
# once shown, the real frame is measured instead.
_FRAME_ALLOWANCE = QSize(16, 40)


def _frame_extra(window: QWidget) -> QSize:
    """How much bigger the frame is than the client area (estimated until shown)."""
    if window.isVisible():
        frame, inner = window.frameGeometry(), window.geometry()
        extra = QSize(frame.width() - inner.width(), frame.height() - inner.height())
        if extra.width() > 0 or extra.height() > 0:
            return extra
    return _FRAME_ALLOWANCE


def available_rect(window: QWidget) -> QRect:
    """The usable area of the window's screen (primary screen before it has one)."""
    screen: QScreen | None = window.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1366, 768)


def fits_some_screen(frame: QRect) -> bool:
    """Whether ``frame`` lies entirely inside the available area of one present screen."""
    return any(s.availableGeometry().contains(frame) for s in QGuiApplication.screens())


def fit_to_screen(window: QMainWindow, preferred: QSize = PREFERRED_SIZE) -> QRect:
    """Size ``window`` to ``preferred``, bounded by its screen, and centre it there.

    Returns
    -------
    QRect
        The client geometry set.
    """
    area = available_rect(window)
    extra = _frame_extra(window)
    size = preferred.boundedTo(QSize(area.width() - extra.width(),
                                     area.height() - extra.height()))
    # Never below what the layout can show: the window's minimum must fit the screen too
    # (the side panels scroll instead of growing it; see MainWindow).
    size = size.expandedTo(window.minimumSizeHint().boundedTo(size))
    window.resize(size)
    left = area.left() + max(0, (area.width() - size.width() - extra.width()) // 2)
    top = area.top() + max(0, (area.height() - size.height() - extra.height()) // 2)
    window.move(left, top)
    return window.geometry()


def _saved_rect(settings: QSettings) -> QRect | None:
    """The client geometry saved by :func:`save_geometry`, or None if absent or damaged."""
    value = settings.value(GEOMETRY_KEY)
    try:
        x, y, w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return QRect(x, y, w, h) if w > 0 and h > 0 else None


def restore_or_fit(window: QMainWindow, settings: QSettings) -> bool:
    """Restore the saved geometry if it fits a present screen, else :func:`fit_to_screen`.

    The decision is made on the saved rectangle itself (plus the frame) before anything is
    applied: Qt's own ``restoreGeometry`` would quietly squeeze an oversized geometry
    instead, leaving a window sized for another screen.

    Returns
    -------
    bool
        True when the saved geometry was used.
    """
    rect = _saved_rect(settings)
    extra = _frame_extra(window)
    if rect is not None and rect.width() >= window.minimumSizeHint().width() \
            and rect.height() >= window.minimumSizeHint().height():
        side = extra.width() // 2  # borders left, right and bottom; the title bar on top
        frame = rect.adjusted(-side, -(extra.height() - side), side, side)
        if fits_some_screen(frame):
            window.setGeometry(rect)
            if str(settings.value(GEOMETRY_KEY + "_maximized", "false")).lower() == "true":
                window.setWindowState(window.windowState() | Qt.WindowState.WindowMaximized)
            return True
    fit_to_screen(window)
    return False


def save_geometry(window: QMainWindow, settings: QSettings) -> None:
    """Remember ``window``'s (unmaximised) geometry for the next session."""
    g = window.normalGeometry() if window.isMaximized() else window.geometry()
    settings.setValue(GEOMETRY_KEY, [g.x(), g.y(), g.width(), g.height()])
    settings.setValue(GEOMETRY_KEY + "_maximized", bool(window.isMaximized()))
