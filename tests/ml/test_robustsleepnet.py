"""RobustSleepNet, re-implemented (synthetic signals; the SC4001 check skips without ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from eegvlm_desktop.ml import robustsleepnet as rsn
from tests.conftest import SHARED_DATA, SLEEP_EDF_HYP, SLEEP_EDF_PSG

MODEL_DIR = str(SHARED_DATA.parent / "models" / "robustsleepnet-sleep-edf")
HAVE_WEIGHTS = os.path.isfile(os.path.join(MODEL_DIR, "state_dict.npz"))
SHIPPED = Path(__file__).resolve().parents[2] / "model_weights" / "default" / "cohort"


def synth(seconds: float, fs: float, seed: int = 0, amp: float = 30e-6) -> np.ndarray:
    """Noise plus an alpha-ish and a delta-ish component (units: volts)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    return amp * (rng.standard_normal(t.size) + np.sin(2 * np.pi * 10 * t) + 2 * np.sin(2 * np.pi * 1.5 * t))


@pytest.fixture(scope="module")
def model() -> rsn.RobustSleepNet:
    if HAVE_WEIGHTS:
        return rsn.load_robustsleepnet(MODEL_DIR)
    torch.manual_seed(0)  # random weights still exercise shapes and invariances
    return rsn.RobustSleepNet().eval()


# ---------------------------------------------------------------- weights
def test_state_dict_layout_has_49_tensors() -> None:
    sd = rsn.RobustSleepNet().state_dict()
    assert len(sd) == 49
    assert sum(v.numel() for v in sd.values()) == 180_343


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="shared weights absent")
def test_strict_load_and_eval_mode() -> None:
    m = rsn.load_robustsleepnet(MODEL_DIR)
    assert not m.training
    with np.load(os.path.join(MODEL_DIR, "state_dict.npz"), allow_pickle=False) as z:
        for name, t in m.state_dict().items():
            np.testing.assert_array_equal(t.numpy(), z[name])


def test_load_rejects_wrong_archive(tmp_path) -> None:
    sd = {k: v.numpy() for k, v in rsn.RobustSleepNet().state_dict().items()}
    sd.pop("classifier.bias")
    np.savez(tmp_path / "state_dict.npz", **sd)
    with pytest.raises(ValueError, match="missing=.*classifier.bias"):
        rsn.load_robustsleepnet(tmp_path)
    with pytest.raises(FileNotFoundError, match="state_dict.npz"):
        rsn.load_robustsleepnet(tmp_path / "nowhere")


# ---------------------------------------------------------------- preprocess
def test_preprocess_shapes_and_channel_counts() -> None:
    for n_ch in (1, 2, 5):
        spec = rsn.preprocess([synth(95, 100, seed=i) for i in range(n_ch)], [100.0] * n_ch)
        assert spec.shape == (3, n_ch, 65, 28)  # partial 4th epoch dropped
        assert spec.dtype == np.float32 and np.isfinite(spec).all()


def test_preprocess_mixed_and_low_rates() -> None:
    spec = rsn.preprocess([synth(60, 256), synth(60, 200), synth(60, 50), synth(60, 60)],
                          [256, 200.0, 50, 60])
    assert spec.shape == (2, 4, 65, 28)
    assert np.isfinite(spec).all()


def test_preprocess_unit_invariance() -> None:
    x = synth(90, 100)
    a = rsn.preprocess([x], [100])
    b = rsn.preprocess([x * 1e6], [100])  # volts vs microvolts
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_all_zero_epoch_is_minus_20() -> None:
    epochs = np.zeros((2, 1800))
    spec = rsn._epoch_log_spectrogram(epochs)
    assert spec.shape == (2, 65, 28)
    assert np.all(spec == -20.0)
    # and a flat channel through the whole pipeline (IQR 0 -> 1e-5) stays finite
    flat = rsn.preprocess([np.zeros(3000)], [100])
    assert np.all(flat == -20.0)


def test_partial_nan_is_bridged() -> None:
    x = synth(60, 100)
    x[500:520] = np.nan
    assert np.isfinite(rsn.preprocess([x], [100])).all()


