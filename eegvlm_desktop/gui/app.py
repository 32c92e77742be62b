"""Start the desktop app: one QApplication, the main window, optional file to open."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import __version__


def make_app():
    """The process's QApplication (created once; pyqtgraph configured for speed)."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("EEG-VLM Desktop")
    app.setOrganizationName("eegvlm")
    app.setApplicationVersion(__version__)
    # Antialiasing off: thousands of segments per page redraw several times faster.
    pg.setConfigOptions(antialias=False, background="w", foreground="k")
    return app


def run_app(recording: str | None = None, hypnogram: str | None = None) -> int:
    """Open the window (and ``recording``), run the event loop, return its exit code."""
    app = make_app()
    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    if recording:
        if window.open_file(Path(recording)) and hypnogram:
            window.import_hypnogram(Path(hypnogram))
    return app.exec()
