"""Start the desktop app: one QApplication, the main window, optional file to open."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from eegvlm_desktop import __version__


def make_app():
    """The process's QApplication (created once; pyqtgraph configured for speed)."""
    import pyqtgraph as pg  # (without its CUDA probe: see eegvlm_desktop.gui)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("EEG-VLM Desktop")
    app.setOrganizationName("eegvlm")
    app.setApplicationVersion(__version__)
    # Antialiasing off: thousands of segments per page redraw several times faster.
    pg.setConfigOptions(antialias=False, background="w", foreground="k")
    return app


def _no_display() -> str | None:
    """Why Qt cannot show a window here, or None. Qt itself would abort with a core dump."""
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") \
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). Run the app "
                "from a desktop session, or on a headless machine under a virtual screen: "
                "xvfb-run -a make run")
    return None


def run_app(recording: str | None = None, hypnogram: str | None = None) -> int:
    """Open the window (and ``recording``), run the event loop, return its exit code."""
    reason = _no_display()
    if reason:
        print(f"eegvlm: error: {reason}", file=sys.stderr)
        return 2
    app = make_app()
    from eegvlm_desktop.gui.main_window import MainWindow
    from eegvlm_desktop.gui.startup import when_exposed

    window = MainWindow()
    window.show()
    if recording:
        def open_recording() -> None:
            if window.open_file(Path(recording)) and hypnogram:
                window.import_hypnogram(Path(hypnogram))

        # Opened from the event loop once the empty window is on screen: the scorer sees
        # the window at once and the night fills it (issue 18: launch -> window <= 1 s).
        when_exposed(window, open_recording)
    return app.exec()
