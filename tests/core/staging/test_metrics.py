"""stage_metrics on small hand-computed examples."""
from __future__ import annotations

import json

import pytest

from eegvlm_desktop.core.staging.metrics import stage_metrics


def test_hand_computed_example_with_unscored_epoch() -> None:
    # Kept (UNS dropped): true W W N1 N2 N2 N3 R / pred W N1 N1 N2 N3 N3 R -> 5 of 7 right.
    y_true = ["W", "W", "N1", "N2", "N2", "N3", "R", "UNS"]
    y_pred = ["W", "N1", "N1", "N2", "N3", "N3", "R", "W"]
    m = stage_metrics(y_true, y_pred)
    assert m["n_epochs"] == 7 and m["excluded"] == 1
    assert m["accuracy"] == pytest.approx(5 / 7)
    # W, N1, N2, N3 each have one hit and one miss (F1 = 2/(2+1) = 2/3); R is perfect.
    assert m["per_stage_f1"] == pytest.approx(
        {"W": 2 / 3, "N1": 2 / 3, "N2": 2 / 3, "N3": 2 / 3, "R": 1.0})
    assert m["macro_f1"] == pytest.approx(11 / 15)
    # po = 5/7; row sums 2,1,2,1,1 x column sums 1,2,1,2,1 -> pe = 9/49; kappa = 26/40.
    assert m["kappa"] == pytest.approx(0.65)
    assert m["confusion"] == [[1, 1, 0, 0, 0],
                              [0, 1, 0, 0, 0],
                              [0, 0, 1, 1, 0],
                              [0, 0, 0, 1, 0],
                              [0, 0, 0, 0, 1]]
    assert m["support"] == {"W": 2, "N1": 1, "N2": 2, "N3": 1, "R": 1}
    assert m["labels"] == ["W", "N1", "N2", "N3", "R"]


def test_art_excluded_and_absent_stages_have_no_f1() -> None:
    # Kept: true W W N2 / pred W N2 N2. N1, N3, R occur nowhere: no F1, not in the average.
    m = stage_metrics(["W", "W", "N2", "ART"], ["W", "N2", "N2", "R"])
    assert m["n_epochs"] == 3 and m["excluded"] == 1
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_stage_f1"]["W"] == pytest.approx(2 / 3)
    assert m["per_stage_f1"]["N2"] == pytest.approx(2 / 3)
    assert m["per_stage_f1"]["N1"] is None and m["per_stage_f1"]["R"] is None
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # po = 2/3, pe = (2*1 + 1*2)/9 = 4/9 -> kappa = (2/9)/(5/9) = 0.4.
    assert m["kappa"] == pytest.approx(0.4)


def test_predicted_but_absent_stage_scores_zero_f1() -> None:
    m = stage_metrics(["W", "W", "N2", "N2"], ["W", "R", "N2", "N2"])
    assert m["per_stage_f1"]["R"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_single_identical_stage_has_undefined_kappa() -> None:
    m = stage_metrics(["N2"] * 4, ["N2"] * 4)
    assert m["accuracy"] == 1.0 and m["kappa"] is None and m["macro_f1"] == 1.0


def test_result_is_plain_json() -> None:
    m = stage_metrics(["W", "N1", "N2", "N3", "R", "UNS"], ["W", "N2", "N2", "N3", "R", "R"])
    again = json.loads(json.dumps(m, allow_nan=False))
    assert again == m
    assert type(m["accuracy"]) is float and type(m["confusion"][0][0]) is int


@pytest.mark.parametrize("y_true, y_pred, words", [
    (["W", "N2"], ["W"], ["'y_true'", "'y_pred'", "2", "1"]),
    (["W", "S4"], ["W", "N3"], ["'y_true'", "'S4'", "UNS"]),
    (["W", "N2"], ["W", "UNS"], ["'y_pred'", "'UNS'", "N1"]),
    (["UNS", "ART"], ["W", "W"], ["'y_true'", "scored epoch"]),
    ([], [], ["'y_true'"]),
])
def test_errors_name_parameter_and_values(y_true: list[str], y_pred: list[str],
                                          words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        stage_metrics(y_true, y_pred)
    for w in words:
        assert w in str(err.value)


def test_unscored_prediction_on_unscored_epoch_is_fine() -> None:
    # The prediction of an excluded epoch is never looked at.
    m = stage_metrics(["W", "UNS"], ["W", "UNS"])
    assert m["n_epochs"] == 1 and m["excluded"] == 1
