"""The epoch grid: counts, time <-> index, sample ranges and validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eegvlm_desktop.core.recording.epochs import EpochGrid


def test_counts_only_complete_epochs() -> None:
    assert EpochGrid(300.0).n_epochs == 10
    assert EpochGrid(299.9).n_epochs == 9
    assert EpochGrid(79_500.0).n_epochs == 2650
    assert EpochGrid(2650 * 30.0 * (1 - 1e-15)).n_epochs == 2650  # float noise keeps the last
    assert EpochGrid(100.0, epoch_length=20.0, offset=15.0).n_epochs == 4
    assert len(EpochGrid(29.0)) == 0


def test_epoch_of_time_is_clamped() -> None:
    grid = EpochGrid(300.0, offset=10.0)  # 9 epochs: 10..280 s
    assert grid.n_epochs == 9
    assert grid.epoch_of_time(10.0) == 0
    assert grid.epoch_of_time(39.999) == 0
    assert grid.epoch_of_time(40.0) == 1
    assert grid.epoch_of_time(-5.0) == 0
    assert grid.epoch_of_time(5.0) == 0
    assert grid.epoch_of_time(1e9) == 8
    assert grid.epoch_of_time(np.float64(75.0)) == 2


def test_start_end_and_sample_range() -> None:
    grid = EpochGrid(300.0, epoch_length=30.0, offset=0.005)
    assert grid.start_time(0) == 0.005
    assert grid.start_time(np.int64(3)) == pytest.approx(90.005)
    assert grid.end_time(3) == pytest.approx(120.005)
    ranges = [grid.sample_range(i, 256.0) for i in range(grid.n_epochs)]
    assert all(stop - start == 7680 for start, stop in ranges)
    assert ranges[0] == (1, 7681)
    assert EpochGrid(300.0).sample_range(2, 100.0) == (6000, 9000)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"duration": -1.0}, "duration"),
    ({"duration": math.nan}, "duration"),
    ({"duration": 300.0, "epoch_length": 0.0}, "epoch_length"),
    ({"duration": 300.0, "epoch_length": "30"}, "epoch_length"),
    ({"duration": 300.0, "offset": -1.0}, "offset"),
    ({"duration": 300.0, "offset": 301.0}, "offset"),
])
def test_validation_names_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'.*got"):
        EpochGrid(**kwargs)


def test_index_validation() -> None:
    grid = EpochGrid(300.0)
    for bad in (10, -1):
        with pytest.raises(ValueError, match="'i'.*0..9.*got"):
            grid.start_time(bad)
    with pytest.raises(ValueError, match="integer"):
        grid.start_time(1.0)
    with pytest.raises(ValueError, match="'sfreq'"):
        grid.sample_range(0, 0.0)
    with pytest.raises(ValueError, match="no complete epoch"):
        EpochGrid(10.0).epoch_of_time(1.0)
    with pytest.raises(ValueError, match="'t'"):
        grid.epoch_of_time(math.inf)


def test_frozen() -> None:
    grid = EpochGrid(300.0)
    with pytest.raises(AttributeError):
        grid.duration = 10.0  # type: ignore[misc]
