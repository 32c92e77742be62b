"""Architecture rules that are easy to break silently (see docs/architecture.md).

The import rules between packages are declared as import-linter contracts in pyproject.toml
(``lint-imports``, run by ``make test``); these tests check what a static import graph cannot:
what really ends up in ``sys.modules``, where threads start, and private names.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "eegvlm_desktop"
HEAVY = ("PySide6", "pyqtgraph", "torch", "transformers", "open_clip", "yasa")


def test_every_core_module_imports_no_qt_no_torch_and_no_yasa():
    """Walk the whole core package (no hand-kept list): a new module is checked on arrival."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import eegvlm_desktop.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'eegvlm_desktop.core.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(len(names), ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    n, bad = out.stdout.split(" ", 1) if " " in out.stdout else (out.stdout, "")
    assert int(n) > 40, out.stdout  # the walk found the rooms' modules
    assert bad.strip() == ""


def test_core_source_never_mentions_qt_or_gui():
    for path in (PKG / "core").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(PySide6|pyqtgraph)", text, re.M), path
        assert not re.search(r"^\s*from\s+eegvlm_desktop\.(gui|ml|cli)\b", text, re.M), path


def test_only_workers_start_threads():
    for path in PKG.rglob("*.py"):
        if path.name == "workers.py":
            continue
        text = path.read_text()
        assert not re.search(r"QThread\b|threading\.Thread|QThreadPool|concurrent\.futures",
                             text), path


def test_no_module_imports_another_modules_private_names():
    """``from x import _name`` ties two modules by something one of them may change freely."""
    for root in ("eegvlm_desktop", "bench", "scripts"):
        for path in (REPO / root).rglob("*.py"):
            for stmt in re.findall(r"^\s*from\s+[\w.]+\s+import\s+(?:\([^)]*\)|[^\n]*)",
                                   path.read_text(), re.M):
                names = re.findall(r"\b(\w+)\b(?:\s+as\s+\w+)?", stmt.split("import", 1)[1])
                assert not [n for n in names if n.startswith("_") and n != "__future__"
                            and not n.startswith("__")], (path, stmt)


def test_controllers_never_import_the_window():
    for path in (PKG / "gui" / "controllers").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+eegvlm_desktop\.gui\.main_window", text,
                             re.M), path


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
                         check=True, cwd=REPO)
    assert out.stdout.strip() == ""
