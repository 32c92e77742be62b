"""The numpy zero-phase filter against scipy's sosfiltfilt (the viewer no longer imports it)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, iirnotch, sosfiltfilt, tf2sos

from eegvlm_desktop.core.recording.zero_phase import filtfilt, impulse_response


@pytest.mark.parametrize("hp, lp, notch, fs", [
    (0.3, 35.0, None, 256.0), (0.3, 35.0, None, 100.0), (10.0, None, None, 256.0),
    (None, 35.0, 50.0, 256.0), (0.3, 70.0, 60.0, 512.0), (None, None, 50.0, 100.0)])
def test_equals_sosfiltfilt_away_from_the_ends(hp, lp, notch, fs) -> None:
    sections = []
    if hp:
        sections.append(butter(2, hp, "highpass", fs=fs, output="sos"))
    if lp:
        sections.append(butter(4, lp, "lowpass", fs=fs, output="sos"))
    if notch:
        sections.append(tf2sos(*iirnotch(notch, 30.0, fs=fs)))
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 3, (3, 40000)), axis=1) + rng.normal(0, 20, (3, 40000))
    want = sosfiltfilt(np.vstack(sections), x, axis=-1)
    got = filtfilt(impulse_response(hp, lp, notch, 30.0, fs), x, padlen=21)
    assert got.shape == x.shape
    np.testing.assert_allclose(got[:, 10000:30000], want[:, 10000:30000], atol=1e-6)


def test_no_stage_is_no_filter_and_responses_are_reused() -> None:
    assert impulse_response(None, None, None, 30.0, 256.0) is None
    assert impulse_response(0.3, 35.0, None, 30.0, 256.0) is impulse_response(0.3, 35.0, None,
                                                                               30.0, 256.0)


def test_highpass_has_no_dc_and_lowpass_passes_it() -> None:
    x = np.full((1, 5000), 7.0)
    assert np.abs(filtfilt(impulse_response(0.5, None, None, 30.0, 100.0), x)).max() < 1e-6
    np.testing.assert_allclose(filtfilt(impulse_response(None, 20.0, None, 30.0, 100.0), x), 7.0)


def test_a_short_settle_over_real_neighbours_changes_nothing_inside() -> None:
    # The viewer filters each block with 2.5 periods of real samples on each side and lets
    # those stand in for the filter's start-up: inside, the result is the same.
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(0, 3, (2, 20000)), axis=1) + rng.normal(0, 20, (2, 20000))
    h = impulse_response(0.3, 35.0, None, 30.0, 256.0)
    pad = 2134  # 2.5 periods of 0.3 Hz at 256 Hz
    full, short = filtfilt(h, x), filtfilt(h, x, settle=pad)
    np.testing.assert_allclose(short[:, pad:-pad], full[:, pad:-pad], atol=1e-6)