@pytest.mark.parametrize(
    "signals, rates, match",
    [
        ([], [], "signals must hold at least 1 channel; given 0"),
        ([np.full(6000, np.nan)], [100], r"signals\[0\] must contain finite values"),
        ([np.zeros(0)], [100], r"signals\[0\] must not be empty"),
        ([np.zeros((2, 3000))], [100], r"signals\[0\] must be 1-D"),
        ([synth(60, 100)], [0], r"rates\[0\] must be a positive finite number .*given 0"),
        ([synth(60, 100)], [-100], r"rates\[0\] must be a positive"),
        ([synth(60, 100)], [float("nan")], r"rates\[0\] must be a positive"),
        ([synth(60, 100)], [100, 100], "rates must have one entry per channel"),
        ([synth(20, 100)], [100], r"signals\[0\] must last at least 30 s"),
    ],
)
def test_preprocess_errors(signals, rates, match) -> None:
    with pytest.raises(ValueError, match=match):
        rsn.preprocess(signals, rates)


def test_preprocess_rejects_bare_array() -> None:
    with pytest.raises(ValueError, match="wrap it in a list"):
        rsn.preprocess(synth(60, 100), [100])


# ---------------------------------------------------------------- predict
def test_predict_shapes(model) -> None:
    spec = rsn.preprocess([synth(25 * 30, 100, 1), synth(25 * 30, 100, 2)], [100, 100])
    out = rsn.predict(model, spec, windows="all")
    assert out["log_proba"].shape == (25, 5)
    assert out["epoch_embedding"].shape == (25, 50)
    assert out["sequence_embedding"].shape == (25, 100)
    assert out["stage"].shape == (25,)
    assert np.all(out["n_windows"] == 21)
    # mean of log-softmax: exp sums to <= 1 (Jensen), each row log-probs <= 0
    assert np.all(out["log_proba"] <= 0)
    assert np.all(np.exp(out["log_proba"]).sum(1) <= 1 + 1e-5)


def test_inside_windows_skip_padding(model) -> None:
    # 25 epochs: windows start at 0..4 and each epoch is averaged over the windows that
    # cover it wholly inside the record (1 at the ends, 5 in the middle).
    spec = rsn.preprocess([synth(25 * 30, 100, 4)], [100])
    out = rsn.predict(model, spec, windows="inside")
    assert out["n_windows"].tolist() == [1, 2, 3, 4] + [5] * 17 + [4, 3, 2, 1]
    # shorter than one window: falls back to the padded protocol
    short = rsn.predict(model, spec[:10], windows="inside")
    assert np.all(short["n_windows"] == 21)
    with pytest.raises(ValueError, match="windows"):
        rsn.predict(model, spec, windows="middle")


def test_predict_batch_size_invariant(model) -> None:
    spec = rsn.preprocess([synth(12 * 30, 100, 3)], [100])
    a = rsn.predict(model, spec, batch_windows=1)
    b = rsn.predict(model, spec, batch_windows=500)
    for k in ("log_proba", "epoch_embedding", "sequence_embedding"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-5)


def test_short_records_and_single_epoch(model) -> None:
    for n in (1, 2, 20):
        spec = rsn.preprocess([synth(n * 30, 100, n)], [100])
        out = rsn.predict(model, spec)
        assert out["log_proba"].shape == (n, 5)
        assert np.isfinite(out["log_proba"]).all()


def test_channel_order_invariance(model) -> None:
    sigs = [synth(10 * 30, 100, s) * (s + 1) for s in range(3)]
    spec = rsn.preprocess(sigs, [100] * 3)
    a = rsn.predict(model, spec)
    b = rsn.predict(model, spec[:, [2, 0, 1]])
    for k in ("log_proba", "epoch_embedding", "sequence_embedding"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)


def test_single_channel_matches_duplicated_channel(model) -> None:
    # attention weights over identical channels are equal -> same weighted sum
    spec = rsn.preprocess([synth(5 * 30, 100)], [100])
    a = rsn.predict(model, spec)
    b = rsn.predict(model, np.repeat(spec, 2, axis=1))
    np.testing.assert_allclose(a["log_proba"], b["log_proba"], atol=1e-4)


def test_standardize_windows() -> None:
    w = torch.randn(2, 21, 3, 65, 28) * 5 + 2
    s = rsn.standardize_windows(w)
    assert torch.allclose(s.mean(dim=(1, 4)), torch.zeros(2, 3, 65), atol=1e-5)
    assert torch.allclose(s.std(dim=(1, 4)), torch.ones(2, 3, 65), atol=1e-4)


