"""The grid of fixed-length scoring epochs laid over a recording.

One place converts between seconds, epoch indices and sample ranges, so the viewer, the
hypnogram and the model all agree on where epoch ``i`` starts and how many samples it has.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

# Durations are often products like 2650 * 30.0 computed in floating point; this tolerance
# keeps 79499.99999999 from losing the last complete epoch.
_EPS = 1e-9


def _check_number(name: str, value: object, *, positive: bool) -> float:
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= 0 if positive else value < 0):
        raise ValueError(f"Invalid value for the '{name}' parameter: it must be a finite "
                         f"number of seconds {bound}, but got {value!r} instead.")
    return float(value)


@dataclass(frozen=True)
class EpochGrid:
    """Consecutive epochs of ``epoch_length`` seconds starting ``offset`` s into a recording.

    Parameters
    ----------
    duration : float
        Recording length in seconds (>= 0).
    epoch_length : float
        Epoch length in seconds (> 0); 30 s is the AASM standard.
    offset : float
        Start of epoch 0 in seconds from the recording start, between 0 and ``duration``
        (e.g. a hypnogram that begins after the signal does).

    Only complete epochs count: a trailing part shorter than ``epoch_length`` is not scored.
    """

    duration: float
    epoch_length: float = 30.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        _check_number("duration", self.duration, positive=False)
        _check_number("epoch_length", self.epoch_length, positive=True)
        _check_number("offset", self.offset, positive=False)
        if self.offset > self.duration:
            raise ValueError(f"Invalid value for the 'offset' parameter: it must lie within "
                             f"the recording (0..{self.duration:g} s), but got "
                             f"{self.offset!r} instead.")

    @property
    def n_epochs(self) -> int:
        """Number of complete epochs."""
        return math.floor((self.duration - self.offset) / self.epoch_length + _EPS)

    def __len__(self) -> int:
        return self.n_epochs

    def _check_index(self, i: int) -> int:
        try:  # operator.index accepts int and NumPy integers, refuses 3.0 and "3"
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)
        except TypeError:
            raise ValueError(f"Invalid value for the 'i' parameter: it must be an integer "
                             f"epoch index, but got {i!r} instead.") from None
        if not 0 <= i < self.n_epochs:
            raise ValueError(f"Invalid value for the 'i' parameter: epoch indices are "
                             f"0..{self.n_epochs - 1}, but got {i} instead.")
        return i

    def epoch_of_time(self, t: float) -> int:
        """Index of the epoch containing time ``t`` (s), clamped to the first/last epoch.

        Raises
        ------
        ValueError
            When the grid has no complete epoch, or ``t`` is not a finite number.
        """
        if self.n_epochs == 0:
            raise ValueError(f"The recording ({self.duration:g} s) holds no complete epoch of "
                             f"{self.epoch_length:g} s.")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"Invalid value for the 't' parameter: it must be a finite "
                             f"number of seconds, but got {t!r} instead.")
        i = math.floor((t - self.offset) / self.epoch_length + _EPS)
        return min(max(i, 0), self.n_epochs - 1)

    def start_time(self, i: int) -> float:
        """Start of epoch ``i`` in seconds from the recording start."""
        return self.offset + self._check_index(i) * self.epoch_length

    def end_time(self, i: int) -> float:
        """End of epoch ``i`` (exclusive) in seconds from the recording start."""
        return self.start_time(i) + self.epoch_length

    def sample_range(self, i: int, sfreq: float) -> tuple[int, int]:
        """Samples ``(start, stop)`` of epoch ``i`` at ``sfreq`` Hz (stop exclusive).

        Every epoch gets the same number of samples, ``round(epoch_length * sfreq)``, so
        epochs stack into one array even when the offset is not a whole number of samples.
        """
        sfreq = _check_number("sfreq", sfreq, positive=True)
        start = round(self.start_time(i) * sfreq)
        return start, start + round(self.epoch_length * sfreq)
