"""The model's side panels: the epoch's explanation, the review queue, model-vs-expert metrics."""
from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from eegvlm_desktop.core.picture.rendering import EpochSignals, render_epoch
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.metrics import stage_metrics
from eegvlm_desktop.core.staging.model_layer import ModelLayer
from eegvlm_desktop.gui.panels.agreement_panel import CAVEAT, NO_DATA, AgreementPanel
from eegvlm_desktop.gui.panels.epoch_panel import EpochPanel
from eegvlm_desktop.gui.views.epoch_image import display_map
from eegvlm_desktop.gui.panels.review_panel import ReviewPanel

PROBS = np.array([0.03, 0.18, 0.71, 0.06, 0.02])


def explanation(stage: str | None = "N2", probs: np.ndarray = PROBS, stop: str = "eos"):
    """An Explanation-shaped object (plain data, as the worker sends it): 4 steps + answer."""
    steps = ["1. Background rhythm: delta 38 %, theta 27 %; the dominant band is delta.",
             "2. Graphoelements: 1 sleep spindle, 1 K-complex-like isolated slow wave.",
             "3. Eye movements: none. Chin EMG is 0.92 times the night's median.",
             "4. AASM rule for N2: spindles or K-complexes, slow waves under 20 %.",
             f"Stage: {stage}"]
    rng = np.random.default_rng(0)
    maps = rng.random((len(steps), 7, 7)).astype(np.float32)
    return SimpleNamespace(text="\n".join(steps), steps=steps, stage=stage, probs=probs,
                           step_maps=maps, answer_map=maps.mean(0) + 1.0,
                           direct_map=maps[0] * 2, stop_reason=stop, token_steps=[])


def show(qtbot, widget, width=420, height=800):
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def epoch_panel(qtbot):
    return show(qtbot, EpochPanel())


# ---------------------------------------------------------------------------- EpochPanel
def test_header_shows_model_stage_probabilities_and_expert(epoch_panel):
    p = epoch_panel
    p.set_epoch(9, "N3", PROBS)
    assert p.epoch_label.text() == "Epoch 10"  # shown 1-based, like the status bar
    assert p.stage_label.text() == "N2" and p.expert_label.text() == "N3"
    assert [p.pct_labels[s].text() for s in STAGES] == ["3 %", "18 %", "71 %", "6 %", "2 %"]
    assert p.bars["N2"].value() == 710
    assert p.status_label.isHidden()
    p.set_epoch(3, "UNS", None)
    assert p.status_label.text() == "not scored by the model yet"
    assert p.status_label.isVisibleTo(p)
    assert p.stage_label.text() == "–" and p.expert_label.text() == "–"
    assert p.pct_labels["N2"].text() == "" and p.bars["N2"].value() == 0
    p.set_epoch(3, "W", np.full(5, np.nan))  # a NaN row of the layer: not scored either
    assert p.probs is None and p.status_label.isVisibleTo(p)


def test_header_names_the_pooled_sources_and_unscorable_epochs(epoch_panel):
    p = epoch_panel
    vlm, rsn = np.array([.9, .05, .03, .01, .01]), np.array([.02, .08, .1, .78, .02])
    p.set_epoch(4, "N3", PROBS, sources={"vlm": vlm, "rsn": rsn, "yasa": rsn})
    assert p.sources_label.isVisibleTo(p)
    assert p.sources_label.text() == ("Pooled from: EEG-VLM image W 90 % · RobustSleepNet N3 "
                                      "78 % · YASA N3 78 %")
    p.set_epoch(5, "N2", None, unscorable="EEG C3-A1: flat (0.02 µV RMS)")
    assert p.stage_label.text() == "–" and not p.sources_label.isVisibleTo(p)
    assert p.status_label.text() == "Unscorable: EEG C3-A1: flat (0.02 µV RMS). No stage is given."
    assert "b00020" in p.status_label.styleSheet()
    p.clear()
    assert not p.sources_label.isVisibleTo(p)


