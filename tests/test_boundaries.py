"""Architecture rules that are easy to break silently (see shared/design/architecture.md)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "eegvlm_desktop"


def test_core_imports_no_qt_and_no_torch():
    code = (
        "import sys\n"
        "import eegvlm_desktop.core.recording.recording, eegvlm_desktop.core.hypnogram.hypnogram, "
        "eegvlm_desktop.core.hypnogram.read, eegvlm_desktop.core.recording.display, "
        "eegvlm_desktop.core.scoring.document, eegvlm_desktop.core.scoring.session, eegvlm_desktop.core.hypnogram.stats, "
        "eegvlm_desktop.core.picture.rendering, eegvlm_desktop.core.picture.evidence, eegvlm_desktop.core.picture.cot, "
        "eegvlm_desktop.core.recording.montage, eegvlm_desktop.core.staging.model_layer, "
        "eegvlm_desktop.core.staging.model_card, eegvlm_desktop.core.staging.attention_map, "
        "eegvlm_desktop.ml.inference\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'pyqtgraph', 'torch', 'transformers', 'open_clip', 'yasa')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_core_source_never_mentions_qt_or_gui():
    for path in (PKG / "core").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(PySide6|pyqtgraph)", text, re.M), path
        assert not re.search(r"^\s*from\s+\.\.gui", text, re.M), path


def test_only_workers_start_threads():
    for path in PKG.rglob("*.py"):
        if path.name == "workers.py":
            continue
        text = path.read_text()
        assert not re.search(r"QThread\b|threading\.Thread|QThreadPool|concurrent\.futures",
                             text), path


def test_the_window_starts_without_torch():
    """The app opens without importing torch: the model worker imports it when first used."""
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import eegvlm_desktop.gui.main_window\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'open_clip')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
