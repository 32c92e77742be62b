"""Cohort evidence for a whole recording: RobustSleepNet and YASA's classifier, no pickle.

Both stagers were trained on thousands of nights of other cohorts and see the same recording
the image model sees; :mod:`eegvlm_desktop.core.staging.fusion` pools their answers with the
image model's. Their weights ship inside the model folder (``cohort/``), listed with sha256
in the manifest like every other file:

* ``robustsleepnet.safetensors`` -- RobustSleepNet (Guillot & Thorey 2021; MIT, Dreem),
  re-implemented in :mod:`.robustsleepnet`. Inputs: every EEG channel the montage roles use
  plus the EOG, at any rate and gain.
* ``yasa_eeg.txt`` + ``yasa_eeg.json`` -- YASA 0.8.1's EEG-only LightGBM classifier
  (BSD-3), converted once from the joblib file YASA ships to LightGBM's own text format by
  ``scripts/convert_yasa_classifier.py``, so that no pickle is ever loaded here. Features are
  YASA's own (``yasa.SleepStaging(...).get_features()``) on the central EEG channel.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eegvlm_desktop.core.stages import STAGES

from .memory import release_free_memory

COHORT_DIR = "cohort"
RSN_FILE = "robustsleepnet.safetensors"
YASA_FILE = "yasa_eeg.txt"
YASA_META = "yasa_eeg.json"
#: YASA refuses less than 5 minutes and rates below 80 Hz (it resamples to 100 Hz itself).
YASA_MIN_EPOCHS = 10
YASA_MIN_RATE = 80.0
YASA_RATE = 100.0
#: Preference order of the EEG role given to YASA (its classifier was trained on C4-M1).
_YASA_ROLES = ("eeg_central", "eeg_frontal", "eeg_occipital")
_RSN_ROLES = ("eeg_frontal", "eeg_central", "eeg_occipital", "eog")


@dataclass
class CohortEvidence:
    """Per-epoch answers of the cohort stagers for every epoch of one recording.

    Attributes
    ----------
    log_proba : dict
        ``{source: (n_epochs, 5) log-probabilities}`` in :data:`STAGES` order, for the
        sources that could run ('rsn', 'yasa').
    channels : dict
        ``{source: [channel names it read]}``.
    notes : list of str
        Why a source is missing or what was done to the input (resampling), for the user.
    seconds : dict
        Wall time per source.
    embedding : dict
        ``{"rsn": (n_epochs, 100)}``: RobustSleepNet's sequence embedding, the input of its
        classifier (what adapting a model to a recording re-fits; :mod:`..core.staging.adapt`).
    """

    log_proba: dict[str, np.ndarray] = field(default_factory=dict)
    channels: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)


class CohortStager:
    """The cohort stagers of one model folder, loaded once and reused for every recording.

    Parameters
    ----------
    folder : str or Path
        The model folder; its ``cohort/`` sub-folder holds the files named above. The
        caller has already verified their checksums (``load_model`` checks every file the
        manifest lists).
    """

    def __init__(self, folder: str | Path) -> None:
        from safetensors.numpy import load_file

        from .robustsleepnet import load_robustsleepnet_arrays

        root = Path(folder) / COHORT_DIR
        self.rsn = load_robustsleepnet_arrays(load_file(str(root / RSN_FILE)))
        self._yasa_path = root / YASA_FILE
        meta = json.loads((root / YASA_META).read_text(encoding="utf-8"))
        self._yasa_classes: list[str] = list(meta["classes"])
        self._yasa_features: list[str] = list(meta["features"])
        self._booster: Any = None  # read on first use: 7 MB of text

    @staticmethod
    def available(folder: str | Path) -> bool:
        """True when ``folder`` has the cohort files."""
        root = Path(folder) / COHORT_DIR
        return all((root / f).is_file() for f in (RSN_FILE, YASA_FILE, YASA_META))

    # ------------------------------------------------------------------ sources
    def _rsn(self, recording: Any, picks: list[int], ev: CohortEvidence) -> None:
        from .robustsleepnet import predict, preprocess

        t0 = time.perf_counter()
        n = recording.n_epochs(30.0)
        # One channel at a time: the pipeline is per channel, and a 24-h night at 256 Hz is
        # ~180 MB per channel in float64 before it is resampled to 60 Hz.
        spec = np.concatenate([preprocess([recording.get_data([i])[0]], [recording.sfreq])[:n]
                               for i in picks], axis=1)
        # The filtering's ~90 MB of freed temporaries would stay resident under the network's
        # own (measured on the example night: the peak of `eegvlm stage`, 780 MB).
        release_free_memory()
        # The caller's torch threads (the app's worker uses all cores but one). Measured on
        # this 2-core machine, idle: 2.6 s on one thread, 1.35 s on two; with the cores
        # oversubscribed by other processes two threads collapsed to 27-38 s.
        # 16 windows a forward, not 32: as fast on 2 cores (prepare 2.5-2.7 vs 2.6-3.1 s) and
        # ~20 MB lower at the peak of `eegvlm stage` (759-777 vs 776-801 MB, 3 runs each).
        out = predict(self.rsn, spec, batch_windows=16)
        lp = out["log_proba"].astype(np.float64)
        ev.embedding["rsn"] = out["sequence_embedding"]
        # The mean of log-softmax over windows is a geometric mean: renormalise so that the
        # epoch panel shows probabilities that add up to 1 (the pooled answer is unchanged).
        lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
        ev.log_proba["rsn"] = lp
        ev.channels["rsn"] = [recording.ch_names[i] for i in picks]
        ev.seconds["rsn"] = round(time.perf_counter() - t0, 3)

    def _yasa(self, recording: Any, pick: int, ev: CohortEvidence) -> None:
        import mne

        from .gbdt_text import TextGBDT
        from .yasa_features import RATE, eeg_features

        t0 = time.perf_counter()
        n = recording.n_epochs(30.0)
        name = recording.ch_names[pick]
        if n < YASA_MIN_EPOCHS:
            ev.notes.append(f"YASA left out: it needs at least 5 minutes, the recording has "
                            f"{n} complete 30-s epochs.")
            return
        x = recording.get_data([pick], 0, int(round(n * 30.0 * recording.sfreq)))[0] * 1e-6
        # Gaps of an EDF+D file read as NaN; YASA's filters would spread them over the night.
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        raw = mne.io.RawArray(x[None], mne.create_info(["EEG"], recording.sfreq, ["eeg"]),
                              verbose="error")
        if recording.sfreq < YASA_MIN_RATE:
            ev.notes.append(f"YASA reads {name} resampled from {recording.sfreq:g} Hz to "
                            f"{YASA_RATE:g} Hz (it needs at least {YASA_MIN_RATE:g} Hz; nothing "
                            f"above {recording.sfreq / 2:g} Hz is in the signal).")
        if recording.sfreq != RATE:
            # What yasa.SleepStaging does to its input, with the same MNE call.
            raw.resample(RATE, npad="auto", verbose="error")
        # YASA's own features (its numbers, checked in tests/ml/test_yasa_features.py) without
        # importing YASA: its antropy compiles numba functions on import, ~5 s and ~300 MB.
        names, feats = eeg_features(raw.get_data(units={"eeg": "uV"})[0])
        if self._booster is None:
            # LightGBM's own text model evaluated in numpy (tests/ml/test_gbdt_text.py):
            # importing lightgbm costs ~1 s and ~150 MB (it imports pandas and sklearn).
            self._booster = TextGBDT(self._yasa_path)
        cols = [names.index(f) for f in self._yasa_features]
        proba = self._booster.predict(feats[:, cols])
        order = [self._yasa_classes.index(s) for s in ("W", "N1", "N2", "N3", "R")]
        proba = proba[:, order]
        if len(proba) < n:  # YASA drops a trailing partial epoch only; pad defensively
            proba = np.vstack([proba, np.full((n - len(proba), len(STAGES)), 0.2)])
        ev.log_proba["yasa"] = np.log(np.clip(proba[:n], 1e-6, 1.0))
        ev.channels["yasa"] = [name]
        ev.seconds["yasa"] = round(time.perf_counter() - t0, 3)

    # ------------------------------------------------------------------ entry point
    def evidence(self, recording: Any, roles: dict[str, int | None],
                 should_stop: Callable[[], bool] = lambda: False,
                 exclude: set[int] | None = None) -> CohortEvidence:
        """Run both stagers on the whole recording.

        Parameters
        ----------
        recording : Recording
            The open recording (samples in µV).
        roles : dict
            Montage roles (:func:`~eegvlm_desktop.core.recording.montage.pick_roles`).
        should_stop : callable
            Polled between the stagers; True returns what is done so far.
        exclude : set of int, optional
            Channels the quality check found unusable (flat, volts stored as µV...);
            they are not given to either stager.

        Returns
        -------
        CohortEvidence
            A failing stager is left out with a note; it never raises for bad signals.
        """
        ev = CohortEvidence()
        exclude = exclude or set()
        picks = []
        for role in _RSN_ROLES:
            i = roles.get(role)
            if i is not None and i not in picks and i not in exclude:
                picks.append(i)
        if recording.n_epochs(30.0) < 1:
            ev.notes.append("Cohort stagers left out: the recording is shorter than one "
                            "30-s epoch.")
            return ev
        if not picks:
            ev.notes.append("Cohort stagers left out: no usable EEG or EOG channel.")
            return ev
        try:
            self._rsn(recording, picks, ev)
        except Exception as err:  # noqa: BLE001 - an optional stager never stops staging
            ev.notes.append(f"RobustSleepNet left out: {err}")
        # ~170 MB that RobustSleepNet freed would otherwise stay resident under YASA's peak.
        release_free_memory()
        if should_stop():
            return ev
        pick = next((roles[r] for r in _YASA_ROLES
                     if roles.get(r) is not None and roles[r] not in exclude), None)
        if pick is None:
            ev.notes.append("YASA left out: no usable EEG channel.")
            return ev
        try:
            self._yasa(recording, pick, ev)
        except Exception as err:  # noqa: BLE001 - an optional stager never stops staging
            # YASA validates with assert (e.g. its own minimum length), pandas and numpy raise
            # their own types: whatever it is, say so and pool without YASA.
            ev.notes.append(f"YASA left out: {err or type(err).__name__}")
        release_free_memory()
        return ev