def test_image_and_attention_overlay(epoch_panel):
    p = epoch_panel
    t = np.arange(3000) / 100.0
    eeg = 40 * np.sin(2 * np.pi * 1.5 * t)
    image = render_epoch(EpochSignals({"eeg_central": eeg, "eog": eeg / 2, "emg": eeg / 10}))
    p.set_image(image)
    assert p.image_view.image.width() == 224 and p.image_view.image.height() == 224
    att = np.zeros((7, 7))
    att[1, 5] = 3e-4  # tiny raw weights: normalised for display
    p.set_attention(att)
    assert p.current_map is att
    shown = display_map(att)
    assert shown.shape == (224, 224) and shown.max() == pytest.approx(1.0)
    row, col = np.unravel_index(shown.argmax(), shown.shape)
    assert row // 32 == 1 and col // 32 == 5  # the peak stays over its patch
    assert display_map(np.ones((7, 7))).max() == 0  # a flat map shows nothing
    p.grab()  # paints image + overlay without error
    with pytest.raises(ValueError, match="att_map"):
        p.set_attention(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="image"):
        p.set_image(np.zeros((224, 224), np.uint8))
    p.set_image(None)
    p.set_attention(None)
    assert p.image_view.image is None and p.current_map is None


def test_opacity_and_overlay_signals(epoch_panel, qtbot):
    p = epoch_panel
    with qtbot.waitSignal(p.opacityChanged, check_params_cb=lambda v: v == 0.25):
        p.set_opacity(0.25)
    assert p.opacity == 0.25 and p.image_view.opacity == 0.25
    assert p.opacity_label.text() == "25 %"
    with qtbot.waitSignal(p.opacityChanged, check_params_cb=lambda v: v == 0.8):
        p.opacity_slider.setValue(80)  # the user drags the slider
    with qtbot.assertNotEmitted(p.opacityChanged):
        p.set_opacity(0.8)  # no change, no signal
    with qtbot.waitSignal(p.overlayToggled, check_params_cb=lambda on: on is False):
        p.set_overlay_visible(False)
    assert not p.overlay_visible and not p.image_view.overlay
    assert not p.opacity_slider.isEnabled()
    with qtbot.waitSignal(p.overlayToggled, check_params_cb=lambda on: on is True):
        qtbot.mouseClick(p.overlay_check, Qt.MouseButton.LeftButton)
    assert p.overlay_visible


def test_reasoning_streams_then_shows_steps(epoch_panel, qtbot):
    p = epoch_panel
    assert p.explain_button.isEnabled() and p.cancel_button.isHidden()
    with qtbot.waitSignal(p.explainRequested):
        qtbot.mouseClick(p.explain_button, Qt.MouseButton.LeftButton)
    p.start_reasoning()
    assert p.reasoning and p.reason_status.text() == "reasoning…"
    assert p.cancel_button.isVisibleTo(p) and not p.explain_button.isEnabled()
    text = explanation().text
    for n in range(0, len(text) + 1, 7):  # token by token
        p.stream_text(text[:n])
    p.stream_text(text)
    assert p.stream.toPlainText() == text
    p.stream_text("1. Rewritten")  # not a continuation: replaced, not appended
    assert p.stream.toPlainText() == "1. Rewritten"
    with qtbot.waitSignal(p.cancelRequested):
        qtbot.mouseClick(p.cancel_button, Qt.MouseButton.LeftButton)
    ex = explanation()
    with qtbot.waitSignal(p.stepSelected, check_params_cb=lambda k: k == -1):
        p.set_explanation(ex)  # the whole answer is selected by default
    assert not p.reasoning and p.cancel_button.isHidden() and p.explain_button.isEnabled()
    assert p.steps.isVisibleTo(p) and p.stream.isHidden()
    rows = [p.steps.item(r).text() for r in range(p.steps.count())]
    assert rows[0] == "Whole answer: N2"
    assert [r.replace("\u00a0", " ") for r in rows[1:]] == ex.steps
    assert rows[-1] == "Stage: N2"
    assert p.current_step == -1 and p.current_map is ex.answer_map
    p.start_reasoning()  # a new run clears the old steps
    assert p.steps.count() == 0 and p.stream.toPlainText() == "" and p.explanation is None


