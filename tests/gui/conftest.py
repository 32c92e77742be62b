"""GUI fixtures: a MainWindow with throw-away settings and sidecar folder, dialogs recorded."""
from __future__ import annotations

import pytest


@pytest.fixture
def errors(monkeypatch):
    """Record error dialogs instead of blocking on them (a modal box would hang the test)."""
    from eegvlm_desktop.gui import dialogs

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, title, msg: seen.append((title, msg)))
    # A test that reaches a question it did not expect must fail, not hang on a modal box.
    def unexpected(*args, **kwargs):
        raise AssertionError(f"unexpected modal dialog: {args[1:]}")

    monkeypatch.setattr(dialogs, "ask_mismatch", unexpected)
    monkeypatch.setattr(dialogs, "ask_epoch", unexpected)
    monkeypatch.setattr(dialogs, "ask_read_only", unexpected)
    return seen


@pytest.fixture
def window(qtbot, tmp_path, errors):
    from PySide6.QtCore import QSettings

    from eegvlm_desktop.gui.app import make_app
    from eegvlm_desktop.gui.main_window import MainWindow

    make_app()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, user="tester", data_dir=tmp_path / "userdata")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    # The job worker's thread must be gone once the window is closed: no dangling threads.
    # (threading.active_count() cannot tell: Python keeps a dummy entry for a QThread.)
    assert not w.worker.running
