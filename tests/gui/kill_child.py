"""Child process for test_kill: open a recording in the real window, score by keyboard,
announce it, then keep the event loop running until the parent SIGKILLs us."""
import os
import sys
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from eegvlm_desktop.gui.app import make_app  # noqa: E402
from eegvlm_desktop.gui.main_window import MainWindow  # noqa: E402

recording, workdir, keys = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
app = make_app()
w = MainWindow(settings=QSettings(str(workdir / "s.ini"), QSettings.Format.IniFormat),
               user="killtest", data_dir=workdir / "data")
w.show()
if not w.open_file(recording):
    sys.exit(3)
w.activateWindow()
if not QTest.qWaitForWindowActive(w, 5000):
    sys.exit(4)
for ch in keys:
    QTest.keyClick(w, ch)
print("DONE", " ".join(w.doc.hypnogram.stages), flush=True)
sys.exit(app.exec())
