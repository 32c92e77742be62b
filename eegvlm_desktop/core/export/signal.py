"""The whole-night signal a fine-tuning export carries, so a model can be adapted from it.

Adapting a model to a lab (:mod:`eegvlm_desktop.core.staging.adapt`) re-fits the layer on
top of RobustSleepNet and YASA, and both read the *whole* night: RobustSleepNet's answer for
an epoch depends on its 21-epoch neighbourhood and its per-night IQR normalisation, YASA's
features are normalised over the night. The epoch images alone cannot give that, so the
export stores the channels those stagers read (frontal, central and occipital EEG, EOG), as
int16 with a per-channel scale (as EDF stores them: ~0.01 µV steps for a ±300 µV channel),
compressed: the 7-h example night's three 100-Hz channels take 11 MB.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

SIGNAL_NAME = "signal.npz"
#: The montage roles whose channels are stored (those the cohort stagers read).
SIGNAL_ROLES = ("eeg_frontal", "eeg_central", "eeg_occipital", "eog")
_FULL_SCALE = 32000.0


def signal_bytes(recording: Any, roles: dict[str, int | None]) -> bytes | None:
    """The ``signal.npz`` of a recording: one int16 row per stored role, or None when none
    of :data:`SIGNAL_ROLES` has a channel."""
    # A one-channel recording fills every EEG role with the same channel: store it once.
    channels = sorted({roles[r] for r in SIGNAL_ROLES if roles.get(r) is not None})
    if not channels:
        return None
    rows, scales = [], []
    for i in channels:
        x = np.nan_to_num(np.asarray(recording.get_data([i])[0], dtype=np.float64))
        peak = float(np.abs(x).max()) if x.size else 0.0
        scale = peak / _FULL_SCALE if peak > 0 else 1.0
        rows.append(np.round(x / scale).astype(np.int16))
        scales.append(scale)
    role_index = [channels.index(roles[r]) if roles.get(r) is not None else -1
                  for r in SIGNAL_ROLES]
    buf = io.BytesIO()
    np.savez_compressed(buf, data=np.stack(rows), scales=np.asarray(scales),
                        role_index=np.asarray(role_index),
                        names=np.asarray([recording.ch_names[i] for i in channels]),
                        types=np.asarray([recording.ch_types[i] for i in channels]),
                        sfreq=np.asarray(float(recording.sfreq)))
    return buf.getvalue()


class SignalRecording:
    """A recording read back from ``signal.npz``: what the cohort stagers need of one.

    Attributes
    ----------
    ch_names, ch_types : list of str
    sfreq : float
    roles : dict
        ``{role: channel index}`` for the stored roles, every other role ``None``.
    """

    def __init__(self, data: bytes, where: str = SIGNAL_NAME) -> None:
        from eegvlm_desktop.core.errors import EEGVLMError

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                self._data = z["data"].astype(np.float64) * z["scales"][:, None]
                role_index = [int(k) for k in z["role_index"]]
                self.ch_names = [str(n) for n in z["names"]]
                self.ch_types = [str(t) for t in z["types"]]
                self.sfreq = float(z["sfreq"])
        except (OSError, ValueError, KeyError) as err:
            raise EEGVLMError(f"{where} is not a signal file this app wrote ({err}).") from None
        n = len(self._data)
        if (len(role_index) != len(SIGNAL_ROLES) or len(self.ch_names) != n
                or any(k >= n for k in role_index) or not self.sfreq > 0):
            raise EEGVLMError(f"{where} is inconsistent: roles {role_index} for {n} channels "
                              f"at {self.sfreq} Hz.")
        self.roles: dict[str, int | None] = {
            r: (k if k >= 0 else None) for r, k in zip(SIGNAL_ROLES, role_index)}

    @property
    def n_times(self) -> int:
        return int(self._data.shape[1])

    @property
    def duration(self) -> float:
        return self.n_times / self.sfreq

    def n_epochs(self, epoch_length: float = 30.0) -> int:
        return int(np.floor(self.duration / epoch_length + 1e-9))

    def get_data(self, picks: Sequence[int] | None = None, start: int = 0,
                 stop: int | None = None) -> np.ndarray:
        rows = list(range(len(self._data))) if picks is None else list(picks)
        return self._data[rows, max(0, int(start)):stop]
