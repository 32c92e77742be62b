"""The adaptation's result in words (the Fine-tune dock's log), from the new model's card."""
from __future__ import annotations

import json

from eegvlm_desktop.ml.finetune.jobs import guard_line


def _folder(tmp_path, adaptation):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"card": {"adaptation": adaptation}}),
                                            encoding="utf-8")
    return str(tmp_path)


def test_re_weighting_names_each_stagers_weight_before_and_after(tmp_path):
    line = guard_line(_folder(tmp_path, {
        "guard": {"chosen": "stagers=0.01", "n_epochs": 24, "cv_log_loss": {"parent": 1.0}},
        "pool_weights": {"vlm": [0.1204, 0.188], "yasa": [0.6907, 0.218],
                         "rsn_scale": 0.884}}))
    assert line == ("Re-weighted the three stagers (pool weights: image model 0.12 → 0.19, "
                    "YASA 0.69 → 0.22, RobustSleepNet ×0.88) from 24 epochs; no stager's "
                    "answers changed.")


def test_a_refitted_classifier_and_the_parent_kept(tmp_path):
    line = guard_line(_folder(tmp_path, {
        "guard": {"chosen": "layer=10,pool=3", "n_epochs": 40, "cv_log_loss": {"x": 1}},
        "pool_weights": {"vlm": [0.12, 0.15], "yasa": [0.69, 0.6], "rsn_scale": None}}))
    assert line.startswith("Re-fitted RobustSleepNet's classifier and the pool "
                           "(layer=10,pool=3; pool weights: image model 0.12 → 0.15, "
                           "YASA 0.69 → 0.60)")
    (tmp_path / "b").mkdir()
    kept = guard_line(_folder(tmp_path / "b", {
        "guard": {"chosen": "parent", "n_epochs": 30, "cv_log_loss": {"parent": 1.0}}}))
    assert "no reliable gain" in kept
    (tmp_path / "c").mkdir()
    assert "too few" in guard_line(_folder(tmp_path / "c", {
        "guard": {"chosen": "parent", "n_epochs": 5, "cv_log_loss": {}}}))
    assert guard_line(str(tmp_path / "missing")) == ""
