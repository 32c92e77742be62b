"""Every kind of bad input ends in a clear dialog or banner; the window keeps working."""
from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QPushButton

from tests.conftest import write_broken_edf, write_edf


def _truncated(tmp_path):
    path = write_edf(tmp_path / "truncated.edf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_edf(tmp_path):
    path = tmp_path / "photo.edf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return path


def _corrupt_header(tmp_path):
    path = write_edf(tmp_path / "corrupt.edf")
    data = bytearray(path.read_bytes())
    data[236:244] = b"abcdefgh"  # number of data records: not a number
    path.write_bytes(bytes(data))
    return path


def _no_eeg(tmp_path):
    return write_edf(tmp_path / "noeeg.edf", ch_names=("ECG", "Resp oro-nasal"))


def _folder(tmp_path):
    folder = tmp_path / "a_folder.edf"
    folder.mkdir()
    return folder


def _empty(tmp_path):
    path = tmp_path / "empty.edf"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make", [_truncated, _not_edf, _corrupt_header, _no_eeg, _folder,
                                  _empty, lambda p: p / "missing.edf"])
def test_bad_recording_dialog(window, tmp_path, errors, tiny_edf, make):
    assert window.open_file(tiny_edf)
    bad = make(tmp_path)
    assert not window.open_file(bad)
    title, message = errors[-1]
    assert title == "Cannot open recording"
    assert bad.name in message and "Traceback" not in message
    # the night that was open stays open and scorable
    assert window.doc.recording.path == tiny_edf
    window.label_current("N2")
    assert window.doc.hypnogram[0] == "N2"


@pytest.mark.parametrize("content", ["", "onset,duration,stage\n", "garbage \x00\x01 not a table",
                                     # 15-s epochs: cannot be cropped or padded to fit
                                     "onset,duration,stage\n0,15,N2\n15,15,N3\n"])
def test_bad_hypnogram_dialog(window, tmp_path, errors, tiny_edf, content):
    assert window.open_file(tiny_edf)
    hyp = tmp_path / "bad.csv"
    hyp.write_text(content)
    assert not window.import_hypnogram(hyp)
    title, message = errors[-1]
    assert title == "Cannot import hypnogram" and "bad.csv" in message
    assert window.doc.hypnogram.n_scored() == 0


def test_channels_dialog_hides_reorders_and_filters(window, tiny_edf, monkeypatch):
    from eegvlm_desktop.core.recording.display import DisplayFilter
    from eegvlm_desktop.gui import dialogs

    assert window.open_file(tiny_edf)
    rec = window.doc.recording
    dlg = dialogs.ChannelsDialog(rec.ch_names, rec.ch_types, rec.orig_sfreqs, rec.units,
                                 window.signal_view.order,
                                 {c: window.source.get_filter(c) for c in range(4)},
                                 window.signal_view.scales)
    from PySide6.QtCore import Qt

    dlg.table.item(1, 0).setCheckState(Qt.CheckState.Unchecked)  # hide channel 1
    dlg.table.selectRow(3)
    dlg._move(-1)  # channel 3 above channel 2
    notch = dlg.table.cellWidget(0, 6)
    assert notch.findData(50.0) == -1  # 100-Hz file: a 50-Hz notch is at Nyquist, not offered
    hp = dlg.table.cellWidget(0, 4)
    hp.setCurrentIndex(hp.findData(1.0))
    dlg.accept()
    assert dlg.result_order() == [0, 3, 2]
    assert dlg.result_filters()[0].highpass == 1.0
    monkeypatch.setattr(dialogs, "ChannelsDialog", lambda *a, **k: dlg)
    dlg.exec = lambda: True
    window._edit_channels()
    assert window.signal_view.order == [0, 3, 2]
    assert window.source.get_filter(0) == DisplayFilter(
        highpass=1.0, lowpass=window.source.get_filter(0).lowpass, notch=None)
    dlg.close()


def test_help_dialog_lists_every_shortcut(window):
    from eegvlm_desktop.gui.dialogs import ShortcutHelp
    from eegvlm_desktop.gui.shortcuts import SHORTCUTS

    dlg = ShortcutHelp(window)
    assert dlg.table.rowCount() == len(SHORTCUTS)
    texts = {dlg.table.item(r, 2).text() for r in range(dlg.table.rowCount())}
    assert "Undo the last label change" in texts
    dlg.close()


def test_misaligned_hypnogram_offered_fit_then_clear_error(window, tmp_path, errors, tiny_edf,
                                                           monkeypatch):
    from eegvlm_desktop.gui import dialogs

    assert window.open_file(tiny_edf)
    hyp = tmp_path / "offset.csv"
    hyp.write_text("onset,duration,stage\n15,30,N2\n45,30,N3\n")
    asked = []
    monkeypatch.setattr(dialogs, "ask_mismatch",
                        lambda p, name, probs: asked.append(probs) or "crop_or_pad")
    assert not window.import_hypnogram(hyp)
    assert len(asked) == 1  # asked once, never in a loop
    assert errors and "offset.csv" in errors[-1][1]


