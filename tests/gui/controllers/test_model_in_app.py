"""The model in the scoring window: staging run, overlays, accept, jump keys, queue, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import write_edf
from tests.gui.test_main_window import key


@pytest.fixture
def opened(window, tmp_path):
    path = write_edf(tmp_path / "night.edf", duration_s=900.0)  # 30 epochs, unscored
    assert window.open_file(path)
    # Explanations are generated on demand here (E); automatic ones would only slow the run.
    window.model.auto_explain = False
    return window


def stage_night(w, qtbot):
    with qtbot.waitSignal(w.model.worker.runFinished, timeout=90000):
        key(qtbot, w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)


def test_staging_fills_the_model_layer_not_the_expert_labels(opened, qtbot):
    w = opened
    before = list(w.doc.hypnogram.stages)
    stage_night(w, qtbot)
    layer = w.model.layer
    assert layer.n_done == 30 and list(w.doc.hypnogram.stages) == before
    assert "epochs/s" in w.model.model_panel.progress_label.text()
    assert w.hypnogram_view.model_layer is layer
    assert len(w.model.review_panel.queue) == 30
    assert w.model.epoch_panel.probs is not None  # the current epoch's probabilities shown


def test_accept_is_an_undoable_logged_expert_action(opened, qtbot):
    w = opened
    stage_night(w, qtbot)
    w.goto_epoch(4)
    model_stage = w.model.layer.stage(4)
    key(qtbot, w, Qt.Key.Key_M)
    hyp = w.doc.hypnogram
    assert hyp[4] == model_stage and hyp.provenance[4] == "accepted" and w.epoch == 5
    audit = [json.loads(line) for line in w.doc.store.audit.path.read_text().splitlines()]
    last = audit[-1]
    assert last["source"] == "accepted" and last["epoch"] == 4 and "model" in last
    # The shipped answer is pooled with cohort stagers, whose card turns night context off.
    assert last["night_context"] is False
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert hyp[4] == "UNS"


def test_next_to_check_jumps_to_disagreement(opened, qtbot):
    w = opened
    stage_night(w, qtbot)
    layer = w.model.layer
    target = 12
    other = next(s for s in ("W", "N2", "N3") if s != layer.stage(target))
    w.doc.session.label([target], other)  # the expert disagrees with the model here
    conf = layer.confidence()
    w.goto_epoch(target - 1)
    key(qtbot, w, Qt.Key.Key_N)
    unsure_before = [i for i in range(target, target) if conf[i] < 0.6]
    assert w.epoch == target or unsure_before
    assert w.model.agreement_panel.isEnabled()


def test_explain_shows_reasoning_and_attention_on_the_traces(opened, qtbot):
    w = opened
    w.goto_epoch(3)
    with qtbot.waitSignal(w.model.worker.explained, timeout=90000):
        key(qtbot, w, Qt.Key.Key_E)
    panel = w.model.epoch_panel
    assert panel.explanation is not None and panel.explanation.steps
    assert panel.current_map is not None
    # Grounded and checked (issue 19): the measured steps say so, the model's are verified.
    from eegvlm_desktop.gui.panels.epoch_panel import STATUS_ROLE

    marks = [panel.steps.item(r).data(STATUS_ROLE) for r in range(1, panel.steps.count())]
    assert marks == ["measured"] * 3 + ["verified"] * 2 and panel.explanation.verified
    rects = w.signal_view.attention_rects()
    assert rects and all(0 <= r.left() <= 30 for r, _ in rects)  # on the page, epoch 3 = 90-120 s
    key(qtbot, w, Qt.Key.Key_O)
    assert not w.signal_view.attention_rects() and not w.model.attention_on
    key(qtbot, w, Qt.Key.Key_O)
    # Moving on clears the old explanation: no attention of another epoch is left behind.
    key(qtbot, w, Qt.Key.Key_Right)
    assert w.model.explanation is None and not w.signal_view.attention_rects()


def test_no_reasoning_for_an_unscorable_epoch(opened, qtbot):
    w = opened
    stage_night(w, qtbot)
    w.model.unscorable = {6: "EEG Fpz-Cz: flat (0.02 µV RMS)"}  # as the quality gate reports
    w.goto_epoch(6)
    qtbot.waitUntil(lambda: w.model.epoch_panel.epoch == 6, timeout=5000)
    with qtbot.assertNotEmitted(w.model.worker.explained, wait=300):
        key(qtbot, w, Qt.Key.Key_E)
    panel = w.model.epoch_panel
    assert panel.stream.toPlainText() == ("No explanation: this epoch is unscorable "
                                          "(EEG Fpz-Cz: flat (0.02 µV RMS)).")
    assert w.model.explanation is None


def test_bad_model_folder_is_a_clear_error(opened, qtbot, errors, tmp_path):
    w = opened
    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "MANIFEST.json").write_text(json.dumps({"format": 1, "files": {}}))
    with qtbot.waitSignal(w.model.worker.modelFailed, timeout=90000):
        w.model.model_panel.add_folder(str(bad))
    assert errors and errors[-1][0] == "Model not loaded"


def test_close_during_a_run_leaves_no_thread(window, qtbot, tmp_path):
    path = write_edf(tmp_path / "long.edf", duration_s=3600.0)
    assert window.open_file(path)
    with qtbot.waitSignal(window.model.worker.progressed, timeout=90000):
        key(qtbot, window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    window.close()
    assert not window.model.worker.running
    assert np.isfinite(window.model.layer.proba).any()


def test_training_night_is_flagged_in_the_agreement_panel(window, tmp_path):
    assert window.open_file(write_edf(tmp_path / "other.edf", duration_s=300.0))
    assert "training data" not in window.model.agreement_panel.caveat.text()
    assert window.open_file(write_edf(tmp_path / "SC4001-copy-PSG.edf", duration_s=300.0))
    assert "training data" in window.model.agreement_panel.caveat.text()


def test_model_layer_toggles_in_the_menu(opened, qtbot):
    w = opened
    view = w.hypnogram_view
    for aid in ("show_model_hypnogram", "show_hypnodensity", "show_disagreements"):
        act = w.actions[aid]
        assert act.isCheckable() and act.isChecked()
        act.trigger()
        assert not act.isChecked()
    assert view._show == {"model": False, "density": False, "ticks": False}


def test_epoch_panel_follows_navigation_once_it_pauses(opened, qtbot):
    w = opened
    for _ in range(3):
        key(qtbot, w, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: w.model.epoch_panel.epoch == w.epoch, timeout=5000)
    assert w.model.review_panel.selected_epoch in (None, w.epoch)


def test_night_context_toggles_what_the_scorer_sees(opened, qtbot):
    w = opened
    act = w.actions["night_context"]
    stage_night(w, qtbot)
    layer = w.model.layer
    # Pooled with the cohort stagers (they read the neighbours already): off by default.
    assert act.isEnabled() and not act.isChecked() and not layer.context_active
    assert "Night context: stage transitions from 840" in w.model.model_panel.card_label.text()
    assert "Answer pooled" in w.model.model_panel.card_label.text()
    w.goto_epoch(7)
    qtbot.waitUntil(lambda: w.model.epoch_panel.epoch == 7, timeout=5000)
    panel = w.model.epoch_panel
    np.testing.assert_allclose(panel.probs, layer.epoch_proba[7])
    # The panel names what the answer was pooled from, each with its own stage.
    text = panel.sources_label.text()
    assert panel.sources_label.isVisibleTo(panel) and text.startswith("Pooled from: EEG-VLM")
    assert "RobustSleepNet" in text and "YASA" in text
    key(qtbot, w, Qt.Key.Key_C)  # on: decoded with the neighbours
    assert act.isChecked() and layer.context_active
    decoded = layer.sequence.smooth(layer.epoch_proba)
    assert list(layer.stages()) == [["W", "N1", "N2", "N3", "R"][k]
                                    for k in decoded.argmax(1)]
    assert panel.status_label.text().startswith("With night context. This epoch alone: ")
    np.testing.assert_allclose(panel.probs, decoded[7])
    key(qtbot, w, Qt.Key.Key_C)
    assert not layer.context_active and "Night context off" in w.statusBar().currentMessage()


def test_a_model_without_night_context_stages_each_epoch_alone(opened, qtbot, tmp_path):
    import shutil
    from pathlib import Path

    w = opened
    src = Path(__file__).resolve().parents[3] / "model_weights" / "default"
    old = tmp_path / "older-model"
    shutil.copytree(src, old)
    manifest = json.loads((old / "MANIFEST.json").read_text())
    del manifest["sequence"]  # a folder saved before night context existed
    (old / "MANIFEST.json").write_text(json.dumps(manifest))
    with qtbot.waitSignal(w.model.worker.modelLoaded, timeout=90000):
        w.model.model_panel.add_folder(str(old))
    assert not w.actions["night_context"].isEnabled()
    stage_night(w, qtbot)
    layer = w.model.layer
    assert layer.sequence is None and not layer.context_active
    np.testing.assert_array_equal(layer.proba, layer.epoch_proba)
    assert "Night context" not in w.model.model_panel.card_label.text()
