"""Training variants of a night for adapting a model: the same night as another lab might
have recorded it (another amplitude gain, the epoch grid moved a few seconds), as views that
copy nothing. Used by :mod:`eegvlm_desktop.ml.adapt` (``AdaptSettings.variant_gains`` and
``variant_shifts``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.staging.adapt import AdaptSettings

EPOCH_S = 30.0


class VariantRecording:
    """A read-only view of a recording as another lab might have recorded it: every
    channel's amplitude times ``gain`` (stim channels aside) and the epoch grid moved
    ``offset_s`` seconds later. Nothing is copied: :meth:`get_data` reads the recording.

    Parameters
    ----------
    recording : Recording or SignalRecording
        Anything with ``sfreq``, ``n_times``, ``ch_names``, ``ch_types`` and ``get_data``.
    gain : float
        Amplitude factor (> 0).
    offset_s : float
        Seconds cut from the start (>= 0): the view's epoch k is the recording's
        ``[offset_s + 30 k, offset_s + 30 (k + 1))``.
    """

    def __init__(self, recording: Any, gain: float = 1.0, offset_s: float = 0.0) -> None:
        if not gain > 0:
            raise EEGVLMError(f"Invalid value for the 'gain' parameter: a number > 0, but got "
                              f"{gain!r}.")
        if not 0 <= offset_s < EPOCH_S:
            raise EEGVLMError(f"Invalid value for the 'offset_s' parameter: seconds in "
                              f"[0, {EPOCH_S:g}), but got {offset_s!r}.")
        self._rec = recording
        self._start = int(round(offset_s * recording.sfreq))
        self._gain = np.array([1.0 if t == "stim" else float(gain)
                               for t in recording.ch_types])

    def __getattr__(self, name: str) -> Any:  # ch_names, ch_types, sfreq, ...
        return getattr(self._rec, name)

    @property
    def n_times(self) -> int:
        return max(0, int(self._rec.n_times) - self._start)

    @property
    def duration(self) -> float:
        return self.n_times / self._rec.sfreq

    def n_epochs(self, epoch_length: float = EPOCH_S) -> int:
        return int(np.floor(self.duration / epoch_length + 1e-9))

    def get_data(self, picks: Sequence[int] | None = None, start: int = 0,
                 stop: int | None = None) -> np.ndarray:
        stop = self.n_times if stop is None else min(int(stop), self.n_times)
        start = max(0, int(start))
        rows = list(range(len(self._gain))) if picks is None else list(picks)
        data = self._rec.get_data(rows, start + self._start, max(start, stop) + self._start)
        return data * self._gain[rows][:, None]  # a new array: the source's stays as read


def variant_views(recording: Any, settings: AdaptSettings
                  ) -> list[tuple[str, Any, int]]:
    """(name, view, epoch step) of each training variant in ``settings``: labelled epoch
    ``e`` of the recording is the view's epoch ``e - step``.

    A shift of ``t`` s (|t| < 15) moves the grid so that each moved epoch overlaps
    ``30 - |t|`` s of one labelled epoch, which lends it its label: ``t > 0`` starts the
    view ``t`` s late (epoch ``e`` of the view is the labelled ``e`` moved later); ``t < 0``
    starts it ``30 + t`` s late, so the view's epoch ``e - 1`` is the labelled ``e`` moved
    earlier (the night's first epoch has no such variant).
    """
    out = [(f"gain x{g:g}", VariantRecording(recording, gain=g), 0)
           for g in settings.variant_gains]
    for t in settings.variant_shifts:
        out.append((f"shift {t:+g} s", VariantRecording(
            recording, offset_s=t if t > 0 else EPOCH_S + t), 0 if t > 0 else 1))
    return out
