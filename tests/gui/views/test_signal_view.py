"""The signal view's min/max decimation (the rest of the view is tested at window level)."""
from __future__ import annotations

import numpy as np

from eegvlm_desktop.gui.views.signal_view import peak_decimate


def test_peak_decimate_keeps_every_bins_minimum_and_maximum() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(7683) / 256.0
    data = rng.normal(size=(3, 7683))
    data[1, 4000] = 50.0  # a spike survives
    xs, out = peak_decimate(x, data, 1400)
    ds, nb = 7683 // 1400, 7683 // (7683 // 1400)
    bins = data[:, :nb * ds].reshape(3, nb, ds)
    np.testing.assert_array_equal(out[:, 0::2], bins.min(axis=2))
    np.testing.assert_array_equal(out[:, 1::2], bins.max(axis=2))
    assert out.max() == 50.0 and xs.shape == (2 * nb,)
    np.testing.assert_allclose(xs[1::2] - xs[0::2], (ds - 1) / 256.0)


def test_peak_decimate_leaves_short_data_alone() -> None:
    x, data = np.arange(100.0), np.ones((2, 100))
    assert peak_decimate(x, data, 80)[1] is data
