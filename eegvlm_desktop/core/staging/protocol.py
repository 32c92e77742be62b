"""The evaluation protocol: which epochs are scored, and how a night is split for CV.

Sleep-EDF's SC recordings last about 22 hours, most of it daytime wake. Scoring all of it
would let any classifier that says "W" look excellent, so the usual practice (DeepSleepNet,
AttnSleep, YASA's and GSSC's reference numbers in the design notes) keeps the *sleep period*
plus 30 minutes of wake on each side: the **standard window**. On SC4001 it holds 841 epochs:
the first sleep epoch is 1021, the last 1741 (721 epochs), plus 2 x 60 margin epochs.

In-night cross-validation uses **contiguous blocks** in time order rather than shuffled
epochs: neighbouring 30-s epochs are nearly copies of each other, so a shuffled split would
test on the near-twins of training epochs and flatter every model.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
from eegvlm_desktop.core.stages import ART, UNS

#: Stages that count as sleep when locating the sleep period.
SLEEP_STAGES: tuple[str, ...] = ("N1", "N2", "N3", "R")

PROTOCOL_TEXT = (
    "Evaluation protocol. Epochs are 30 s long and labelled with the five AASM stages "
    "(W, N1, N2, N3, R); Sleep-EDF's R&K scores are mapped with S3 and S4 merged into N3, "
    "and movement-time or unscored epochs are excluded. Only the standard window is scored: "
    "from 30 min before the first sleep epoch (N1, N2, N3 or R) to 30 min after the last "
    "one, clipped to the recording, without unscored or artefact epochs (841 epochs on "
    "Sleep-EDF SC4001). Zero-shot models (YASA 0.8.1) are run on the window's span of the "
    "recording, since their features are normalised over the data they are given. Models "
    "trained on the night itself are evaluated by blocked cross-validation: the window is cut "
    "into k contiguous blocks of near-equal size in time order, each block is the test set "
    "once and the others are the training set, so every epoch is predicted exactly once by a "
    "model that never saw it; this still flatters such models, as train and test share one "
    "subject. Reported numbers are accuracy, macro-F1 over the five stages, Cohen's kappa, "
    "per-stage F1 and the confusion matrix (rows expert, columns predicted)."
)


def standard_window(hyp: Hypnogram, wake_margin_min: float = 30.0) -> np.ndarray:
    """Indices of the epochs of the standard scoring window.

    The window runs from ``wake_margin_min`` minutes before the first sleep epoch to
    ``wake_margin_min`` minutes after the last one (both sleep epochs included), clipped to
    the hypnogram; unscored (``UNS``) and artefact (``ART``) epochs inside it are dropped.

    Parameters
    ----------
    hyp : Hypnogram
        Expert hypnogram; sleep is any of N1, N2, N3, R.
    wake_margin_min : float
        Margin on each side, in minutes. It is converted to whole epochs, rounded to the
        nearest (30 min = 60 epochs of 30 s).

    Returns
    -------
    ndarray of int64
        Sorted epoch indices into ``hyp``.

    Raises
    ------
    ValueError
        ``wake_margin_min`` is negative or not a finite number, or ``hyp`` has no sleep epoch.
    """
    if (isinstance(wake_margin_min, bool) or not isinstance(wake_margin_min, numbers.Real)
            or not math.isfinite(wake_margin_min) or wake_margin_min < 0):
        raise ValueError("Invalid value for the 'wake_margin_min' parameter: it must be a "
                         f"finite number of minutes >= 0, but got {wake_margin_min!r}.")
    stages = np.asarray(hyp.stages, dtype=object)
    sleep = np.flatnonzero(np.isin(stages, SLEEP_STAGES))
    if len(sleep) == 0:
        raise ValueError("Invalid value for the 'hyp' parameter: the standard window needs at "
                         f"least one sleep epoch ({', '.join(SLEEP_STAGES)}), but this "
                         f"hypnogram of {len(stages)} epochs has none.")
    margin = int(round(wake_margin_min * 60.0 / hyp.epoch_length))
    first = max(0, int(sleep[0]) - margin)
    last = min(len(stages) - 1, int(sleep[-1]) + margin)
    idx = np.arange(first, last + 1, dtype=np.int64)
    return idx[~np.isin(stages[idx], (UNS, ART))]


def block_folds(indices: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split epoch indices into ``k`` contiguous blocks for blocked cross-validation.

    Parameters
    ----------
    indices : array of int
        The epochs to evaluate (e.g. from :func:`standard_window`); they are sorted into time
        order first. Gaps (excluded epochs) are allowed: a block is contiguous in this list.
    k : int
        Number of folds, ``2 <= k <= len(indices)``.

    Returns
    -------
    list of (train, test) pairs of int64 arrays
        Fold ``i`` tests the ``i``-th block in time order and trains on all the others.
        Block sizes differ by at most one epoch; the tests partition ``indices`` exactly.

    Raises
    ------
    ValueError
        ``indices`` is not a 1-D array of distinct integers, or ``k`` is out of range.
    """
    arr = np.asarray(indices)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError("Invalid value for the 'indices' parameter: it must be a 1-D array of "
                         f"integer epoch indices, but got dtype {arr.dtype} with shape "
                         f"{arr.shape}.")
    arr = np.sort(arr.astype(np.int64))
    if arr.size and np.any(np.diff(arr) == 0):
        dup = sorted({int(v) for v in arr[1:][np.diff(arr) == 0]})
        raise ValueError("Invalid value for the 'indices' parameter: each epoch may appear "
                         f"only once, but got duplicates {dup[:5]}.")
    n = int(arr.size)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 2 <= k <= n:
        raise ValueError("Invalid value for the 'k' parameter: it must be an integer from 2 "
                         f"to the number of epochs ({n}), but got {k!r}.")
    # array_split gives the first n % k blocks one extra epoch: sizes differ by at most one.
    blocks = np.array_split(arr, int(k))
    folds = []
    for i, test in enumerate(blocks):
        train = np.concatenate([b for j, b in enumerate(blocks) if j != i])
        folds.append((train, test.copy()))
    return folds
