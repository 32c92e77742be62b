"""Measured evidence per 30-s epoch: band powers, graphoelements, eye movements, chin EMG.

These numbers feed the chain-of-thought targets (:mod:`.cot`), so every statement the model is
trained to make is true of the signal. Detectors are YASA's (imported lazily: ~1.5 s), run
ONCE on the whole night and then binned per epoch, which is both much faster than per-epoch
calls and what YASA's thresholds expect (several are relative to the whole signal).
All signals are first resampled to the renderer's 100 Hz (:func:`.rendering.read_resampled`),
so evidence and image describe the same samples, whatever the recording's rate.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import signal as sps

from eegvlm_desktop.core.picture.rendering import RENDER_SFREQ, read_resampled

#: EEG bands (Hz), as in the AASM manual / YASA's defaults; relative to 0.5-30 Hz power.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0),
    "sigma": (12.0, 16.0), "beta": (16.0, 30.0)}
EOG_SLOW_BAND = (0.3, 2.0)  # slow (rolling) eye movements and blinks
# K-complex approximation (YASA has no K-complex detector): a slow wave detected by
# yasa.sw_detect that (a) has a negative peak <= -KC_NEG_UV, (b) has no other slow wave within
# KC_ISOLATION_S (a K-complex stands alone; trains of slow waves are slow-wave activity), and
# (c) lies in an epoch with < 20 % slow waves (an N2-like, not N3, background).
KC_NEG_UV = 60.0
KC_ISOLATION_S = 3.0
_N3_PERCENT = 20.0


@dataclass
class EpochEvidence:
    """What was measured in one epoch. Counts are of events whose peak lies in the epoch.

    None means "not measurable": no channel for that role in the recording.
    """

    epoch: int
    eeg_channel: str | None
    band_powers: dict[str, float]  # relative power per BANDS key, sums to 1 (0.5-30 Hz)
    eeg_rms_uv: float
    n_spindles: int
    spindle_density: float  # per minute
    n_slow_waves: int
    slow_wave_percent: float  # % of the epoch covered by detected slow waves
    n_k_complexes: int  # approximation, see KC_* constants
    n_rems: int | None  # rapid eye movements (yasa.rem_detect)
    eog_slow_power: float | None  # µV², 0.3-2 Hz
    emg_rms_uv: float | None
    emg_relative: float | None  # emg_rms_uv / the night's median

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for export next to the images."""
        return asdict(self)


# YASA logs "No spindles were found"-style WARNING records through ``logging`` (not
# ``warnings``) whenever a detector finds nothing, which is a normal answer here; each detector
# resets its logger from its ``verbose`` argument, so that argument is where they are silenced.
_YASA_VERBOSE = "ERROR"


def _import_yasa() -> Any:
    """Import yasa lazily: it takes ~1.5 s, which the app must not pay at start-up."""
    import yasa

    return yasa


def _rel_band_powers(x: np.ndarray, sf: float) -> np.ndarray:
    """(n_epochs, n_bands) relative powers; x is (n_epochs, n_samples)."""
    # Welch with 4-s windows, YASA's bandpower default (0.25 Hz resolution).
    freqs, psd = sps.welch(x, sf, nperseg=int(4 * sf), axis=-1)
    df = freqs[1] - freqs[0]
    total_mask = (freqs >= 0.5) & (freqs < 30.0)
    total = psd[:, total_mask].sum(1) * df
    out = np.stack([psd[:, (freqs >= lo) & (freqs < hi)].sum(1) * df
                    for lo, hi in BANDS.values()], 1)
    return out / np.where(total > 0, total, 1.0)[:, None]


def _eog_slow_power(x: np.ndarray, sf: float) -> np.ndarray:
    # 10-s windows: 0.1 Hz resolution, so the 0.3-2 Hz band is not a handful of bins.
    freqs, psd = sps.welch(x, sf, nperseg=min(x.shape[1], int(10 * sf)), axis=-1)
    m = (freqs >= EOG_SLOW_BAND[0]) & (freqs <= EOG_SLOW_BAND[1])
    return psd[:, m].sum(1) * (freqs[1] - freqs[0])


def _count_per_epoch(times_s: np.ndarray, n_epochs: int, epoch_len: float) -> np.ndarray:
    ep = np.floor(np.asarray(times_s, float) / epoch_len).astype(int)
    ep = ep[(ep >= 0) & (ep < n_epochs)]
    return np.bincount(ep, minlength=n_epochs)


