"""Close the loop from the window: export the expert's labels, fine-tune, new model listed."""
from __future__ import annotations

import json

import pytest

from tests.conftest import write_edf


@pytest.fixture
def scored(window, models, tmp_path):
    assert window.model.model_panel.folder() == str(models / "default")
    assert window.open_file(write_edf(tmp_path / "night.edf", duration_s=300.0))
    window.model.auto_explain = False
    window.doc.session.label(range(10), ["W", "W", "N1", "N2", "N2", "N3", "N3", "N2", "R", "R"])
    return window, models


def kind_is(kind):
    return lambda rid, k, result: k == kind


def test_export_then_finetune_adds_a_model(scored, qtbot, tmp_path):
    w, models = scored
    loop = w.model.loop
    out = tmp_path / "export1"
    with qtbot.waitSignal(loop.jobs.jobDone, timeout=120000, check_params_cb=kind_is("export")):
        loop.export_dataset(str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_examples"] == 10 and sum(manifest["counts"].values()) == 10
    assert str(out) in w.model.finetune_panel.folder_list()  # offered for fine-tuning
    assert "night.edf" not in (out / "manifest.json").read_text()  # de-identified
    with qtbot.waitSignal(loop.jobs.jobDone, timeout=120000,
                          check_params_cb=kind_is("finetune")):
        loop.start_finetune({"folders": [str(out)], "name": "default-ft", "epochs": 1,
                             "freeze_vision": True, "holdout": True})
    card = json.loads((models / "default-ft" / "MANIFEST.json").read_text())["card"]
    assert card["parent_model"]["name"] == "default"
    # Held out: the last 2 of the 10 epochs measured before/after, never fine-tuned on.
    assert card["metrics"]["before"]["n_epochs"] == card["metrics"]["after"]["n_epochs"] == 2
    assert card["n_examples"] == 8
    assert "Held-out accuracy" in w.model.finetune_panel.log.toPlainText()
    combo = w.model.model_panel.model_combo
    assert combo.findText("default-ft") >= 0  # the new model is in the list
    w.model.model_panel.add_folder(str(models / "default-ft"))
    assert "Fine-tuned from" in w.model.model_panel.card_label.text()
    assert not w.model.finetune_panel.cancel_button.isEnabled()


def test_cancel_a_finetune_saves_nothing(scored, qtbot, tmp_path):
    w, models = scored
    loop = w.model.loop
    out = tmp_path / "export2"
    with qtbot.waitSignal(loop.jobs.jobDone, timeout=120000, check_params_cb=kind_is("export")):
        loop.export_dataset(str(out))
    with qtbot.waitSignal(loop.jobs.jobProgressed, timeout=120000):
        loop.start_finetune({"folders": [str(out)], "name": "never", "epochs": 50,
                             "freeze_vision": False})
    loop.cancel()
    qtbot.waitUntil(loop.jobs.idle, timeout=120000)
    assert not (models / "never").exists()
    assert "cancelled" in w.model.finetune_panel.log.toPlainText()
