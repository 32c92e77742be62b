"""Child process for test_kill: open a recording in the real window, score by keyboard,
announce it, then keep the event loop running until the parent SIGKILLs us.

With a fourth argument N the process instead SIGKILLs itself at the N-th sidecar write,
after that change's audit line was appended and fsync-ed: the crash between the two writes.
"""
import os
import signal
import sys
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from eegvlm_desktop.gui.app import make_app  # noqa: E402
from eegvlm_desktop.gui.main_window import MainWindow  # noqa: E402

recording, workdir, keys = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4:
    from eegvlm_desktop.core.scoring import label_store

    die_at, saves, real_save = int(sys.argv[4]), [], label_store.LabelStore.save

    def save(self, hyp):
        saves.append(1)
        if len(saves) == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(self, hyp)

    label_store.LabelStore.save = save
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