def _coverage_per_epoch(starts: np.ndarray, ends: np.ndarray, n_epochs: int,
                        epoch_len: float, sf: float) -> np.ndarray:
    """Fraction of each epoch covered by the union of [start, end) intervals (seconds)."""
    n = int(round(n_epochs * epoch_len * sf))
    # Difference array: +1 at starts, -1 at ends; a running sum > 0 is covered (overlaps once).
    diff = np.zeros(n + 1, np.int32)
    np.add.at(diff, np.clip(np.round(np.asarray(starts) * sf).astype(int), 0, n), 1)
    np.add.at(diff, np.clip(np.round(np.asarray(ends) * sf).astype(int), 0, n), -1)
    covered = np.cumsum(diff[:-1]) > 0
    return covered.reshape(n_epochs, -1).mean(1)


def _detect(yasa: Any, eeg_sp: np.ndarray, eeg_sw: np.ndarray, eog: np.ndarray | None,
            sf: float, n_ep: int, ep_len: float) -> dict[str, np.ndarray]:
    """Run YASA's detectors on whole-night signals (NaN-free) and bin them per epoch."""
    out: dict[str, np.ndarray] = {}
    # Spindles: YASA defaults (12-15 Hz, 0.5-2 s, thresholds corr 0.65 / rel_pow 0.2 / rms 1.5).
    sp = yasa.spindles_detect(eeg_sp, sf, verbose=_YASA_VERBOSE)
    peaks = sp.summary()["Peak"].to_numpy() if sp is not None else np.empty(0)
    out["n_spindles"] = _count_per_epoch(peaks, n_ep, ep_len)
    # Slow waves: YASA defaults (0.3-1.5 Hz, negative peak 40-200 µV, 75-350 µV ptp: AASM's
    # > 75 µV criterion), so "slow_wave_percent" is AASM's "slow-wave activity".
    sw = yasa.sw_detect(eeg_sw, sf, verbose=_YASA_VERBOSE)
    if sw is not None:
        df = sw.summary()
        neg_t = df["NegPeak"].to_numpy()
        out["n_slow_waves"] = _count_per_epoch(neg_t, n_ep, ep_len)
        cover = _coverage_per_epoch(df["Start"].to_numpy(), df["End"].to_numpy(), n_ep,
                                    ep_len, sf)
        out["slow_wave_percent"] = 100.0 * cover
        gaps = np.diff(neg_t)
        alone = np.ones(len(neg_t), bool)
        alone[1:] &= gaps > KC_ISOLATION_S
        alone[:-1] &= gaps > KC_ISOLATION_S
        big = df["ValNegPeak"].to_numpy() <= -KC_NEG_UV
        ep = np.floor(neg_t / ep_len).astype(int).clip(0, n_ep - 1)
        n2_like = out["slow_wave_percent"][ep] < _N3_PERCENT
        out["n_k_complexes"] = _count_per_epoch(neg_t[alone & big & n2_like], n_ep, ep_len)
    else:
        for key in ("n_slow_waves", "n_k_complexes"):
            out[key] = np.zeros(n_ep, int)
        out["slow_wave_percent"] = np.zeros(n_ep)
    if eog is not None:
        # yasa.rem_detect wants LOC and ROC and detects on -LOC*ROC. With one bipolar horizontal
        # EOG E = LOC - ROC and conjugate movements (ROC ~ -LOC), LOC ~ E/2 and ROC ~ -E/2, so
        # passing (E/2, -E/2) gives yasa the product and amplitudes it was tuned on; passing
        # (E, -E) would double every amplitude against its 50-325 µV limits.
        rem = yasa.rem_detect(eog / 2.0, -eog / 2.0, sf, verbose=_YASA_VERBOSE)
        peaks = rem.summary()["Peak"].to_numpy() if rem is not None else np.empty(0)
        out["n_rems"] = _count_per_epoch(peaks, n_ep, ep_len)
    return out


