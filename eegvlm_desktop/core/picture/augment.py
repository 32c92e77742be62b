"""Training-time variants of an epoch: the same sleep as another lab would have recorded it.

One training night (Sleep-EDF SC4001: Fpz-Cz and Pz-Oz at 100 Hz) teaches the model one lab's
amplitudes and one lab's spectrum. Measured on the shipped model, DREAMS excerpt 3 (C3-A1 and
FP1-A1 at 50 Hz) scored 0.60 accuracy as recorded, 0.75 with its EEG scaled by 0.7 and 0.25
scaled by 1.4: the model leans on absolute amplitude far more than on the waveforms a scorer
reads. A variant here re-draws one epoch with what differs between labs and montages:

* a gain per EEG channel (montage and amplifier: a referential C3-A1 is larger than the
  bipolar Fpz-Cz, electrode impedance differs), :data:`EEG_GAIN`;
* a gain on EOG and on chin EMG (placement, envelope vs raw), :data:`EOG_GAIN`, :data:`EMG_GAIN`;
* with probability :data:`LOWPASS_P`, a low-pass in :data:`LOWPASS_HZ` on EEG and EOG (a
  recording sampled at 50 Hz carries nothing above ~24 Hz, Sleep-EDF's 100 Hz does);
* with probability :data:`ONE_EEG_P`, one EEG channel in every EEG role, as a single-channel
  recording (C3-A1 only) is drawn; with :data:`DROP_P`, no EOG or no chin EMG, as in a lab
  that did not record them. Measured on DREAMS: without its EMG the shipped model fell from
  0.60 to 0.47 accuracy.

Every variant goes through THE renderer (:func:`~.rendering.render_epoch`); the stage and the
reasoning target stay the epoch's own: gains leave relative band powers and event counts as
measured, and the stage of a night does not depend on the amplifier.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from scipy import signal as sps

from eegvlm_desktop.core.picture.rendering import EpochSignals, render_night
from eegvlm_desktop.core.recording.montage import EEG_ROLES

#: Per-channel gain ranges (low, high), drawn log-uniformly, so x0.75 is as likely as
#: x1/0.75. Version 2 drew EEG gains in 0.6-1.6: on the CV's N3-rich block 0 that cost 7
#: points (N3 is an amplitude criterion), while it won 18 on the morning-wake block 4.
EEG_GAIN = (0.75, 1.33)
EOG_GAIN = (0.5, 2.0)
EMG_GAIN = (0.5, 2.0)
#: Probability of a low-pass, and its cut-off range (Hz).
LOWPASS_P = 0.5
LOWPASS_HZ = (18.0, 24.0)
#: Probability that all EEG roles show one of the epoch's EEG channels.
ONE_EEG_P = 0.2
#: Probability that EOG, and independently chin EMG, is left out (drawn as a missing channel).
DROP_P = 0.1
#: Bump when a variant of the same seed may change; stored with the training data's metadata.
AUGMENT_VERSION = "3"


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _lowpass(x: np.ndarray, cutoff: float, sfreq: float) -> np.ndarray:
    """Zero-phase low-pass of ``x``; NaN samples (off the recording) stay NaN."""
    finite = np.isfinite(x)
    if not finite.any() or x.size <= 27 or cutoff >= sfreq / 2:
        return x
    sos = sps.butter(4, cutoff, "lowpass", fs=sfreq, output="sos")
    y = sps.sosfiltfilt(sos, np.where(finite, x, 0.0))
    return np.where(finite, y, np.nan)


def perturb(signals: EpochSignals, rng: np.random.Generator) -> EpochSignals:
    """One variant of ``signals`` (a new object; the input is not changed).

    Roles that read the same channel (Sleep-EDF's Fpz-Cz is both the frontal and the
    central EEG) get the same gain, so the variant is still a possible recording.

    Parameters
    ----------
    signals : EpochSignals
        From :func:`~.rendering.prepare_epoch`.
    rng : numpy Generator
        The only source of randomness: the same seed gives the same variant.
    """
    gains: dict[str, float] = {}  # by channel name, so shared channels share a gain
    cutoff = (float(rng.uniform(*LOWPASS_HZ)) if rng.uniform() < LOWPASS_P else None)
    source = dict(signals.signals)
    names = dict(signals.channel_names)
    eeg = [r for r in EEG_ROLES if source.get(r) is not None]
    if eeg and rng.uniform() < ONE_EEG_P:
        keep = eeg[int(rng.integers(len(eeg)))]
        for role in eeg:
            source[role], names[role] = source[keep], names.get(keep)
    for role in ("eog", "emg"):
        if rng.uniform() < DROP_P:
            source[role] = None
    out: dict[str, np.ndarray | None] = {}
    for role, x in source.items():
        if x is None:
            out[role] = None
            continue
        kind = "eeg" if role in EEG_ROLES else role
        key = names.get(role) or role
        if key not in gains:
            gains[key] = _log_uniform(rng, {"eeg": EEG_GAIN, "eog": EOG_GAIN}.get(
                kind, EMG_GAIN))
        y = np.asarray(x, dtype=np.float64) * gains[key]
        if cutoff is not None and kind in ("eeg", "eog"):
            y = _lowpass(y, cutoff, signals.sfreq)
        out[role] = y
    return replace(signals, signals=out, channel_names=names)


def render_variants(recording: Any, roles: dict[str, int | None], epoch_indices: Sequence[int],
                    n_variants: int, seed: int = 0) -> np.ndarray:
    """``n_variants`` perturbed renderings of each epoch.

    Returns
    -------
    ndarray, uint8, shape (len(epoch_indices), n_variants, IMAGE_SIZE, IMAGE_SIZE, 3)
        Deterministic for a given ``seed``.
    """
    if isinstance(n_variants, bool) or not isinstance(n_variants, (int, np.integer)) \
            or n_variants < 1:
        raise ValueError("Invalid value for the 'n_variants' parameter: it must be an integer "
                         f">= 1, but got {n_variants!r} instead.")
    rng = np.random.default_rng(seed)
    return np.stack([render_night(recording, roles, epoch_indices,
                                  transform=lambda s: perturb(s, rng))
                     for _ in range(int(n_variants))], axis=1)
