"""The standard window and blocked cross-validation folds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.staging.protocol import PROTOCOL_TEXT, block_folds, standard_window


def _night(n_before: int = 100, n_sleep: int = 100, n_after: int = 100,
           epoch_length: float = 30.0) -> Hypnogram:
    """Wake, then a sleep period starting with N1 (some W inside it), then wake."""
    sleep = ["N1"] + ["N2", "N3", "W", "R"] * ((n_sleep - 2) // 4) + ["R"]
    sleep += ["N2"] * (n_sleep - len(sleep))
    return Hypnogram(["W"] * n_before + sleep + ["W"] * n_after, epoch_length)


def test_window_is_sleep_period_plus_30_min_each_side() -> None:
    idx = standard_window(_night())
    # Sleep epochs 100..199, 60 epochs (30 min) margin: 40..259.
    assert idx[0] == 40 and idx[-1] == 259 and len(idx) == 220
    assert np.array_equal(idx, np.arange(40, 260))
    assert idx.dtype == np.int64


def test_window_drops_unscored_and_artefact_epochs() -> None:
    hyp = _night()
    hyp.set_stages([45, 150], ["UNS", "ART"], source="import")
    hyp.set_stage(300 - 1, "UNS", source="import")  # outside the window anyway
    idx = standard_window(hyp)
    assert 45 not in idx and 150 not in idx and len(idx) == 218


def test_window_is_clipped_to_the_hypnogram() -> None:
    idx = standard_window(_night(n_before=10, n_after=20))
    assert idx[0] == 0 and idx[-1] == 10 + 100 + 20 - 1


def test_margin_is_in_minutes_whatever_the_epoch_length() -> None:
    assert len(standard_window(_night(), wake_margin_min=0)) == 100
    # 20-s epochs: 30 min = 90 epochs, clipped at 100 on each side of the sleep period.
    idx = standard_window(_night(epoch_length=20.0))
    assert idx[0] == 10 and idx[-1] == 289


@pytest.mark.parametrize("margin", [-1.0, float("nan"), float("inf"), "30", True])
def test_window_rejects_bad_margin(margin: object) -> None:
    with pytest.raises(ValueError, match="wake_margin_min"):
        standard_window(_night(), wake_margin_min=margin)  # type: ignore[arg-type]


def test_window_needs_sleep() -> None:
    with pytest.raises(ValueError, match="'hyp'.*no"):
        standard_window(Hypnogram(["W"] * 10 + ["UNS"] * 3))


def test_window_on_sc4001_is_841_epochs(sleep_edf_hyp: Path) -> None:
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram

    idx = standard_window(read_hypnogram(sleep_edf_hyp).hypnogram)
    # The paper's number: sleep 1021..1741 (721 epochs) + 2 x 60 margin epochs.
    assert len(idx) == 841 and idx[0] == 961 and idx[-1] == 1801


def _check_partition(idx: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
    order = np.sort(idx)
    tests = [t for _, t in folds]
    # The tests, concatenated in fold order, are exactly the epochs in time order: so they
    # partition the indices and each one is a contiguous run of the sorted list.
    assert np.array_equal(np.concatenate(tests), order)
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
        assert np.array_equal(np.sort(np.concatenate([train, test])), order)
        assert np.all(np.diff(train) > 0)  # train stays in time order too
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1


def test_block_folds_partition_841_into_5() -> None:
    idx = np.arange(961, 1802)
    folds = block_folds(idx, 5)
    _check_partition(idx, folds)
    assert [len(t) for _, t in folds] == [169, 168, 168, 168, 168]
    assert folds[0][1][0] == 961 and folds[-1][1][-1] == 1801


def test_block_folds_with_gaps_and_unsorted_input() -> None:
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(1000, 103, replace=False))
    folds = block_folds(rng.permutation(idx), 7)
    _check_partition(idx, folds)
    assert len(folds) == 7


def test_block_folds_k_equal_n_is_leave_one_out() -> None:
    folds = block_folds(np.array([3, 5, 8]), 3)
    assert [t.tolist() for _, t in folds] == [[3], [5], [8]]
    assert folds[1][0].tolist() == [3, 8]


@pytest.mark.parametrize("indices, k, words", [
    (np.arange(10), 1, ["'k'", "2", "10", "1"]),
    (np.arange(10), 11, ["'k'", "11"]),
    (np.arange(10), 2.0, ["'k'", "2.0"]),
    (np.arange(10), True, ["'k'", "True"]),
    (np.array([1, 2, 2, 3]), 2, ["'indices'", "duplicates", "2"]),
    (np.arange(10.0), 2, ["'indices'", "float64"]),
    (np.arange(10).reshape(2, 5), 2, ["'indices'", "(2, 5)"]),
])
def test_block_folds_validation(indices: np.ndarray, k: object, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        block_folds(indices, k)  # type: ignore[arg-type]
    for w in words:
        assert w in str(err.value)


def test_protocol_text_is_one_paragraph() -> None:
    assert "\n" not in PROTOCOL_TEXT and "841" in PROTOCOL_TEXT and "30 min" in PROTOCOL_TEXT
