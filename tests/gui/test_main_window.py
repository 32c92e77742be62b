"""The scoring window driven as a scorer would: keys, clicks, dialogs (recorded)."""
from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from tests.conftest import write_edf


def key(qtbot, window, k, mod=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window, k, mod)


@pytest.fixture
def opened(window, tiny_edf, qtbot):
    assert window.open_file(tiny_edf)
    window.activateWindow()
    qtbot.waitActive(window)  # shortcuts only fire in the active window
    return window


def test_open_shows_all_channels_and_first_page(opened):
    w = opened
    assert len(w.signal_view.order) == 4
    assert w.doc.hypnogram.n_epochs == 10
    assert w.epoch == 0
    assert w.status_epoch.text() == "Epoch 1 / 10"
    x0, x1 = w.signal_view.plotItem.viewRange()[0]
    assert (x0, x1) == pytest.approx((0, 30))
    assert w.signal_view._t0 == 0


def test_first_label_can_be_undone_by_key(opened, qtbot):
    """Undo is enabled by the very first label (it used to wait for a second change)."""
    key(qtbot, opened, Qt.Key.Key_2)
    assert opened.actions["undo"].isEnabled()
    key(qtbot, opened, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert opened.doc.hypnogram[0] == "UNS"


def test_score_by_keyboard_autoadvance_undo_redo(opened, qtbot):
    w = opened
    for k in (Qt.Key.Key_W, Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_R,
              Qt.Key.Key_5, Qt.Key.Key_0, Qt.Key.Key_4):
        key(qtbot, w, k)
    hyp = w.doc.hypnogram
    assert list(hyp.stages[:8]) == ["W", "N1", "N2", "N3", "R", "R", "W", "R"]
    assert w.epoch == 8
    # saved at once: the sidecar already holds every label
    saved = json.loads(w.doc.store.location.read_text())
    assert saved["hypnogram"]["stages"][:8] == list(hyp.stages[:8])
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert hyp[7] == "UNS" and w.epoch == 7
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
        | Qt.KeyboardModifier.ShiftModifier)
    assert hyp[7] == "R"
    # "." clears, without auto-advance when toggled off
    w.actions["auto_advance"].trigger()
    assert not w.auto_advance
    w.goto_epoch(2)
    key(qtbot, w, Qt.Key.Key_Period)
    assert hyp[2] == "UNS" and w.epoch == 2
    audit = w.doc.store.audit.read()
    labels = [e for e in audit if e.get("event") == "label"]
    assert len(labels) == 11 and labels[0]["user"] == "tester"


def test_navigation_keys(opened, qtbot):
    w = opened
    key(qtbot, w, Qt.Key.Key_Right)
    assert w.epoch == 1
    key(qtbot, w, Qt.Key.Key_End)
    assert w.epoch == 9
    key(qtbot, w, Qt.Key.Key_Right)  # clamped at the end
    assert w.epoch == 9
    key(qtbot, w, Qt.Key.Key_Home)
    assert w.epoch == 0
    w.set_window(60)
    key(qtbot, w, Qt.Key.Key_PageDown)
    assert w.epoch == 2
    # x is page-relative; the page start is carried by the clock axis
    assert w.signal_view.plotItem.viewRange()[0] == pytest.approx([0, 60])
    assert w.signal_view._t0 == 60
    assert w.signal_view._axis.tickStrings([0.0], 1, 1) == ["0:01:00"] or \
        w.signal_view._axis.origin is not None
    key(qtbot, w, Qt.Key.Key_PageUp)
    assert w.epoch == 0
    w.doc.session.label([0, 1, 2], "N2")
    key(qtbot, w, Qt.Key.Key_U)
    assert w.epoch == 3


def test_gain_keys_and_wheel_lane(opened, qtbot):
    w = opened
    before = dict(w.signal_view.scales)
    key(qtbot, w, Qt.Key.Key_Plus)
    assert all(w.signal_view.scales[c] < before[c] for c in before)
    key(qtbot, w, Qt.Key.Key_Minus)
    assert w.signal_view.scales == pytest.approx(before)
    w.signal_view._on_lane_wheel(1, +1)  # wheel on lane 1 changes only that channel
    ch = w.signal_view.order[1]
    assert w.signal_view.scales[ch] < before[ch]
    assert w.signal_view.scales[w.signal_view.order[0]] == before[w.signal_view.order[0]]
    # a click on lane 2 selects that channel: the gain keys then act on it alone
    w.signal_view._vb.clickedAt.emit(12.0, 2)
    sel = w.signal_view.order[2]
    assert w.signal_view.selected == sel
    ticks = w.signal_view.plotItem.getAxis("left")._tickLevels[0]
    assert ticks[2][1].startswith("▶ ")
    now = dict(w.signal_view.scales)
    key(qtbot, w, Qt.Key.Key_Plus)
    assert w.signal_view.scales[sel] < now[sel]
    assert all(w.signal_view.scales[c] == now[c] for c in now if c != sel)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.signal_view.selected is None