def test_running_sum_moments_are_each_windows_own() -> None:
    # A night-like stack: padding (-20) at both ends, log powers with a slow drift, one
    # constant bin (its std must come out 0 + 1e-15, not a negative rounding error).
    g = torch.Generator().manual_seed(0)
    drift = torch.linspace(0, 4, 60)[:, None, None, None]
    x = torch.randn(60, 2, 65, 28, generator=g) * 3 - 8 + drift
    x[:20], x[-20:], x[:, 1, 7] = rsn.PAD_VALUE, rsn.PAD_VALUE, -3.0
    mean, scale = rsn._window_moments(x)
    assert mean.shape == scale.shape == (60 - 20, 1, 2, 65, 1)
    idx = torch.arange(40)[:, None] + torch.arange(21)[None]
    w = x[idx]
    torch.testing.assert_close(mean, w.mean(dim=(1, 4), keepdim=True), rtol=0, atol=1e-5)
    direct = w.std(dim=(1, 4), keepdim=True, unbiased=True) + 1e-15
    torch.testing.assert_close(scale, direct, rtol=1e-5, atol=1e-6)
    assert (scale[:, :, 1, 7] > 0).all()
    torch.testing.assert_close((w - mean) / scale, rsn.standardize_windows(w), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        (np.zeros((3, 65, 28)), {}, "spectrograms must have shape"),
        (np.zeros((0, 1, 65, 28)), {}, ">= 1 epoch"),
        (np.zeros((2, 0, 65, 28)), {}, ">= 1 channel"),
        (np.full((2, 1, 65, 28), np.nan), {}, "must be finite"),
        (np.zeros((2, 1, 65, 28)), {"batch_windows": 0}, "batch_windows must be an integer >= 1; given 0"),
    ],
)
def test_predict_errors(model, spec, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        rsn.predict(model, spec, **kw)


# ---------------------------------------------------------------- real data
def test_shipped_copy_equals_the_published_arrays() -> None:
    """The model folder's safetensors copy holds exactly the published 49 tensors."""
    from safetensors.numpy import load_file

    path = SHIPPED / "robustsleepnet.safetensors"
    if not path.is_file():
        pytest.skip("no shipped RobustSleepNet copy in model_weights/default/cohort")
    shipped = load_file(str(path))
    rsn.load_robustsleepnet_arrays(shipped)  # strict: all 49, right shapes
    if HAVE_WEIGHTS:
        with np.load(os.path.join(MODEL_DIR, "state_dict.npz"), allow_pickle=False) as z:
            for k in z.files:
                np.testing.assert_array_equal(shipped[k], z[k])


@pytest.mark.skipif(not (HAVE_WEIGHTS and SLEEP_EDF_PSG.is_file()),
                    reason="../shared (SC4001 and the published weights) is absent")
def test_sc4001_published_scores() -> None:
    """Reproduces the published SC4001E0 score to every printed digit (840 epochs)."""
    import mne
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    torch.set_num_threads(1)
    chans = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"]
    raw = mne.io.read_raw_edf(SLEEP_EDF_PSG, include=chans, preload=True, verbose="error")
    data = raw.pick(chans).get_data()
    n = int(data.shape[1] / 100 // 30)
    codes = {"Sleep stage W": 0, "Sleep stage 1": 1, "Sleep stage 2": 2, "Sleep stage 3": 3,
             "Sleep stage 4": 3, "Sleep stage R": 4}
    labels = np.full(n, -1)
    ann = mne.read_annotations(SLEEP_EDF_HYP)
    for onset, dur, desc in zip(ann.onset, ann.duration, ann.description):
        a = int(round(onset / 30))
        labels[a:min(a + int(round(dur / 30)), n)] = codes.get(desc, -1)
    sleep = np.flatnonzero(labels >= 1)
    first, stop = sleep[0] - 60, sleep[-1] + 60  # the published window, end excluded
    spec = rsn.preprocess([ch[first * 3000:stop * 3000] for ch in data], [100.0] * 3)
    pred = rsn.predict(rsn.load_robustsleepnet(MODEL_DIR), spec, windows="all")["stage"]
    y = labels[first:stop]
    keep = y >= 0
    assert keep.sum() == 840
    assert accuracy_score(y[keep], pred[keep]) == pytest.approx(0.866667, abs=1e-6)
    assert cohen_kappa_score(y[keep], pred[keep]) == pytest.approx(0.825142, abs=1e-6)
    assert f1_score(y[keep], pred[keep], average="macro") == pytest.approx(0.824173, abs=1e-6)
