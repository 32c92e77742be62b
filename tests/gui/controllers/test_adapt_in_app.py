"""Adapt to this recording from the window: new model, night restaged, labels untouched."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eegvlm_desktop.core.staging.adapt import AdaptSettings
from tests.conftest import REPO, write_edf

STAGES10 = ["W", "W", "N1", "N2", "N2", "N3", "N3", "N2", "R", "R"]


@pytest.fixture
def labelled(window, models, tmp_path):
    assert window.open_file(write_edf(tmp_path / "night.edf", duration_s=1200.0))
    window.model.auto_explain = False
    window.doc.session.label(range(30), STAGES10 * 3)
    return window, models


def kind_is(kind):
    return lambda rid, k, result: k == kind


def test_adapt_restages_the_night_and_keeps_the_labels(labelled, qtbot, monkeypatch):
    w, models = labelled
    # Weak pulls, so that the adapted model surely differs from its parent on this noise
    # night (the shipped strengths often, rightly, keep the parent).
    monkeypatch.setattr("eegvlm_desktop.ml.adapt.AdaptSettings",
                        lambda: AdaptSettings(strengths=((0.1, 0.1),)))
    with qtbot.waitSignal(w.model.worker.runFinished, timeout=180000):
        w.model.run_night()
    before = w.model.layer.proba.copy()
    labels = [w.doc.hypnogram[e] for e in range(w.doc.hypnogram.n_epochs)]
    loop = w.model.loop
    with qtbot.waitSignal(w.model.worker.runFinished, timeout=300000):
        with qtbot.waitSignal(loop.jobs.jobDone, timeout=300000,
                              check_params_cb=kind_is("adapt")):
            w.model.finetune_panel.adapt_button.click()
    new = models / "default-adapted-1"
    card = json.loads((new / "MANIFEST.json").read_text())["card"]
    assert card["parent_model"]["name"] == "default"
    assert card["metrics"]["before"]["n_epochs"] == card["metrics"]["after"]["n_epochs"] == 6
    assert card["adaptation"]["data"]["n_epochs"] == 24
    assert w.model.model_panel.folder() == str(new)  # switched to it
    after = w.model.layer.proba
    assert np.isfinite(after).all() and not np.allclose(before, after)  # restaged
    assert [w.doc.hypnogram[e] for e in range(w.doc.hypnogram.n_epochs)] == labels
    log = w.model.finetune_panel.log.toPlainText()
    assert "Held-out accuracy" in log and "default-adapted-1" in log
    assert w.model.model_panel.model_combo.findText("default") >= 0  # one click back


def test_cancel_adapt_saves_nothing(labelled, qtbot):
    w, models = labelled
    loop = w.model.loop
    loop.start_adapt()
    loop.cancel()
    qtbot.waitUntil(loop.jobs.idle, timeout=180000)
    assert sorted(p.name for p in models.iterdir()) == ["default"]
    assert "cancelled" in w.model.finetune_panel.log.toPlainText()


def test_adapt_without_labels_says_so(window, qtbot, tmp_path):
    panel = window.model.model_panel
    panel.add_folder(str(REPO / "model_weights" / "default"))
    assert window.open_file(write_edf(tmp_path / "night.edf", duration_s=300.0))
    assert window.model.loop.start_adapt() is None
    assert "Nothing to adapt to" in window.model.finetune_panel.log.toPlainText()