def test_hypnogram_click_navigates(opened, qtbot):
    w = opened
    with qtbot.waitSignal(w.hypnogram_view.epochRequested) as sig:
        w.hypnogram_view._on_time(125.0)
    assert sig.args == [4]
    assert w.epoch == 4


def test_stats_update_off_thread(opened, qtbot):
    w = opened
    for i, s in enumerate(["W", "N2", "N2", "N2", "R", "W"]):
        w.doc.session.label([i], s)
    qtbot.waitUntil(lambda: w.stats_panel.values.get("TST") == pytest.approx(2.0), timeout=15000)
    # YASA's TIB is the whole scoring period, unscored epochs included (10 epochs).
    assert w.stats_panel.values["TIB"] == pytest.approx(5.0)
    assert w.stats_panel.table.item(w.stats_panel._rows["TST"], 1).text() == "2.0"


def test_bad_recording_gives_dialog_and_keeps_window(window, tmp_path, errors):
    bad = tmp_path / "notes.edf"
    bad.write_text("this is not an EDF file\n" * 20)
    assert not window.open_file(bad)
    assert errors and "notes.edf" in errors[0][1]
    assert window.doc is None
    assert "Traceback" not in errors[0][1]


def test_mismatched_hypnogram_asks_and_can_fit(opened, tmp_path, monkeypatch):
    from eegvlm_desktop.gui import dialogs

    w = opened
    hyp = tmp_path / "long.csv"
    hyp.write_text("onset,duration,stage\n" + "".join(
        f"{i * 30},30,N2\n" for i in range(14)))
    asked = []
    monkeypatch.setattr(dialogs, "ask_mismatch", lambda p, name, probs: asked.append(probs))
    assert not w.import_hypnogram(hyp)  # cancelled
    assert asked and any("4 more" in p for p in asked[0])
    assert w.doc.hypnogram.n_scored() == 0
    monkeypatch.setattr(dialogs, "ask_mismatch", lambda p, name, probs: "crop_or_pad")
    assert w.import_hypnogram(hyp)
    assert list(w.doc.hypnogram.stages) == ["N2"] * 10
    w.scoring.undo()  # an import is one undoable step
    assert w.doc.hypnogram.n_scored() == 0


def test_export_runs_on_worker(opened, qtbot, tmp_path):
    w = opened
    w.doc.session.label([0, 1], "N1")
    out = tmp_path / "out.csv"
    def exported(rid, kind, result):
        return kind == "export"

    with qtbot.waitSignal(w.worker.jobDone, timeout=10000, check_params_cb=exported):
        w.export_hypnogram(out)
    assert "N1" in out.read_text()
    # De-identified by default: neither the recording's file name nor its date leaves.
    js = tmp_path / "out.json"
    with qtbot.waitSignal(w.worker.jobDone, timeout=10000, check_params_cb=exported):
        w.export_hypnogram(js)
    text = js.read_text()
    assert "tiny.edf" not in text and "2001-09-09" not in text and "tester" in text


@pytest.mark.parametrize("choice, ext", [("Luna annotations (*.annot)", ".annot"),
                                         ("Luna epoch stages (*.eannot)", ".eannot")])
