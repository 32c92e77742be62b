"""YASA's pretrained sleep stager as the zero-shot baseline every model here must beat.

``yasa.SleepStaging`` (LightGBM trained on ~3,000 NSRR nights) is run on the recording's MNE
Raw. Two things matter for reproducing the reference numbers (SC4001, Fpz-Cz only, 841
epochs: accuracy 0.854, macro-F1 0.809, kappa 0.809):

* **The span given to YASA.** About half of YASA's features are z-scored over the data it
  receives. SC4001 lasts 22 h, mostly daytime wake; run on all of it, the normalisation is
  dominated by wake and the same 841 epochs score only ~0.70 accuracy. The reference numbers
  come from running YASA on the standard window's span alone, which is what
  :func:`compare_with_yasa` does by default (``span="window"``).
* **Channel names.** The app shows EDF labels ('EEG Fpz-Cz') while MNE, reading with
  ``infer_types``, strips the type prefix ('Fpz-Cz'); both spellings are accepted here.

yasa is imported inside the functions: importing it (with LightGBM) takes ~2-3 s.
"""
from __future__ import annotations

import math
import numbers
import re
import time
import warnings
from typing import Any, Sequence

import numpy as np

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.recording.recording import Recording
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.metrics import stage_metrics

#: YASA's stage names -> ours (yasa.Hypnogram says WAKE and REM).
_FROM_YASA = {"WAKE": "W", "W": "W", "N1": "N1", "N2": "N2", "N3": "N3", "REM": "R", "R": "R"}
#: YASA's fixed epoch length, and its minimum input (it refuses less than 5 minutes).
YASA_EPOCH_S = 30.0
YASA_MIN_S = 300.0
SPANS: tuple[str, ...] = ("window", "recording")


