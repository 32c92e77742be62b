"""Re-take the README's model screenshots from the real window (run under xvfb-run).

    xvfb-run -a -s "-screen 0 1680x1050x24" .venv/bin/python scripts/screenshots.py [OUT_DIR]

Opens the bundled example night with the bundled default model, stages the whole night
(Ctrl+R), then saves:

- ``model-in-app.png``: epoch 301 explained (E): reasoning, attention, hypnodensity, and
  the line naming what the answer was pooled from;
- ``night-context.png``: night context turned on (C; off by default for a pooled model), the
  first epoch whose stage it changed, the epoch panel flagging it.

The example is copied to a temporary folder first (labels are autosaved beside the
recording), so the example's own autosave and settings are never touched.
Prints one JSON line: what was shown.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EXAMPLE = REPO / "resources" / "example" / "SC4001-example-PSG.edf"


def wait(signal, timeout_s: float = 120.0) -> None:
    """Run the event loop until ``signal`` fires (or fail after ``timeout_s``)."""
    loop = QEventLoop()
    fired = []
    signal.connect(lambda *a: (fired.append(a), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    if not fired:
        raise SystemExit(f"timed out waiting for {signal}")


def settle(ms: int = 800) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "resources" / "screenshots"
    app = QApplication.instance() or QApplication(sys.argv)
    from eegvlm_desktop.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp())
    for f in EXAMPLE.parent.glob("SC4001-example-*.edf"):
        shutil.copy(f, tmp / f.name)
    w = MainWindow(settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat),
                   user="screenshot", data_dir=tmp)
    w.resize(1600, 950)
    w.show()
    w.open_file(tmp / EXAMPLE.name)
    w.model.run_night()
    wait(w.model.worker.runFinished, 300)
    settle()
    w.goto_epoch(301)
    w.model.explain()
    wait(w.model.worker.explained, 120)
    settle(1500)
    w.grab().save(str(out / "model-in-app.png"))
    layer = w.model.layer
    # The shipped (pooled) model has night context off by default: turn it on to show it.
    w.model.set_night_context(True)
    settle()
    changed = np.flatnonzero(layer.proba.argmax(1) != layer.epoch_proba.argmax(1))
    shown = {"explained": 301, "context_changed": changed.tolist()}
    if changed.size:
        w.goto_epoch(int(changed[0]))
        settle(2500)
        w.grab().save(str(out / "night-context.png"))
    print(json.dumps(shown))
    w.close()
    app.processEvents()


if __name__ == "__main__":
    main()
