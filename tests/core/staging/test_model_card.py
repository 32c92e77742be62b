"""Model folders and card summaries read without torch."""
from __future__ import annotations

import json

import pytest

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.model_card import (card_summary, list_model_folders,
                                                    read_manifest_json, shipped_card, trained_on)
from eegvlm_desktop.core.staging.sequence import StageSequenceModel

from tests.conftest import REPO


def test_lists_the_shipped_default_first(tmp_path):
    assert list_model_folders()[0].name == "default"
    (tmp_path / "zeta").mkdir()
    (tmp_path / "zeta" / "MANIFEST.json").write_text("{}")
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "MANIFEST.json").write_text("{}")
    (tmp_path / "not-a-model").mkdir()
    assert [p.name for p in list_model_folders(tmp_path)] == ["default", "zeta"]
    assert list_model_folders(tmp_path / "missing") == []


def test_summary_of_the_shipped_card_names_its_numbers():
    manifest = read_manifest_json(REPO / "model_weights" / "default")
    text = card_summary(manifest)
    metrics = manifest["card"]["metrics"]
    assert "default" in text and "SC4001" in text and "cross-validation" in text
    for key in ("eegvlm", "eegvlm_context_calibrated", "yasa"):
        assert f"{100 * metrics[key]['accuracy']:.1f} %" in text
    assert "softened by temperature" in text  # the shipped night context is calibrated


def test_summary_shows_a_cv_rerun_with_and_without_night_context():
    m = {"accuracy": 0.8, "macro_f1": 0.7, "kappa": 0.75}
    card = {"name": "x", "metrics": {"eegvlm": m, "split": "5-fold", "cv_rerun": {
        "split": "blocked <5>-fold", "device": "cpu", "eegvlm": m,
        "eegvlm_context": {**m, "accuracy": 0.9}}}}
    text = card_summary({"card": card, "channels": ["EEG"]})
    assert "Re-run, each epoch alone: accuracy 80.0 %" in text
    assert "Re-run, with night context: accuracy 90.0 %" in text
    assert "blocked &lt;5&gt;-fold (on cpu)" in text


def test_summary_without_metrics_says_so_and_escapes():
    text = card_summary({"card": {"name": "<b>x</b>"}, "channels": ["EEG"]})
    assert "&lt;b&gt;" in text and "No held-out accuracy" in text
    assert "Augmented" not in text


def test_summary_says_when_training_was_augmented():
    card = {"name": "x", "training": {"settings": {"augment": 3}}}
    assert "Augmented: 3 variants per epoch" in card_summary({"card": card})
    tuned = card_summary({"card": {**card, "fine_tuning": {"settings": {}}}})
    assert "Parent augmented: 3 variants" in tuned and "fine-tuned on the reviewed" in tuned


def test_unreadable_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(EEGVLMError, match="not a model folder"):
        read_manifest_json(tmp_path)
    (tmp_path / "MANIFEST.json").write_text("{broken")
    with pytest.raises(EEGVLMError, match="cannot be read"):
        read_manifest_json(tmp_path)
    (tmp_path / "MANIFEST.json").write_text(json.dumps([1]))
    with pytest.raises(EEGVLMError, match="JSON object"):
        read_manifest_json(tmp_path)


def test_training_night_is_recognised_by_name_or_record_id():
    manifest = read_manifest_json(REPO / "model_weights" / "default")
    assert trained_on(manifest, "/x/SC4001-example-PSG.edf")  # the bundled example
    assert trained_on(manifest, "SC4001E0-PSG.edf")
    assert not trained_on(manifest, "SC4002E0-PSG.edf")
    assert not trained_on(manifest, "excerpt3.edf")
    assert not trained_on({}, "SC4001E0-PSG.edf")