# ---------------------------------------------------------------- opening is all-or-nothing
def test_short_recording_over_a_scored_night_keeps_the_night(window, tmp_path, errors,
                                                             tiny_edf):
    assert window.open_file(tiny_edf)
    window.label_current("N2")
    short = write_edf(tmp_path / "short.edf", duration_s=20.0)
    assert not window.open_file(short)
    title, message = errors[-1]
    assert title == "Cannot open recording"
    assert "short.edf" in message and "shorter than one 30-s" in message
    assert window.doc.recording.path == tiny_edf
    assert window.actions["undo"].isEnabled()
    window.label_current("N3")  # the next key is saved (it used to raise IndexError)
    saved = json.loads(window.doc.store.location.read_text())["hypnogram"]["stages"]
    assert saved[:2] == ["N2", "N3"]
    assert not list(tmp_path.glob("short.edf.eegvlm*"))  # no lock, no audit line left


def test_view_failure_keeps_the_old_night_and_releases_the_new_lock(window, tmp_path, errors,
                                                                    tiny_edf, monkeypatch):
    from eegvlm_desktop.core.recording import display

    assert window.open_file(tiny_edf)
    window.label_current("W")
    other = write_edf(tmp_path / "other.edf", seed=1)
    real_get = display.DisplaySource.get

    def choke(self, *args, **kwargs):
        if self.recording.path == other:
            raise ValueError("the view cannot draw this")
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(display.DisplaySource, "get", choke)
    assert not window.open_file(other)
    assert "other.edf" in errors[-1][1] and "tiny.edf stays open" in errors[-1][1]
    assert window.doc.recording.path == tiny_edf
    assert window.signal_view.recording.path == tiny_edf
    assert not (tmp_path / "other.edf.eegvlm.lock").exists()
    window.label_current("N1")
    assert window.doc.hypnogram[1] == "N1" and not window.doc.session.has_unsaved


def test_short_recording_from_the_command_line_is_a_dialog_not_an_abort(tmp_path, errors,
                                                                        monkeypatch, qtbot):
    """``eegvlm gui short.edf`` used to abort (exit 134) inside pyqtgraph."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from eegvlm_desktop.cli import main
    from eegvlm_desktop.gui import main_window

    made = []

    class Window(main_window.MainWindow):
        def __init__(self):
            super().__init__(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                             user="t", data_dir=tmp_path / "d")
            made.append(self)

    monkeypatch.setattr(main_window, "MainWindow", Window)
    # The night is opened from the event loop once the window is up: run the loop until the
    # open has been tried (it ends in the error dialog), instead of sitting in it.
    monkeypatch.setattr(QApplication, "exec", lambda *a: qtbot.waitUntil(lambda: bool(errors)) or 0)
    short = write_edf(tmp_path / "short.edf", duration_s=20.0)
    try:
        assert main(["gui", str(short)]) == 0
    finally:
        for w in made:
            w.close()
    assert errors and errors[-1][0] == "Cannot open recording"
    assert "shorter than one 30-s" in errors[-1][1]
    assert made and made[0].doc is None


# ---------------------------------------------------------------- the signal check on open
def _open_checked(qtbot, window, path) -> None:
    """Open ``path`` and wait for the signal check, which follows the first frame."""
    with qtbot.waitSignal(window.worker.jobDone, timeout=10000,
                          check_params_cb=lambda rid, kind, _r: kind == "quality"
                          and rid == window._quality_request):
        assert window.open_file(path)
        # The first frame comes before the check: the traces are up, the verdict is not.
        assert window.doc is not None and not window.doc.quality_checked
    assert window.doc.quality_checked


@pytest.mark.parametrize("problem, words", [("flat", "is flat"), ("tiny", "implausibly small"),
                                            ("no_range", "same physical minimum and maximum")])
def test_broken_signal_opens_with_a_banner(qtbot, window, tmp_path, problem, words):
    _open_checked(qtbot, window, write_broken_edf(tmp_path / f"{problem}.edf", problem))
    assert window.banner.isVisible() and window.banner.severity == "error"
    text = window.banner.label.text()
    assert words in text and "EEG Fpz-Cz" in text and "EEG Pz-Oz" in text
    assert "about the file above the traces" in window.statusBar().currentMessage()
    window.label_current("W")  # still scorable by hand
    assert window.doc.hypnogram[0] == "W"


def test_banner_stays_until_dismissed_and_clean_files_have_none(qtbot, window, tmp_path,
                                                                tiny_edf):
    _open_checked(qtbot, window, tiny_edf)
    assert not window.banner.isVisible()
    _open_checked(qtbot, window, write_broken_edf(tmp_path / "flat.edf", "flat"))
    window.statusBar().clearMessage()
    assert window.banner.isVisible()  # not a transient message
    window.banner.findChild(QPushButton, "fileBannerDismiss").click()
    assert not window.banner.isVisible()


def test_a_check_started_for_the_previous_night_never_reaches_the_next(qtbot, window, tmp_path,
                                                                     tiny_edf):
    # Opened back to back, before the first night's check has reported: whatever it finds
    # (or its cancellation) must not land in the banner of the clean night now open.
    assert window.open_file(write_broken_edf(tmp_path / "flat.edf", "flat"))
    _open_checked(qtbot, window, tiny_edf)
    qtbot.waitUntil(window.worker.idle, timeout=10000)
    assert window.doc.recording.path == tiny_edf
    assert window.doc.quality == [] and not window.banner.isVisible()