def measure_night(recording: Any, roles: dict[str, int | None],
                  epoch_indices: Sequence[int] | None = None, *,
                  epoch_length: float = 30.0) -> list[EpochEvidence]:
    """Measure the evidence of every requested epoch of a recording.

    Parameters
    ----------
    recording : Recording
    roles : dict
        Output of :func:`~eegvlm_desktop.core.recording.montage.pick_roles`. Spindles and band powers use
        the central EEG (AASM's spindle derivation), slow waves and K-complexes the frontal one
        (where AASM measures slow-wave amplitude); pick_roles fills either from the other.
    epoch_indices : sequence of int or None
        Epochs to return; None for all complete epochs. Detection always runs on the whole
        night (its thresholds are night-relative), so results do not depend on this choice.
    epoch_length : float
        Seconds per epoch (> 0).

    Returns
    -------
    list of EpochEvidence, in the order of ``epoch_indices``.
    """
    if not (isinstance(epoch_length, (int, float)) and epoch_length > 0):
        raise ValueError("Invalid value for the 'epoch_length' parameter: it must be a positive "
                         f"number of seconds, but got {epoch_length!r} instead.")
    sf = RENDER_SFREQ
    n_ep = math.floor(recording.n_times / recording.sfreq / epoch_length + 1e-9)
    idx = list(range(n_ep)) if epoch_indices is None else [int(i) for i in epoch_indices]
    bad = [i for i in idx if not 0 <= i < n_ep]
    if bad:
        raise ValueError(f"Invalid value for the 'epoch_indices' parameter: epochs must be in "
                         f"0..{n_ep - 1}, but got {bad[:5]} instead.")
    central = roles.get("eeg_central")
    central = central if central is not None else roles.get("eeg_frontal")
    central = central if central is not None else roles.get("eeg_occipital")
    if central is None or n_ep == 0:
        raise ValueError("Invalid value for the 'roles' parameter: it must name at least one "
                         f"EEG channel, and the recording at least one epoch, but got {roles!r} "
                         f"and {n_ep} epochs instead.")
    frontal = roles.get("eeg_frontal")
    frontal = central if frontal is None else frontal
    picks = {"central": central, "frontal": frontal, "eog": roles.get("eog"),
             "emg": roles.get("emg")}
    used = sorted({i for i in picks.values() if i is not None})
    data = read_resampled(recording, used, 0.0, n_ep * epoch_length)
    data = np.nan_to_num(data)  # whole epochs lie inside the recording; NaN is impossible here
    sig = {k: (None if i is None else data[used.index(i)]) for k, i in picks.items()}
    n_s = int(round(epoch_length * sf))

    yasa = _import_yasa()
    det = _detect(yasa, sig["central"], sig["frontal"], sig["eog"], sf, n_ep, epoch_length)
    ep_c = sig["central"].reshape(n_ep, n_s)
    rel = _rel_band_powers(ep_c, sf)
    eeg_rms = np.sqrt(np.mean((ep_c - ep_c.mean(1, keepdims=True)) ** 2, 1))
    eog_pow = (_eog_slow_power(sig["eog"].reshape(n_ep, n_s), sf)
               if sig["eog"] is not None else None)
    emg_rms = emg_rel = None
    if sig["emg"] is not None:
        ep_m = sig["emg"].reshape(n_ep, n_s)
        # Sleep-EDF's chin channel (1 Hz) is an RMS envelope: its level is the tone, so it is
        # not de-meaned. A raw chin EMG (>= 20 Hz recorded) is de-meaned to drop DC offsets.
        if recording.orig_sfreqs[picks["emg"]] >= 20:
            ep_m = ep_m - ep_m.mean(1, keepdims=True)
        emg_rms = np.sqrt(np.mean(ep_m ** 2, 1))
        med = float(np.median(emg_rms))
        emg_rel = emg_rms / med if med > 0 else np.ones(n_ep)

    name = recording.ch_names[central]
    out = []
    for i in idx:
        out.append(EpochEvidence(
            epoch=i, eeg_channel=name,
            band_powers={b: float(rel[i, k]) for k, b in enumerate(BANDS)},
            eeg_rms_uv=float(eeg_rms[i]),
            n_spindles=int(det["n_spindles"][i]),
            spindle_density=float(det["n_spindles"][i] * 60.0 / epoch_length),
            n_slow_waves=int(det["n_slow_waves"][i]),
            slow_wave_percent=float(det["slow_wave_percent"][i]),
            n_k_complexes=int(det["n_k_complexes"][i]),
            n_rems=int(det["n_rems"][i]) if "n_rems" in det else None,
            eog_slow_power=None if eog_pow is None else float(eog_pow[i]),
            emg_rms_uv=None if emg_rms is None else float(emg_rms[i]),
            emg_relative=None if emg_rel is None else float(emg_rel[i])))
    return out
