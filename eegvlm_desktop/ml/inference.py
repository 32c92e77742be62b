"""Whole-night staging and per-epoch explanations, thread-agnostic (no Qt, no threads here).

:class:`InferenceEngine` owns a loaded model and an opened recording. The GUI's model worker
(``gui/workers.py``) calls it from its own thread; everything it needs from the GUI comes in
as plain callables (``should_stop``, ``on_batch``, ``on_text``) and everything it gives back
is numpy arrays and dataclasses. :class:`EpochQueue` is the queue of epochs still to stage;
the GUI thread moves the epoch on screen to its front while a run is going, so it holds a
lock.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError, is_oom
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION, render_night
from eegvlm_desktop.core.recording.montage import EEG_ROLES, describe_roles, pick_roles
from eegvlm_desktop.core.staging.fusion import SOURCES, Fusion, to_log
from eegvlm_desktop.core.staging.quality_gate import epoch_quality

#: Streamed in place of the reasoning while the night's evidence is measured (first time only).
MEASURING_TEXT = "Measuring the night's evidence (once per recording)…"

#: Epochs per forward in the app: small enough that Cancel and a jump of the on-screen epoch
#: take effect within ~0.1 s on 2 CPU cores, big enough to keep most of the batched speed.
APP_BATCH = 16


class EpochQueue:
    """Epochs waiting for the model, taken in batches; thread-safe.

    Parameters
    ----------
    epochs : iterable of int
        The epochs to stage, in the order to take them unless prioritised.
    """

    def __init__(self, epochs: Iterable[int]) -> None:
        self._lock = threading.Lock()
        self._pending: list[int] = list(dict.fromkeys(int(e) for e in epochs))
        self.total = len(self._pending)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def prioritise(self, centre: int, radius: int = 2) -> None:
        """Move ``centre`` and its ``radius`` neighbours (if still pending) to the front."""
        wanted = [centre] + [centre + d * s for d in range(1, radius + 1) for s in (1, -1)]
        with self._lock:
            pending = set(self._pending)
            front = [e for e in wanted if e in pending]
            if front:
                chosen = set(front)
                self._pending = front + [e for e in self._pending if e not in chosen]

    def take(self, n: int) -> list[int]:
        """Remove and return up to ``n`` epochs from the front."""
        with self._lock:
            batch, self._pending = self._pending[:n], self._pending[n:]
            return batch


def use_threads(n: int) -> None:
    """Give torch ``n`` compute threads, on the thread that will run the model.

    Call it on the worker's own thread: torch's intra-op pool of a thread that never set it
    ran ~10x slower here (7 vs 142 epochs/s on 2 cores, measured on a Qt worker thread).
    """
    import torch

    torch.set_num_threads(n)


def threads() -> int:
    """torch's compute threads on this thread (what :func:`use_threads` set, else its default)."""
    import torch

    return torch.get_num_threads()


@dataclass
class RunReport:
    """How a staging run ended."""

    reason: str  # 'done' or 'cancelled'
    epochs: int
    seconds: float
    device: str
    batch_size: int
    notes: list[str]
    #: ``{source: (n_epochs, 5) probabilities}`` of every source pooled into the answer
    #: (NaN rows where a source has not run); shown per epoch in the epoch panel.
    sources: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``{epoch: reason}`` of the epochs the quality gate found unscorable (no stage given).
    unscorable: dict[int, str] = field(default_factory=dict)