def _cv_run(settings: dict, renderer: str = "2", folds=(0, 1, 2, 3, 4)) -> dict:
    m = {"accuracy": 0.85, "macro_f1": 0.8, "kappa": 0.8, "per_stage_f1": {}, "n_epochs": 841,
         "confusion": [[188, 0, 0, 0, 0], [0, 58, 0, 0, 0], [0, 0, 250, 0, 0],
                       [0, 0, 0, 220, 0], [0, 0, 0, 0, 125]]}
    per_fold = [{"fold": f, "first_epoch": 0, "last_epoch": 1, "epochs": 168,
                 "eegvlm": m, "eegvlm_context": m} for f in folds]
    return {"k": 5, "folds": list(folds), "epochs": 841, "recording": "SC4001E0-PSG.edf", "training_settings": settings,
            "renderer_version": renderer, "device": "cpu", "settings_differ_from_card": False,
            "eegvlm": m, "eegvlm_context": {**m, "accuracy": 0.86}, "yasa": m,
            "per_fold": per_fold}


def test_shipped_card_quotes_only_a_complete_cv_of_the_same_recipe():
    settings = {"preset": "fast", "epochs": 30}
    manifest = {"renderer_version": "2", "n_parameters": 5,
                "card": {"name": "default", "n_examples": 841,
                         "training_data": {"recordings": ["SC4001E0-PSG.edf"]},
                         "training": {"settings": settings, "history": [{"loss": 0.3}],
                                      "seconds": 9.0}}}
    config = json.loads((REPO / "model_weights" / "default" / "config.json").read_text())
    card = shipped_card(manifest, config, _cv_run(settings), "cv.json", {"W": 188}, "cpu")
    assert card["metrics"]["eegvlm_context"]["accuracy"] == 0.86
    assert card["metrics"]["source"] == "cv.json" and "5-fold" in card["metrics"]["split"]
    assert card["architecture"].startswith("EEG-VLM") and "patch 32" in card["architecture"]
    assert "ODC-By" in card["training_data"]["recordings"][0]
    assert trained_on({"card": card}, "SC4001-example-PSG.edf")
    seq = StageSequenceModel.fit(["W", "W", "N1", "N2"]).with_temperature(2.5)
    text = card_summary({"card": card, "sequence": seq.to_dict()})
    assert "With night context: accuracy 86.0 %" in text and "YASA on the same epochs" in text
    assert "softened by temperature 2.50" in text
    bad = [(_cv_run({**settings, "epochs": 12}), "recipe"), (_cv_run(settings, "1"), "renderer"),
           (_cv_run(settings, folds=(0, 1)), "not every fold")]
    for cv, why in bad:
        with pytest.raises(EEGVLMError, match=why):
            shipped_card(manifest, config, cv, "cv.json", {}, "cpu")
    no_yasa = _cv_run(settings)
    del no_yasa["yasa"]
    with pytest.raises(EEGVLMError, match="'yasa'"):
        shipped_card(manifest, config, no_yasa, "cv.json", {}, "cpu")


def test_pooled_model_card_leads_with_unseen_recordings_and_licences():
    from eegvlm_desktop.core.staging.model_card import context_default, fusion_lines

    man = {"card": {"name": "m"}, "fusion": {
        "weights": {"vlm": 0.12, "rsn": 0.4, "yasa": 0.69}, "night_context": False,
        "sources": {"rsn": "RobustSleepNet: MIT, 943 nights"}, "inputs": "any EEG",
        "generalization": {"default": {"accuracy": 0.885, "macro_f1": 0.857, "kappa": 0.848},
                           "yasa": {"accuracy": 0.824, "macro_f1": 0.777, "kappa": 0.768},
                           "split": "leave-one-recording-out"}}}
    lines = fusion_lines(man)
    assert "image model 0.12, RobustSleepNet 0.40, YASA 0.69" in lines[0]
    assert "night context off by default" in lines[0]
    assert any("MIT, 943 nights" in ln for ln in lines)
    assert any(ln.startswith("Inputs: any EEG") for ln in lines)
    assert any("never saw: accuracy 88.5 %" in ln and "YASA there: accuracy 82.4 %" in ln
               for ln in lines)
    assert context_default(man) is False
    assert context_default({"card": {}}) is True and fusion_lines({"card": {}}) == []
    summary = card_summary(man)
    assert summary.index("Answer pooled") < summary.index("never saw")