def test_luna_formats_export_from_the_dialog_and_import_back(opened, qtbot, tmp_path,
                                                             monkeypatch, choice, ext):
    from PySide6.QtWidgets import QFileDialog

    from eegvlm_desktop.gui.main_window import HYPNOGRAM_FILTER

    w = opened
    assert f"*{ext}" in HYPNOGRAM_FILTER.split(";;")[0]
    w.doc.session.label([0, 1, 2], "N2")
    w.doc.session.label([3], "R")
    out = tmp_path / f"night{ext}"
    offered = []

    def save_dialog(parent, title, start, filters):
        offered.extend(filters.split(";;"))
        return str(out), choice

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    with qtbot.waitSignal(w.worker.jobDone, timeout=10000,
                          check_params_cb=lambda rid, kind, result: kind == "export"):
        w.actions["export_hypnogram"].trigger()
    assert choice in offered
    first = out.read_text().splitlines()[1 if ext == ".annot" else 0]  # .annot: header row
    assert first.split("\t")[0] == "N2"
    w.doc.session.label(range(10), "UNS")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda parent, title, folder, filters: (str(out), filters))
    w.actions["import_hypnogram"].trigger()
    assert list(w.doc.hypnogram.stages[:5]) == ["N2", "N2", "N2", "R", "UNS"]
    assert f"Imported night{ext}" in w.statusBar().currentMessage()


def test_reopen_restores_labels_and_recent(window, tmp_path, qtbot):
    path = write_edf(tmp_path / "night.edf")
    assert window.open_file(path)
    window.doc.session.label([3], "N3")
    other = write_edf(tmp_path / "other.edf", seed=1)
    assert window.open_file(other)
    assert window.doc.hypnogram.n_scored() == 0
    assert window.open_file(path)
    assert window.doc.hypnogram[3] == "N3"
    assert window.recent.paths()[0].endswith("night.edf")
    assert window.recent_menu.actions()[0].text().endswith("night.edf")


def test_drop_opens_file(window, tiny_edf):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tiny_edf))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                    Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    assert window.doc is not None and window.doc.recording.path == tiny_edf


def test_hide_and_reorder_channels(opened):
    w = opened
    w.signal_view.set_order([3, 0])
    assert w.signal_view._traces.n_traces == 2
    ticks = w.signal_view.plotItem.getAxis("left")._tickLevels[0]
    assert [t[1] for t in ticks] == [w.doc.recording.ch_names[3], w.doc.recording.ch_names[0]]


def test_save_failure_is_shown_and_retried(opened, monkeypatch, errors):
    w = opened
    import eegvlm_desktop.core.scoring.label_store as label_store

    store = w.doc.store
    real_write = label_store.atomic_write_text

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(label_store, "atomic_write_text", disk_full)
    w.label_current("N2")
    assert errors and errors[-1][0] == "Labels NOT saved"
    assert "NOT SAVED" in w.status_saved.text()
    assert w.doc.hypnogram[0] == "N2"  # kept in memory, on the undo stack
    monkeypatch.setattr(label_store, "atomic_write_text", real_write)
    w.label_current("N3")  # the next change retries and saves both
    assert "autosaved" in w.status_saved.text()
    saved = json.loads(store.location.read_text())["hypnogram"]["stages"]
    assert saved[:2] == ["N2", "N3"]


def test_traces_stay_near_their_lane(opened):
    """A huge deflection is clipped at one lane height, never drawn across the page."""
    from eegvlm_desktop.gui.views.signal_view import LANE_CLIP

    sv = opened.signal_view
    sv.change_gain(1000.0)  # absurd gain: every trace wants to fill the page
    for lane in range(sv._traces.n_traces):
        _, y = sv._traces.trace_data(lane)
        assert y.max() <= -lane + LANE_CLIP + 1e-9 and y.min() >= -lane - LANE_CLIP - 1e-9


def test_unreadable_sibling_hypnogram_does_not_block_opening(window, tmp_path):
    path = write_edf(tmp_path / "night.edf")
    (tmp_path / "night-Hypnogram.csv").write_text("onset,duration,stage\n0,15,N2\n15,15,N3\n")
    assert window.open_file(path)
    assert window.doc.hypnogram.n_scored() == 0
    assert any("night-Hypnogram.csv" in n for n in window.doc.notes)