class InferenceEngine:
    """A loaded model applied to one recording.

    Parameters
    ----------
    model, tokenizer
        From :func:`eegvlm_desktop.ml.vlm.weights.load_model`.
    recording : Recording
        The opened night.
    manifest : dict, optional
        The model folder's manifest (its card is shown to the user).
    batch_size : int
        Epochs per forward (halved on a GPU out-of-memory error).
    stager : StageOnlyVLM, optional
        The stage-only forward of ``model`` (:func:`~eegvlm_desktop.ml.vlm.stager.stager_from`),
        used to stage the night; ``model`` stages when it is None.
    cohort : CohortStager, optional
        The folder's cohort stagers (:mod:`eegvlm_desktop.ml.cohort`). With the manifest's
        ``fusion`` weights, the answer of every epoch is the image model's pooled with
        theirs (:mod:`eegvlm_desktop.core.staging.fusion`); without, the image model alone.
    """

    def __init__(self, model: Any, tokenizer: Any, recording: Any,
                 manifest: dict | None = None, batch_size: int = APP_BATCH,
                 cohort: Any = None, stager: Any = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"The 'batch_size' parameter must be a positive integer, "
                             f"but got {batch_size!r}.")
        self.model = model
        #: What stages the night: ``model`` itself, or its stage-only twin.
        self.stager = stager if stager is not None else model
        self.tokenizer = tokenizer
        self.recording = recording
        self.manifest = manifest or {}
        self.batch_size = batch_size
        self.roles = pick_roles(recording.ch_names, recording.ch_types)
        self.channel_map = describe_roles(self.roles, recording.ch_names)
        fusion = self.manifest.get("fusion")
        self.fusion: Fusion | None = (Fusion.from_dict(fusion)
                                      if fusion and cohort is not None else None)
        self.cohort = cohort if self.fusion is not None else None
        n = recording.n_epochs(30.0)
        self.sources: dict[str, np.ndarray] = {s: np.full((n, 5), np.nan) for s in SOURCES}
        self._prepared = False
        self._notes: list[str] = []
        self.unscorable: dict[int, str] = {}

    @classmethod
    def load(cls, folder: str | Path, recording: Any, device: str = "cpu",
             batch_size: int = APP_BATCH, staging_only: bool = False) -> InferenceEngine:
        """Load a model folder for ``recording`` on ``device`` ('cpu', 'cuda', 'auto').

        ``staging_only=True`` (``eegvlm stage``) loads the stage-only forward
        (:mod:`eegvlm_desktop.ml.vlm.stager`: the same probabilities to float rounding,
        without importing open_clip and transformers, ~2.5 s and ~290 MB in a fresh
        process); such an engine stages but cannot explain. A folder whose model it cannot
        build loads in full; a full model stages with its stage-only twin when it has one.

        Raises
        ------
        EEGVLMError
            The folder is not a valid model (ModelFolderError) or CUDA was asked for and
            is not available.
        """
        import torch

        from eegvlm_desktop.ml.vlm.weights import load_model

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise EEGVLMError("The 'device' parameter is 'cuda', but no CUDA GPU is available "
                              "on this machine; choose 'cpu'.")
        from eegvlm_desktop.ml.cohort import CohortStager

        model = tok = None
        if staging_only:
            from eegvlm_desktop.ml.vlm.stager import load_stager, supports
            from eegvlm_desktop.ml.vlm.weights import check_folder

            if supports(check_folder(folder, RENDERER_VERSION)[0]):
                model, manifest = load_stager(folder, device, RENDERER_VERSION)
        stager = None
        if model is None:
            from eegvlm_desktop.ml.vlm.stager import stager_from

            model, tok, manifest = load_model(folder, device,
                                              expected_renderer_version=RENDERER_VERSION)
            # The full model explains; the night is staged by its stage-only twin, the same
            # weights on the faster forward (the in-app run gets `eegvlm stage`'s speed).
            stager = stager_from(model)
        cohort = (CohortStager(folder) if "fusion" in manifest
                  and CohortStager.available(folder) else None)
        return cls(model, tok, recording, manifest, batch_size, cohort, stager)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def images(self, epochs: Sequence[int]) -> np.ndarray:
        """The model's input images for ``epochs`` (THE renderer)."""
        return render_night(self.recording, self.roles, list(epochs))

    def _to_cpu(self) -> None:
        import torch

        self.model.to("cpu")
        self.stager.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _probs(self, images: np.ndarray, notes: list[str]) -> np.ndarray:
        """Stage probabilities, retrying with half the batch, then on CPU, on GPU OOM."""
        from eegvlm_desktop.ml.vlm.predict import predict_probs

        while True:
            try:
                return predict_probs(self.stager, images, self.batch_size)
            except Exception as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(err):
                    raise
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    notes.append(f"GPU out of memory: batch size lowered to {self.batch_size}.")
                elif self.device != "cpu":
                    self._to_cpu()
                    notes.append("GPU out of memory even one epoch at a time: moved to CPU.")
                else:
                    raise EEGVLMError("Out of memory while staging, even one epoch at a time "
                                      "on the CPU. Close other programs and try again.") from err

    def prepare(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Once per recording: the quality gate, then the cohort stagers on the whole night.

        The gate comes first so that channels unusable throughout are not given to the
        cohort stagers either. Both take a few seconds for a night, on this (worker) thread.
        """
        if self._prepared:
            return
        eeg = sorted({self.roles[r] for r in EEG_ROLES if self.roles[r] is not None})
        reasons = epoch_quality(self.recording, eeg) if eeg else []
        self.unscorable = {i: r for i, r in enumerate(reasons) if r}
        if self.unscorable:
            first = min(self.unscorable)
            self._notes.append(f"{len(self.unscorable)} of {len(reasons)} epochs are unscorable "
                               f"and get no stage (first: epoch {first + 1}, "
                               f"{self.unscorable[first]}).")
        if self.cohort is not None:
            # A channel unusable in every epoch would only feed noise to the cohort stagers.
            dead = set()
            if reasons and len(self.unscorable) == len(reasons):
                dead = set(eeg)
            ev = self.cohort.evidence(self.recording, self.roles, should_stop, exclude=dead)
            if should_stop():
                return  # not prepared: the next run computes it again
            for name, lp in ev.log_proba.items():
                self.sources[name] = np.exp(lp)
            self._notes.extend(ev.notes)
            if not ev.log_proba:
                self._notes.append("The cohort stagers could not run: each epoch is staged by "
                                   "the image model alone.")
        self._prepared = True

    def _answer(self, batch: list[int], vlm: np.ndarray) -> np.ndarray:
        """The pooled answer for ``batch`` (the image model alone without cohort evidence);
        NaN rows for unscorable epochs, which get no stage."""
        self.sources["vlm"][batch] = vlm
        out = vlm
        if self.fusion is not None:
            logs = {"vlm": to_log(vlm)}
            for name in ("rsn", "yasa"):
                rows = self.sources[name][batch]
                if np.isfinite(rows).all():
                    logs[name] = to_log(rows)
            out = self.fusion.pool(logs)
        bad = [k for k, e in enumerate(batch) if e in self.unscorable]
        if bad:
            out = out.copy()
            out[bad] = np.nan
        return out

    def _report(self, reason: str, done: int, t0: float, notes: list[str]) -> RunReport:
        return RunReport(reason, done, time.perf_counter() - t0, self.device, self.batch_size,
                         list(self._notes) + notes,
                         {k: v.copy() for k, v in self.sources.items()}, dict(self.unscorable))

    def run(self, queue: EpochQueue, on_batch: Callable[[np.ndarray, np.ndarray], None],
            should_stop: Callable[[], bool] = lambda: False,
            between_batches: Callable[[], None] | None = None) -> RunReport:
        """Stage every epoch of ``queue``, one batch at a time, until done or cancelled.

        Parameters
        ----------
        queue : EpochQueue
            Epochs to stage; may be re-ordered by another thread while this runs.
        on_batch : callable
            ``on_batch(epochs, probs)`` after each batch: int array ``(b,)`` and
            ``(b, 5)`` probabilities. Results already delivered stay valid if a later
            batch fails.
        should_stop : callable
            Polled before each batch; True ends the run with reason ``'cancelled'``.
        between_batches : callable, optional
            Called before each batch (the worker serves an explanation request there, so
            a click on an epoch need not wait for the whole night).
        """
        t0 = time.perf_counter()
        notes: list[str] = []
        done = 0
        self.prepare(should_stop)
        while True:
            if should_stop():
                return self._report("cancelled", done, t0, notes)
            if between_batches is not None:
                between_batches()
            batch = queue.take(self.batch_size)
            if not batch:
                return self._report("done", done, t0, notes)
            images = self.images(batch)
            if should_stop():  # rendering took a while: do not start the forward for nothing
                return self._report("cancelled", done, t0, notes)
            probs = self._answer(batch, self._probs(images, notes))
            on_batch(np.asarray(batch, dtype=int), probs)
            done += len(batch)

    #: The night's measured evidence (``measure_night``), measured on the first explanation.
    _measured: list[Any] | None = None

    def epoch_evidence(self, epoch: int,
                       on_text: Callable[[str], None] | None = None) -> Any:
        """The measured :class:`~eegvlm_desktop.core.picture.evidence.EpochEvidence` of ``epoch``.

        The detectors' thresholds are relative to the whole night, so the night is measured
        once, on the first call (seconds; ``on_text`` gets :data:`MEASURING_TEXT` meanwhile),
        and kept for this recording. Runs on the caller's (the model worker's) thread.
        """
        if self._measured is None:
            from eegvlm_desktop.core.picture.evidence import measure_night

            if on_text is not None:
                on_text(MEASURING_TEXT)
            self._measured = measure_night(self.recording, self.roles)
        if not (isinstance(epoch, (int, np.integer)) and 0 <= epoch < len(self._measured)):
            raise ValueError(f"Invalid value for the 'epoch' parameter: it must be an epoch in "
                             f"0..{len(self._measured) - 1} (the complete 30-s epochs), but got "
                             f"{epoch!r} instead.")
        return self._measured[epoch]

    def explain(self, epoch: int, on_text: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, Any]:
        """The image of ``epoch`` and the model's :class:`Explanation` of it.

        The reasoning is grounded in the epoch's measured evidence and verified step by step
        (:func:`eegvlm_desktop.ml.vlm.explain.explain_epoch`).
        """
        from eegvlm_desktop.ml.vlm.explain import explain_epoch

        if self.tokenizer is None:
            raise EEGVLMError("This model was loaded for staging only (staging_only=True): "
                              "load it with staging_only=False to explain an epoch.")
        evidence = self.epoch_evidence(epoch, on_text)
        image = self.images([epoch])[0]
        return image, explain_epoch(self.model, self.tokenizer, image, evidence=evidence,
                                    on_text=on_text, should_stop=should_stop)