def test_clicking_a_step_shows_its_map(epoch_panel, qtbot):
    p = epoch_panel
    ex = explanation()
    p.set_explanation(ex)

    def click_row(row):
        rect = p.steps.visualItemRect(p.steps.item(row))
        qtbot.mouseClick(p.steps.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    with qtbot.waitSignal(p.stepSelected, check_params_cb=lambda k: k == 1):
        click_row(2)  # row 0 is the whole answer, row k + 1 is step k
    assert p.current_step == 1 and np.array_equal(p.current_map, ex.step_maps[1])
    assert p.map_label.text() == "map: line 2"
    with qtbot.waitSignal(p.stepSelected, check_params_cb=lambda k: k == 4):
        click_row(5)  # the 'Stage: N2' line has its own map
    assert np.array_equal(p.current_map, ex.step_maps[4])
    with qtbot.waitSignal(p.stepSelected, check_params_cb=lambda k: k == -1):
        click_row(0)
    assert p.current_map is ex.answer_map
    with qtbot.waitSignal(p.stepSelected, check_params_cb=lambda k: k == 3):
        p.select_step(3)
    with pytest.raises(IndexError):
        p.select_step(9)


def test_note_when_reasoning_and_direct_answer_differ(epoch_panel):
    p = epoch_panel
    p.set_explanation(explanation("N2"))
    assert p.note.isHidden()
    p.set_explanation(explanation("N3"))
    assert p.note.isVisibleTo(p)
    assert p.note.text() == "The reasoning ends in N3, but the direct answer is N2 (71 %)."
    p.set_explanation(explanation(None, stop="cancelled"))
    assert "names no stage" in p.note.text() and "Cancelled" in p.note.text()
    assert p.reason_status.text() == "cancelled"


def test_clear_resets_everything_but_overlay_settings(epoch_panel):
    p = epoch_panel
    p.set_epoch(4, "N2", PROBS)
    p.set_image(np.zeros((224, 224, 3), np.uint8))
    p.set_opacity(0.3)
    p.start_reasoning()
    p.set_explanation(explanation())
    p.set_explain_enabled(False)
    p.clear()
    assert p.epoch is None and p.epoch_label.text() == "No epoch"
    assert p.image_view.image is None and p.current_map is None
    assert p.explanation is None and p.steps.count() == 0 and p.note.isHidden()
    assert p.status_label.text() == "not scored by the model yet"
    assert p.opacity == 0.3 and not p.explain_button.isEnabled()
    p.set_explain_enabled(True)
    assert p.explain_button.isEnabled()


# ---------------------------------------------------------------------------- ReviewPanel
def small_layer():
    """8 epochs: the model disagrees with the expert on 1, 4 and 6 and has not run on 7."""
    layer = ModelLayer(8, "test")
    rows = [("W", 0.80, "N1", 0.14), ("N1", 0.50, "N2", 0.35), ("N2", 0.90, "N1", 0.04),
            ("N2", 0.60, "N3", 0.30), ("N3", 0.40, "N2", 0.35), ("N3", 0.85, "N2", 0.10),
            ("R", 0.91, "W", 0.05)]
    proba = np.zeros((len(rows), 5))
    for i, (top, p, second, q) in enumerate(rows):
        proba[i] = (1 - p - q) / 3  # the other three share the rest
        proba[i, STAGES.index(top)] = p
        proba[i, STAGES.index(second)] = q
    layer.set_proba(range(len(rows)), proba)
    expert = ["W", "N2", "N2", "N2", "N2", "N3", "W", "N2"]
    return layer, expert


@pytest.fixture
def review(qtbot):
    panel = show(qtbot, ReviewPanel(), height=500)
    layer, expert = small_layer()
    panel.set_data(layer, expert)
    return panel, layer, expert


def cell(panel, row, col):
    return panel.table.model().index(row, col).data()


def test_queue_lists_disagreements_first_then_by_confidence(review):
    panel, layer, expert = review
    assert panel.queue == layer.review_queue(expert, "disagreement") == [4, 1, 6, 3, 0, 5, 2]
    assert panel.table.model().rowCount() == 7
    # epoch 5 (0-based 4): model N3 at 40 %, expert N2
    assert [cell(panel, 0, c) for c in range(6)] == ["5", "0:02:00", "N3", "40 %", "N2",
                                                     "N3 40%, N2 35%"]
    assert "expert says N2" in panel.table.model().index(0, 5).data(Qt.ItemDataRole.ToolTipRole)
    assert panel.progress.text() == "Reviewed 0 of 7 · 3 disagreements"
    panel.order_combo.setCurrentText("Least confident first")
    assert panel.order == "uncertainty"
    assert panel.queue == layer.review_queue(expert, "uncertainty") == [4, 1, 3, 0, 5, 2, 6]
    assert panel.progress.text() == "Reviewed 0 of 7"
    panel.set_order("disagreement")
    assert panel.order_combo.currentText() == "Disagreements first"
    with pytest.raises(ValueError, match="order"):
        panel.set_order("random")


def test_clock_time_from_recording_start(qtbot):
    panel = show(qtbot, ReviewPanel())
    layer, expert = small_layer()
    panel.set_data(layer, expert, origin=datetime(2024, 1, 1, 23, 59, 30))
    row = panel.queue.index(1)
    assert cell(panel, row, 1) == "00:00:00"  # epoch 1 starts 30 s after 23:59:30


def test_review_progress_and_next_in_queue(review):
    panel, layer, expert = review
    q = panel.queue  # [4, 1, 6, 3, 0, 5, 2]
    assert panel.next_epoch(None) == 4
    assert panel.next_epoch(4) == 1
    panel.mark_reviewed(1)
    panel.mark_reviewed(1)  # counted once
    panel.mark_reviewed(7)  # not in the queue (the model has not scored it): ignored
    assert panel.progress.text().startswith("Reviewed 1 of 7")
    assert panel.reviewed == {1}
    assert cell(panel, q.index(1), 0) == "2 ✓"
    assert panel.next_epoch(4) == 6  # skips the reviewed entry
    assert panel.next_epoch(2) == 4  # wraps to the top after the last entry
    assert panel.next_epoch(7) == 4  # not queued: from the top
    for ep in q:
        panel.mark_reviewed(ep)
    assert panel.next_epoch(4) is None
    assert panel.progress.text().startswith("Reviewed 7 of 7")
    panel.set_data(layer, expert, keep_reviewed=True)
    assert panel.reviewed == set(q)
    panel.set_data(layer, expert)  # a new run: the count starts afresh
    assert panel.reviewed == set() and panel.progress.text().startswith("Reviewed 0 of 7")


def test_refresh_updates_labels_but_keeps_the_order(review):
    panel, layer, expert = review
    order = panel.queue
    expert = list(expert)
    expert[4] = "N3"  # the scorer agrees with the model now
    panel.refresh(expert)
    assert panel.queue == order
    assert cell(panel, 0, 4) == "N3"
    assert "2 disagreements" in panel.progress.text()
    panel.order_combo.setCurrentText("Least confident first")
    panel.order_combo.setCurrentText("Disagreements first")  # re-sorting uses the new labels
    assert panel.queue[:2] == [1, 6]


def test_click_and_enter_activate_an_epoch_select_does_not(review, qtbot):
    panel, _, _ = review
    model = panel.table.model()
    rect = panel.table.visualRect(model.index(2, 0))
    with qtbot.waitSignal(panel.epochActivated, check_params_cb=lambda ep: ep == 6):
        qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.assertNotEmitted(panel.epochActivated):
        panel.select_epoch(3)
    assert panel.selected_epoch == 3
    with qtbot.waitSignal(panel.epochActivated, check_params_cb=lambda ep: ep == 3):
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    panel.set_order("uncertainty")  # a rebuild keeps the selected epoch selected
    assert panel.selected_epoch == 3
    panel.select_epoch(7)  # not in the queue
    assert panel.selected_epoch is None


def test_a_night_of_epochs_builds_fast(qtbot):
    import time

    rng = np.random.default_rng(1)
    n = 1000
    layer = ModelLayer(n)
    layer.set_proba(range(n), rng.dirichlet(np.ones(5), n))
    expert = list(rng.choice(STAGES, n))
    panel = show(qtbot, ReviewPanel(), height=500)
    t0 = time.perf_counter()
    panel.set_data(layer, expert)
    panel.select_epoch(panel.queue[-1])
    assert time.perf_counter() - t0 < 2.0  # generous: the CPUs are shared
    assert panel.table.model().rowCount() == n
    assert ReviewPanel().progress.text() == "No epochs scored by the model yet."


# ---------------------------------------------------------------------------- AgreementPanel
def test_agreement_shows_metrics_table_and_confusion(qtbot):
    panel = show(qtbot, AgreementPanel(), height=560)
    assert panel.empty.text() == NO_DATA and panel.empty.isVisibleTo(panel)
    assert panel.body.isHidden() and panel.caveat.text() == CAVEAT
    expert = ["W"] * 4 + ["N1"] * 2 + ["N2"] * 6 + ["N3"] * 3 + ["R"] * 3 + ["UNS"]
    model = ["W"] * 3 + ["N1"] + ["N2"] * 2 + ["N2"] * 5 + ["N3"] + ["N3"] * 3 + ["R"] * 3 \
        + ["N2"]
    m = stage_metrics(expert, model)
    panel.update_metrics(m)
    assert panel.empty.isHidden() and panel.body.isVisibleTo(panel)
    assert panel.values["accuracy"].text() == f"{m['accuracy'] * 100:.1f} %"
    assert panel.values["kappa"].text() == f"{m['kappa']:.2f}"
    assert panel.values["macro_f1"].text() == f"{m['macro_f1']:.2f}"
    assert panel.values["n_epochs"].text().startswith("18")
    assert "1 unscored/artefact left out" in panel.values["n_epochs"].text()
    n1 = STAGES.index("N1")
    assert panel.f1_table.item(0, n1).text() == "0.00"  # N1 never right
    assert panel.f1_table.item(1, STAGES.index("N2")).text() == "6"
    for r in range(5):
        for c in range(5):
            assert panel.confusion.item(r, c).text() == str(m["confusion"][r][c])
    white = panel.confusion.item(0, 4).background().color()  # 0 epochs: unshaded
    assert white.name() == "#ffffff"
    full = panel.confusion.item(4, 4).background().color()  # R: all agree, darkest
    assert full.lightness() < panel.confusion.item(0, 0).background().color().lightness()
    panel.update_metrics(None)
    assert panel.empty.isVisibleTo(panel) and panel.body.isHidden()


def test_panels_do_not_import_torch():
    """gui/ shows the model's output only: importing the panels must not pull in torch."""
    import os
    import subprocess
    import sys

    code = ("import sys; import eegvlm_desktop.gui.panels.epoch_panel, eegvlm_desktop.gui.panels.review_panel, "
            "eegvlm_desktop.gui.panels.agreement_panel; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_unverified_steps_are_marked_and_measured_ones_say_so(epoch_panel, qtbot):
    """A step that disagrees with the measured evidence is red with its reason (issue 19)."""
    from eegvlm_desktop.core.picture.cot import format_answer, reasoning_steps
    from eegvlm_desktop.core.picture.evidence import EpochEvidence
    from eegvlm_desktop.core.picture.verify import verify_reasoning
    from eegvlm_desktop.gui.panels.epoch_panel import STATUS_ROLE, STEP_MARKS

    ev = EpochEvidence(epoch=4, eeg_channel="C3-A1",
                       band_powers={"delta": 0.6, "theta": 0.2, "alpha": 0.1, "sigma": 0.06,
                                    "beta": 0.04},
                       eeg_rms_uv=20.0, n_spindles=2, spindle_density=4.0, n_slow_waves=1,
                       slow_wave_percent=4.0, n_k_complexes=0, n_rems=None,
                       eog_slow_power=None, emg_rms_uv=None, emg_relative=None)
    steps = format_answer(reasoning_steps(ev, "N2"), "N2").split("\n")
    steps[1] = steps[1].replace("2 sleep spindles (4.0", "0 sleep spindles (0.0")
    ex = explanation("N2")
    ex.steps, ex.text = steps, "\n".join(steps)
    ex.checks = verify_reasoning(steps, ev, measured=1)  # line 1 given as measured
    with qtbot.waitSignal(epoch_panel.stepSelected, check_params_cb=lambda k: k == -1):
        epoch_panel.set_explanation(ex)
    rows = [epoch_panel.steps.item(r) for r in range(1, epoch_panel.steps.count())]
    status = [r.data(STATUS_ROLE) for r in rows]
    assert status == ["measured", "unverified", "verified", "verified", "verified"]
    bad = rows[1]
    assert "\n\u2717 unverified: spindles 0 stated, 2 measured" in bad.text()
    assert bad.background().color().name() == STEP_MARKS["unverified"][2]
    assert bad.foreground().color().name() == STEP_MARKS["unverified"][1]
    assert rows[0].text().endswith("\u25b8 measured: the app's detectors on this epoch")
    assert rows[2].text().endswith("\u2713 verified against the measured evidence")
    assert rows[0].background().style() == Qt.BrushStyle.NoBrush  # only the bad one is red
    assert "Line 2 disagrees with the measured evidence" in epoch_panel.note.text()
    assert epoch_panel.note.isVisibleTo(epoch_panel)
    with qtbot.waitSignal(epoch_panel.stepSelected, check_params_cb=lambda k: k == 1):
        epoch_panel.steps.setCurrentRow(2)  # the unverified step still shows its map
    np.testing.assert_array_equal(epoch_panel.current_map, ex.step_maps[1])


def test_an_explanation_without_evidence_says_it_is_not_verified(epoch_panel, qtbot):
    ex = explanation("N2")
    ex.checks = []
    with qtbot.waitSignal(epoch_panel.stepSelected):
        epoch_panel.set_explanation(ex)
    assert "Not verified: no measured evidence" in epoch_panel.note.text()
