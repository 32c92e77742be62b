"""Display-time signal preparation for the viewer: per-channel filters and a block cache.

Filters here change only what is drawn, never what is scored or exported. Signals are cut into
fixed blocks of ``block_seconds``; each block is filtered once (zero-phase, scipy's
``sosfiltfilt`` done in numpy by :mod:`.zero_phase`, so that the viewer never imports
scipy.signal)
together with real neighbouring samples on both sides, so that the start of a block continues
the end of the previous one without the transients a filter makes at a segment's edges. A small
LRU cache of filtered blocks makes paging through a night cost a copy, not a filter run.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from eegvlm_desktop.core.errors import check_option
from eegvlm_desktop.core.recording.recording import CH_TYPES
from eegvlm_desktop.core.recording.zero_phase import filtfilt, impulse_response

if TYPE_CHECKING:
    from eegvlm_desktop.core.recording.recording import Recording

_DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "eeg": (0.3, 35.0), "eog": (0.3, 35.0), "emg": (10.0, None), "ecg": (0.3, 70.0)}
# A cut-off must sit clearly below the Nyquist frequency of the rate the channel was recorded
# at; above that the file holds no content there to filter (e.g. Sleep-EDF's 1-Hz EMG envelope).
_MAX_CUTOFF_FRACTION = 0.45
_NOTCH_Q = 30.0  # 50 Hz notch 1.7 Hz wide: removes mains hum, keeps neighbouring EEG content
# Real samples read on each side of a block: this many periods of the slowest filter feature
# (cut-off, or notch bandwidth). Measured against filtering 10 min at once, a signal with a
# 200-µV drift: 2 periods leave < 0.005 µV at the block edge, 3 periods < 0.0003 µV.
_PAD_PERIODS = 2.5
#: Fewest (channel, block) entries an automatically sized cache keeps.
MIN_CACHE_BLOCKS = 16


def _check_cutoff(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Invalid value for the '{name}' parameter: it must be None (off) or "
                         f"a positive frequency in Hz, but got {value!r} instead.")
    return float(value)


@dataclass(frozen=True)
class DisplayFilter:
    """Filter settings of one displayed channel; ``None`` switches a stage off.

    Parameters
    ----------
    highpass : float or None
        High-pass cut-off in Hz (2nd-order Butterworth, applied forward and backward).
    lowpass : float or None
        Low-pass cut-off in Hz (4th-order Butterworth, forward and backward).
    notch : float or None
        Mains frequency to remove, normally 50 or 60 Hz (IIR notch, Q = 30).
    """

    highpass: float | None = None
    lowpass: float | None = None
    notch: float | None = None

    def __post_init__(self) -> None:
        for name in ("highpass", "lowpass", "notch"):
            object.__setattr__(self, name, _check_cutoff(name, getattr(self, name)))
        if self.highpass and self.lowpass and self.highpass >= self.lowpass:
            raise ValueError(f"Invalid value for the 'highpass' parameter: it must be below "
                             f"the low-pass cut-off ({self.lowpass:g} Hz), but got "
                             f"{self.highpass:g} Hz instead.")

    @property
    def is_identity(self) -> bool:
        """True when every stage is off (the signal is shown as recorded)."""
        return self.highpass is None and self.lowpass is None and self.notch is None

    def check_rate(self, sfreq: float) -> None:
        """Raise ValueError when a cut-off is not below the Nyquist frequency of ``sfreq``."""
        for name in ("highpass", "lowpass", "notch"):
            value = getattr(self, name)
            if value is not None and value >= sfreq / 2:
                raise ValueError(f"Invalid value for the '{name}' parameter: at {sfreq:g} Hz "
                                 f"it must be below {sfreq / 2:g} Hz, but got {value:g} Hz "
                                 "instead.")


def default_filter(ch_type: str, orig_sfreq: float) -> DisplayFilter:
    """The usual sleep-scoring display filter for a channel type.

    EEG/EOG 0.3-35 Hz, EMG 10 Hz high-pass, ECG 0.3-70 Hz, others unfiltered; notch off (the
    user picks 50 or 60 Hz). A cut-off above 0.45 x the channel's *original* rate is dropped,
    since the recording holds nothing there (the 1-Hz Sleep-EDF EMG envelope stays unfiltered).
    """
    check_option("ch_type", ch_type, CH_TYPES)
    if isinstance(orig_sfreq, bool) or not isinstance(orig_sfreq, (int, float)) \
            or not math.isfinite(orig_sfreq) or orig_sfreq <= 0:
        raise ValueError(f"Invalid value for the 'orig_sfreq' parameter: it must be a "
                         f"positive rate in Hz, but got {orig_sfreq!r} instead.")
    limit = _MAX_CUTOFF_FRACTION * orig_sfreq
    hp, lp = _DEFAULTS.get(ch_type, (None, None))
    return DisplayFilter(highpass=hp if hp is not None and hp <= limit else None,
                         lowpass=lp if lp is not None and lp <= limit else None)


class DisplaySource:
    """Filtered signal windows for the viewer, served from an LRU cache of filtered blocks.

    Parameters
    ----------
    recording : Recording
        Anything with ``sfreq``, ``n_times``, ``ch_types``, ``orig_sfreqs`` and
        ``get_data(picks, start, stop)`` returning µV.
    block_seconds : float
        Length of a cached block. 60 s serves two 30-s pages per filter run.
    cache_blocks : int or None
        Most (channel, block) entries kept. None (the default): twice the largest single
        request (a page, or the viewer's prefetch of the pages around it), at least
        :data:`MIN_CACHE_BLOCKS`. For 30-s pages of a 10-channel 256-Hz night that is ~60
        entries, ~7 MB, whatever the night's length; a fixed 512 was 63 MB of blocks
        nobody returns to (issue 18: the viewer stays under 200 MB).
    """

    def __init__(self, recording: Recording, block_seconds: float = 60.0,
                 cache_blocks: int | None = None) -> None:
        if isinstance(block_seconds, bool) or not isinstance(block_seconds, (int, float)) \
                or not block_seconds > 0:
            raise ValueError(f"Invalid value for the 'block_seconds' parameter: it must be a "
                             f"positive number of seconds, but got {block_seconds!r} instead.")
        if cache_blocks is not None and (isinstance(cache_blocks, bool)
                                         or not isinstance(cache_blocks, int)
                                         or cache_blocks < 1):
            raise ValueError(f"Invalid value for the 'cache_blocks' parameter: it must be a "
                             f"positive integer or None, but got {cache_blocks!r} instead.")
        self.recording = recording
        self.sfreq = float(recording.sfreq)
        self.block = max(1, round(block_seconds * self.sfreq))  # samples per block
        self.cache_blocks = cache_blocks
        self._largest_request = 0  # (channel, block) entries in the largest get/prefetch
        self._filters = [default_filter(t, r)
                         for t, r in zip(recording.ch_types, recording.orig_sfreqs)]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        # The viewer may prefetch from a worker thread while painting from the GUI thread.
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    # ---- filters --------------------------------------------------------------------
    def _check_channel(self, ch_index: int) -> int:
        n = len(self._filters)
        if isinstance(ch_index, bool) or not isinstance(ch_index, (int, np.integer)) \
                or not 0 <= ch_index < n:
            raise ValueError(f"Invalid value for the 'ch_index' parameter: it must be a "
                             f"channel index in 0..{n - 1}, but got {ch_index!r} instead.")
        return int(ch_index)

    def get_filter(self, ch_index: int) -> DisplayFilter:
        """The filter currently applied to channel ``ch_index``."""
        return self._filters[self._check_channel(ch_index)]

    def set_filter(self, ch_index: int, display_filter: DisplayFilter) -> None:
        """Change channel ``ch_index``'s filter; its cached blocks are dropped."""
        ch = self._check_channel(ch_index)
        if not isinstance(display_filter, DisplayFilter):
            raise ValueError(f"Invalid value for the 'display_filter' parameter: it must be a "
                             f"DisplayFilter, but got {display_filter!r} instead.")
        display_filter.check_rate(self.sfreq)
        with self._lock:
            if display_filter == self._filters[ch]:
                return
            self._filters[ch] = display_filter
            for key in [k for k in self._cache if k[0] == ch]:
                del self._cache[key]

    def clear_cache(self) -> None:
        """Forget every filtered block (e.g. after the recording's scaling changed)."""
        with self._lock:
            self._cache.clear()

    def cached_blocks(self, ch_index: int | None = None) -> int:
        """Number of cached blocks, for one channel or all."""
        with self._lock:
            return sum(1 for k in self._cache if ch_index is None or k[0] == ch_index)

    # ---- data -----------------------------------------------------------------------
    def _sample_span(self, t0: float, t1: float) -> tuple[int, int]:
        for name, t in (("t0", t0), ("t1", t1)):
            if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) \
                    or not math.isfinite(t):
                raise ValueError(f"Invalid value for the '{name}' parameter: it must be a "
                                 f"finite time in seconds, but got {t!r} instead.")
        if t1 < t0:
            raise ValueError(f"Invalid value for the 't1' parameter: it must not be before "
                             f"t0 ({t0:g} s), but got {t1:g} s instead.")
        n = int(self.recording.n_times)
        # The tolerance stops 30.0 * 100 = 2999.9999... from dropping or adding a sample.
        s0 = min(max(0, math.floor(t0 * self.sfreq + 1e-6)), n)
        s1 = min(max(s0, math.ceil(t1 * self.sfreq - 1e-6)), n)
        return s0, s1

    def get(self, picks: Sequence[int] | None, t0: float,
            t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Filtered samples of channels ``picks`` between ``t0`` and ``t1`` seconds.

        Returns
        -------
        times : ndarray, shape (n,)
            Seconds from the recording start (clipped to the recording).
        data : ndarray, float64, shape (n_picks, n)
            Display units (µV for EEG/EOG/EMG/ECG), filtered with each channel's filter.
        """
        chans = (list(range(len(self._filters))) if picks is None
                 else [self._check_channel(c) for c in picks])
        s0, s1 = self._sample_span(t0, t1)
        out = np.empty((len(chans), s1 - s0))
        if s1 > s0:
            with self._lock:
                self._note_request(len(chans), s0, s1)
                for k in range(s0 // self.block, (s1 - 1) // self.block + 1):
                    blocks = self._blocks(k, chans)
                    b0 = k * self.block
                    a, b = max(s0, b0), min(s1, b0 + self.block)
                    for row, ch in enumerate(chans):
                        out[row, a - s0:b - s0] = blocks[ch][a - b0:b - b0]
        return np.arange(s0, s1) / self.sfreq, out

    def is_cached(self, t0: float, t1: float, picks: Sequence[int] | None = None) -> bool:
        """Whether every block covering ``[t0, t1]`` of ``picks`` is cached (a few lookups).

        The viewer asks before queueing a :meth:`prefetch`: waking the worker thread for
        nothing costs the GUI thread a GIL hand-over (~1-3 ms on 2 cores) on half the page
        steps (two 30-s pages share a 60-s block).
        """
        chans = (list(range(len(self._filters))) if picks is None
                 else [self._check_channel(c) for c in picks])
        s0, s1 = self._sample_span(t0, t1)
        blocks = range(s0 // self.block, (s1 - 1) // self.block + 1) if s1 > s0 else ()
        with self._lock:
            return all((ch, k) in self._cache for k in blocks for ch in chans)

    def prefetch(self, t0: float, t1: float, picks: Sequence[int] | None = None) -> None:
        """Filter and cache the blocks covering ``[t0, t1]`` without returning them.

        Safe to call from a worker thread while the GUI thread calls :meth:`get`: the
        filtering runs outside the lock (so ``get`` never waits for a prefetch) and the
        result is stored only if the channel's filter did not change meanwhile.
        """
        chans = (list(range(len(self._filters))) if picks is None
                 else [self._check_channel(c) for c in picks])
        s0, s1 = self._sample_span(t0, t1)
        with self._lock:
            self._note_request(len(chans), s0, s1)
        for k in range(s0 // self.block, (s1 - 1) // self.block + 1) if s1 > s0 else ():
            with self._lock:
                missing = [ch for ch in dict.fromkeys(chans) if (ch, k) not in self._cache]
                filters = {ch: self._filters[ch] for ch in missing}
                self.misses += len(missing)
            if not missing:
                continue
            blocks = self._compute_block(k, missing, filters)
            with self._lock:
                for ch, block in blocks.items():
                    if self._filters[ch] == filters[ch]:
                        self._cache[(ch, k)] = block
                self._trim()

    def _blocks(self, k: int, chans: list[int]) -> dict[int, np.ndarray]:
        """Block ``k`` of each channel, filtering (in one read) those not cached."""
        found: dict[int, np.ndarray] = {}
        missing = []
        for ch in dict.fromkeys(chans):
            arr = self._cache.get((ch, k))
            if arr is None:
                missing.append(ch)
            else:
                self._cache.move_to_end((ch, k))
                found[ch] = arr
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            blocks = self._compute_block(k, missing, {ch: self._filters[ch] for ch in missing})
            for ch, block in blocks.items():
                self._cache[(ch, k)] = block
            self._trim()
            found.update(blocks)
        return found

    def _note_request(self, n_chans: int, s0: int, s1: int) -> None:
        if s1 > s0:
            n = n_chans * ((s1 - 1) // self.block - s0 // self.block + 1)
            self._largest_request = max(self._largest_request, n)

    @property
    def capacity(self) -> int:
        """Entries the cache keeps (see ``cache_blocks``)."""
        if self.cache_blocks is not None:
            return self.cache_blocks
        return max(MIN_CACHE_BLOCKS, 2 * self._largest_request)

    def _trim(self) -> None:
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def _compute_block(self, k: int, chans: list[int],
                       filters: dict[int, DisplayFilter]) -> dict[int, np.ndarray]:
        """Filtered block ``k`` of ``chans`` with ``filters``; touches no shared state."""
        n = int(self.recording.n_times)
        b0, b1 = k * self.block, min(n, (k + 1) * self.block)
        pad = max(self._pad(filters[ch]) for ch in chans)
        r0, r1 = max(0, b0 - pad), min(n, b1 + pad)
        raw = np.asarray(self.recording.get_data(chans, r0, r1), dtype=np.float64)
        groups: dict[DisplayFilter, list[int]] = {}
        for row, ch in enumerate(chans):
            groups.setdefault(filters[ch], []).append(row)
        result = {}
        for filt, rows in groups.items():
            h = impulse_response(filt.highpass, filt.lowpass, filt.notch, _NOTCH_Q,
                                 self.sfreq)
            x = raw[rows]
            if h is not None and x.shape[1] > 1:
                # Inside the recording the real neighbours are the padding, so scipy's odd
                # extension is skipped (a third of the cost); at the recording's ends it is
                # kept (scipy's length for these second-order sections), shortened for a
                # tiny recording.
                interior = r0 == b0 - pad and r1 == b1 + pad
                n_sos = bool(filt.highpass) + 2 * bool(filt.lowpass) + bool(filt.notch)
                padlen = 0 if interior else min(3 * (2 * n_sos + 1), x.shape[1] - 1)
                # Inside, the padding's real samples also stand in for the kernel's
                # start-up (settle): shorter FFTs, same result to ~1e-8 of the scale.
                x = filtfilt(h, x, padlen=padlen, settle=pad if interior else None)
            for j, row in enumerate(rows):
                result[chans[row]] = np.ascontiguousarray(x[j, b0 - r0:b1 - r0])
        return result

    def _pad(self, filt: DisplayFilter) -> int:
        """Neighbouring samples to filter along with a block so its edges are transient-free."""
        freqs = [f for f in (filt.highpass, filt.lowpass) if f]
        if filt.notch:
            freqs.append(filt.notch / _NOTCH_Q)  # the notch rings for ~1/bandwidth
        return math.ceil(_PAD_PERIODS / min(freqs) * self.sfreq) if freqs else 0