# ---------------------------------------------------------------- two windows on one night
def _second_window(qtbot, tmp_path, name, user):
    from PySide6.QtCore import QSettings

    from eegvlm_desktop.gui.main_window import MainWindow

    w = MainWindow(settings=QSettings(str(tmp_path / f"{name}.ini"),
                                      QSettings.Format.IniFormat),
                   user=user, data_dir=tmp_path / "userdata")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_second_window_is_refused_read_write_and_nothing_is_lost(window, qtbot, tmp_path,
                                                                 errors, tiny_edf,
                                                                 monkeypatch):
    """Window A scores; window B on the same night is offered read-only, never both writing."""
    from eegvlm_desktop.gui import dialogs

    a = window
    b = _second_window(qtbot, tmp_path, "b", user="ben")
    assert a.open_file(tiny_edf)
    for stage in ("W", "N1", "N2"):
        a.label_current(stage)
    asked = []
    monkeypatch.setattr(dialogs, "ask_read_only", lambda p, name, msg: asked.append(msg))
    assert not b.open_file(tiny_edf)  # declined: nothing opened
    assert b.doc is None and "tester" in asked[0] and "read-only" in asked[0]
    monkeypatch.setattr(dialogs, "ask_read_only", lambda p, name, msg: True)
    assert b.open_file(tiny_edf)
    assert b.doc.read_only and "[read-only]" in b.windowTitle()
    assert not b.actions["stage_N2"].isEnabled() and not b.actions["undo"].isEnabled()
    assert not b.actions["import_hypnogram"].isEnabled()
    assert b.banner.isVisible() and "Read-only" in b.banner.label.text()
    assert list(b.doc.hypnogram.stages[:3]) == ["W", "N1", "N2"]
    b.goto_epoch(7)
    b.label_current("N3")  # the action is off; called anyway it is refused, not saved
    assert errors[-1][0] == "Labels cannot be changed here" and b.epoch == 7
    a.label_current("N3")
    a.close()  # gives the lock back...
    assert b.open_file(tiny_edf)  # ...so reopening in B makes it scorable there
    assert b.doc.read_only is None and b.actions["stage_N2"].isEnabled()
    assert b.doc.hypnogram[3] == "N3"  # A's last label, saved before A closed
    b.goto_epoch(4)
    b.label_current("R")
    b.close()
    saved = json.loads(tiny_edf.with_name("tiny.edf.eegvlm.json").read_text())["hypnogram"]
    assert saved["stages"][:5] == ["W", "N1", "N2", "N3", "R"] and saved["stages"][7] == "UNS"
    assert not tiny_edf.with_name("tiny.edf.eegvlm.lock").exists()


def test_lock_is_renewed_and_a_lost_lock_is_shown_not_ignored(opened, errors):
    w = opened
    lock = w.doc.store.lock_path
    assert w._lock_timer.isActive()
    before = json.loads(lock.read_text())["heartbeat"]
    w._renew_lock()  # what the timer does every minute
    assert json.loads(lock.read_text())["heartbeat"] > before
    owner = json.loads(lock.read_text())
    lock.write_text(json.dumps({**owner, "user": "ben", "token": "taken-over"}))
    w._renew_lock()
    assert w.banner.isVisible() and "ben" in w.banner.label.text()
    w.label_current("N2")  # refused loudly; the new owner's labels are not overwritten
    assert errors[-1][0] == "Labels NOT saved" and "ben" in errors[-1][1]
    assert "NOT SAVED" in w.status_saved.text()


# ---------------------------------------------------------------- the screen
def test_window_fits_the_screen_with_the_status_bar_on_it(opened):
    w = opened
    area = w.screen().availableGeometry()
    assert area.contains(w.frameGeometry())
    bar = w.statusBar()
    assert bar.isVisible() and area.contains(bar.mapToGlobal(bar.rect().bottomRight()))
    # Down to 1366 x 768: the docks scroll instead of adding up their panels' heights.
    assert w.minimumSizeHint().height() <= 700 and w.minimumSizeHint().width() <= 1366


def test_saved_geometry_is_restored_only_if_it_fits(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from eegvlm_desktop.gui.main_window import MainWindow
    from eegvlm_desktop.gui.window_geometry import GEOMETRY_KEY

    settings = QSettings(str(tmp_path / "g.ini"), QSettings.Format.IniFormat)
    settings.setValue(GEOMETRY_KEY, [40, 60, 700, 560])
    fits = MainWindow(settings=settings, user="t", data_dir=tmp_path / "d")
    qtbot.addWidget(fits)
    assert (fits.x(), fits.y(), fits.width(), fits.height()) == (40, 60, 700, 560)
    settings.setValue(GEOMETRY_KEY, [0, 0, 1600, 1156])  # saved on a bigger screen
    big = MainWindow(settings=settings, user="t", data_dir=tmp_path / "d")
    qtbot.addWidget(big)
    area = big.screen().availableGeometry()
    assert big.width() < area.width() and big.height() < area.height()
    settings.setValue(GEOMETRY_KEY, "garbage")
    damaged = MainWindow(settings=settings, user="t", data_dir=tmp_path / "d")
    qtbot.addWidget(damaged)
    assert damaged.height() < area.height()