def _key(name: str) -> str:
    """Loose form of a channel name: lower case, no type prefix, no spaces/dashes/dots."""
    name = re.sub(r"^(eeg|eog|emg)[\s_:]+", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[\s_.-]+", "", name.lower())


def resolve_channel(recording: Recording, name: str, param: str = "eeg_name") -> str:
    """The MNE name of a channel given by its display name, MNE name or a loose spelling.

    Parameters
    ----------
    recording : Recording
        The open recording.
    name : str
        'EEG Fpz-Cz', 'Fpz-Cz' or 'fpz cz' all find Sleep-EDF's Fpz-Cz channel.
    param : str
        Parameter name used in the error message.

    Returns
    -------
    str
        The channel's name in ``recording.raw``.

    Raises
    ------
    ValueError
        No channel, or more than one, matches.
    """
    mne_names = list(recording.mne_names)
    for names in (mne_names, list(recording.ch_names)):  # exact spellings first
        if name in names:
            return mne_names[names.index(name)]
    lowered = [i for i, (a, b) in enumerate(zip(recording.ch_names, mne_names))
               if name.strip().lower() in (a.lower(), b.lower())]
    hits = lowered or [i for i, (a, b) in enumerate(zip(recording.ch_names, mne_names))
                       if _key(name) in (_key(a), _key(b))]
    if len(hits) == 1:
        return mne_names[hits[0]]
    what = "matches several channels" if hits else "is not a channel of this recording"
    raise ValueError(f"Invalid value for the '{param}' parameter ({what}). Allowed values are "
                     f"{', '.join(map(repr, recording.ch_names))}, but got {name!r}.")


def yasa_stages(recording: Recording, eeg_name: str, eog_name: str | None = None,
                emg_name: str | None = None, *, start_s: float = 0.0,
                n_epochs: int | None = None) -> tuple[list[str], np.ndarray]:
    """Stage 30-s epochs with YASA's pretrained classifier.

    Parameters
    ----------
    recording : Recording
        The open (lazy) recording; only the named channels are loaded.
    eeg_name : str
        EEG channel (display or MNE name, see :func:`resolve_channel`).
    eog_name, emg_name : str or None
        Optional EOG and EMG channels; YASA picks the model trained on that combination.
    start_s : float
        Where the first epoch starts, in seconds from the recording start.
    n_epochs : int or None
        Number of 30-s epochs to stage from ``start_s``; None: all complete epochs to the end.
        At least 10 (YASA needs 5 minutes). YASA normalises its features over this span, so
        the span changes the result (see the module notes).

    Returns
    -------
    labels : list of str
        One of W, N1, N2, N3, R per epoch; ``labels[i]`` is the epoch starting at
        ``start_s + 30 * i``.
    proba : ndarray, shape (n_epochs, 5)
        YASA's probabilities in :data:`~.stages.STAGES` order (W, N1, N2, N3, R).

    Raises
    ------
    ValueError
        A channel is not found, or the span is outside the recording or shorter than 5 min.
    """
    import yasa

    duration = recording.duration
    if not (isinstance(start_s, numbers.Real) and math.isfinite(start_s)
            and 0 <= start_s < duration):
        raise ValueError("Invalid value for the 'start_s' parameter: it must be a number of "
                         f"seconds in [0, {duration:g}), but got {start_s!r}.")
    max_epochs = math.floor((duration - start_s) / YASA_EPOCH_S + 1e-9)
    if n_epochs is None:
        n_epochs = max_epochs
    min_epochs = int(YASA_MIN_S // YASA_EPOCH_S)
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, numbers.Integral) \
            or not min_epochs <= n_epochs <= max_epochs:
        raise ValueError(f"Invalid value for the 'n_epochs' parameter: YASA needs at least "
                         f"{min_epochs} epochs (5 min) and the recording has {max_epochs} from "
                         f"start_s={start_s:g} s, so it must be in {min_epochs}..{max_epochs}, "
                         f"but got {n_epochs!r}.")
    chans = {"eeg": resolve_channel(recording, eeg_name, "eeg_name")}
    if eog_name is not None:
        chans["eog"] = resolve_channel(recording, eog_name, "eog_name")
    if emg_name is not None:
        chans["emg"] = resolve_channel(recording, emg_name, "emg_name")
    # Load whole channels, then crop: MNE's lazy read of a mixed-rate EDF (Sleep-EDF's EMG is
    # 1 Hz) can return zeros for low-rate channels when a read does not start on a data-record
    # boundary (see recording.py); a read from sample 0 is safe. One 100-Hz channel of a 22-h
    # night is ~64 MB.
    raw = recording.raw.copy().pick(list(chans.values())).load_data(verbose="error")
    # YASA converts to µV by channel type; make the types what the caller says they are
    # (non-EDF readers may type an EOG 'misc', whose samples would then stay in volts).
    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    wanted = {name: kind for kind, name in chans.items() if types[name] != kind}
    if wanted:
        with warnings.catch_warnings():
            # MNE notes the unit change (e.g. misc 'NA' -> 'V'); that is the point here.
            warnings.filterwarnings("ignore", message=".*unit for channel")
            raw.set_channel_types(wanted, verbose="error")
    raw.crop(tmin=start_s, tmax=start_s + n_epochs * YASA_EPOCH_S, include_tmax=False,
             verbose="error")
    with warnings.catch_warnings():
        # YASA 0.8.1's classifiers were pickled with scikit-learn 0.24.2; unpickling their
        # LabelEncoder under a newer sklearn warns (InconsistentVersionWarning). The encoder
        # only maps class names, and the reference numbers were measured with this warning.
        warnings.filterwarnings("ignore", message="Trying to unpickle estimator")
        stager = yasa.SleepStaging(raw, eeg_name=chans["eeg"], eog_name=chans.get("eog"),
                                   emg_name=chans.get("emg"))
        hyp = stager.predict()
    labels = [_FROM_YASA[str(v)] for v in hyp.hypno]
    proba_df = hyp.proba.rename(columns=lambda c: _FROM_YASA.get(str(c), str(c)))
    proba = proba_df.reindex(columns=list(STAGES)).to_numpy(dtype=float)
    if len(labels) != n_epochs:  # integer sampling rates always give n_epochs exactly
        raise RuntimeError(f"YASA returned {len(labels)} epochs for a span of {n_epochs}; the "
                           f"sampling rate ({recording.sfreq:g} Hz) may not divide 30 s evenly.")
    return labels, proba


def _default_eeg(recording: Recording) -> str:
    """Fpz-Cz when present (the reference channel of the paper), else the first EEG channel."""
    for i, name in enumerate(recording.ch_names):
        if _key(name) == "fpzcz":
            return recording.mne_names[i]
    return recording.mne_names[recording.eeg_indices[0]]


def compare_with_yasa(recording: Recording, hyp: Hypnogram, indices: Sequence[int] | np.ndarray,
                      *, eeg_name: str | None = None, eog_name: str | None = None,
                      emg_name: str | None = None, span: str = "window",
                      score: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
    """Score YASA against the expert hypnogram on exactly the given epochs.

    Parameters
    ----------
    recording : Recording
        The recording ``hyp`` was scored on (``hyp.start`` is its offset in seconds).
    hyp : Hypnogram
        Expert hypnogram on 30-s epochs.
    indices : sequence of int
        Epochs of ``hyp`` to score, e.g. :func:`~.protocol.standard_window`.
    eeg_name, eog_name, emg_name : str or None
        Channels for YASA; ``eeg_name=None`` picks Fpz-Cz, else the first EEG channel.
    span : {"window", "recording"}
        What YASA is run on: ``"window"`` the epochs from ``min(indices)`` to
        ``max(indices)`` (the protocol; reproduces the reference numbers), ``"recording"``
        every epoch of ``hyp`` inside the recording.
    score : sequence of int, optional
        Score only these epochs (a subset of ``indices``), while YASA still stages the whole
        span: e.g. the blocks of some cross-validation folds, without cutting the night YASA
        normalises its features over.

    Returns
    -------
    dict
        :func:`~.metrics.stage_metrics` of YASA on ``indices`` plus ``runtime_s`` (loading
        and staging), ``span``, ``channels`` (MNE names) and ``staged_epochs``
        (``[first, stop)`` in ``hyp`` indices).

    Raises
    ------
    ValueError
        Bad ``span``, epochs of another length than 30 s, or indices outside the staged span.
    """
    if span not in SPANS:
        raise ValueError(f"Invalid value for the 'span' parameter. Allowed values are "
                         f"{', '.join(map(repr, SPANS))}, but got {span!r}.")
    if abs(hyp.epoch_length - YASA_EPOCH_S) > 1e-9:
        raise ValueError(f"Invalid value for the 'hyp' parameter: YASA stages 30-s epochs, but "
                         f"this hypnogram has {hyp.epoch_length:g}-s epochs.")
    idx = np.asarray(indices, dtype=np.int64).ravel()
    if idx.size == 0:
        raise ValueError("Invalid value for the 'indices' parameter: it must hold at least one "
                         "epoch index, but got none.")
    # Hypnogram epochs lying completely inside the recording.
    lo = max(0, math.ceil((0.0 - hyp.start) / YASA_EPOCH_S - 1e-9))
    hi = min(hyp.n_epochs,
             math.floor((recording.duration - hyp.start) / YASA_EPOCH_S + 1e-9))
    first, stop = (int(idx.min()), int(idx.max()) + 1) if span == "window" else (lo, hi)
    if idx.min() < max(lo, first) or idx.max() >= min(hi, stop):
        raise ValueError(f"Invalid value for the 'indices' parameter: epochs must lie within "
                         f"the recording, i.e. in {lo}..{hi - 1}, but got {idx.min()}.."
                         f"{idx.max()}.")
    eeg = resolve_channel(recording, eeg_name) if eeg_name else _default_eeg(recording)
    t0 = time.perf_counter()
    labels, _ = yasa_stages(recording, eeg, eog_name, emg_name,
                            start_s=hyp.onset(first), n_epochs=stop - first)
    runtime = time.perf_counter() - t0
    scored = idx if score is None else np.asarray(score, dtype=np.int64).ravel()
    if scored.size == 0 or not np.isin(scored, idx).all():
        raise ValueError("Invalid value for the 'score' parameter: it must be a non-empty "
                         f"subset of 'indices', but got {scored.size} epochs, "
                         f"{int((~np.isin(scored, idx)).sum())} of them outside 'indices'.")
    pred = [labels[i - first] for i in scored]
    out = stage_metrics([hyp[int(i)] for i in scored], pred)
    out.update({
        "runtime_s": round(runtime, 3),
        "span": span,
        "staged_epochs": [first, stop],
        "channels": {"eeg": eeg,
                     "eog": resolve_channel(recording, eog_name, "eog_name") if eog_name
                     else None,
                     "emg": resolve_channel(recording, emg_name, "emg_name") if emg_name
                     else None},
    })
    return out
