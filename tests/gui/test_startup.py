"""Start-up order (issue 18): the window paints before anything slow, and imports little."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtWidgets import QWidget

from eegvlm_desktop.gui.startup import when_exposed

REPO = Path(__file__).resolve().parents[2]
#: What the first window must not import: the model stack, YASA and its data-science stack,
#: and scipy.signal (the display filters are numpy; the renderer imports it on first use).
NOT_AT_START = ("torch", "transformers", "open_clip", "lightgbm", "yasa", "pandas", "sklearn",
                "matplotlib", "scipy.signal", "scipy.stats", "numba", "cuda")


def test_building_and_showing_the_window_imports_no_heavy_library(tmp_path):
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtCore import QSettings\n"
        "from eegvlm_desktop.gui.app import make_app\n"
        "from eegvlm_desktop.gui.main_window import MainWindow\n"
        "app = make_app()\n"
        f"w = MainWindow(QSettings({str(tmp_path / 's.ini')!r}, QSettings.Format.IniFormat),"
        f" user='t', data_dir=__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "w.show()\n"
        "app.processEvents()\n"
        f"bad = [m for m in {NOT_AT_START!r} if m in sys.modules]\n"
        "w.close()\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), out.stdout


def test_runs_once_the_window_is_exposed(qtbot):
    w = QWidget()
    qtbot.addWidget(w)
    calls = []
    when_exposed(w, lambda: calls.append(w.windowHandle().isExposed()))
    w.show()
    qtbot.waitUntil(lambda: bool(calls))
    assert calls == [True]


def test_a_hidden_window_still_runs_it_and_a_closed_one_never(qtbot):
    gone, hidden = QWidget(), QWidget()
    qtbot.addWidget(hidden)
    calls = []
    when_exposed(gone, lambda: calls.append("gone"))
    when_exposed(hidden, lambda: calls.append("hidden"))  # its timers run after gone's
    gone.deleteLater()
    qtbot.waitUntil(lambda: bool(calls), timeout=3000)
    assert calls == ["hidden"]  # nothing for the deleted one
