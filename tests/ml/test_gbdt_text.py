"""The LightGBM text model evaluated in numpy answers as LightGBM itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.ml.gbdt_text import TextGBDT

MODEL = Path(__file__).resolve().parents[2] / "model_weights/default/cohort/yasa_eeg.txt"
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="the shipped model has no cohort/")


def test_probabilities_equal_lightgbm() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    ours = TextGBDT(MODEL)
    ref = lightgbm.Booster(model_file=str(MODEL))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 65)) * rng.choice([0.01, 1.0, 100.0], size=65)
    x[rng.random(x.shape) < 0.02] = np.nan  # missing values take LightGBM's default path
    np.testing.assert_array_equal(ours.raw_score(x), ref.predict(x, raw_score=True))
    np.testing.assert_allclose(ours.predict(x), ref.predict(x), rtol=0, atol=1e-15)
    assert ours.feature_names == ref.feature_name()
    ours._plain = False  # the general path (per-split missing-value rules) answers the same
    np.testing.assert_array_equal(ours.raw_score(x), ref.predict(x, raw_score=True))


def test_wrong_width_and_unsupported_models_say_why(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"'x' parameter must have shape \(n, 65\).*\(2, 3\)"):
        TextGBDT(MODEL).predict(np.zeros((2, 3)))
    text = MODEL.read_text(encoding="utf-8").replace("objective=multiclass num_class:5",
                                                     "objective=regression", 1)
    (tmp_path / "m.txt").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="'objective' must be 'multiclass'.*'regression'"):
        TextGBDT(tmp_path / "m.txt")
