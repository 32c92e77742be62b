"""Training examples from a scored night: epoch images, expert stages and reasoning targets.

One example per 30-s epoch of the standard window: the image from THE renderer
(:func:`~eegvlm_desktop.core.picture.rendering.render_night`), the expert's AASM stage, and a
chain-of-thought answer built from the epoch's *measured* evidence
(:mod:`~eegvlm_desktop.core.picture.evidence`), so every statement the model learns to write is
true of the signal and the final answer is always the expert's stage.

A dataset is saved as one compressed ``.npz`` (images, stages, answers, metadata) so a
training run on another machine (a lent GPU) needs neither MNE nor YASA.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.sequence import StageSequenceModel

DATASET_FORMAT = 1


@dataclass
class NightData:
    """Examples of one night (or several concatenated)."""

    images: np.ndarray  # (n, 224, 224, 3) uint8
    stages: list[str]
    answers: list[str]
    epochs: np.ndarray  # epoch index in the source recording
    night: np.ndarray  # which source night each example comes from
    meta: dict = field(default_factory=dict)
    #: (n, k, 224, 224, 3) uint8: k perturbed renderings of each example for training
    #: (see :mod:`.augment`), or None. Evaluation never reads them.
    variants: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stages)

    def subset(self, idx: np.ndarray) -> "NightData":
        """The examples at positions ``idx`` (e.g. one cross-validation fold)."""
        idx = np.asarray(idx, dtype=int)
        return NightData(self.images[idx], [self.stages[i] for i in idx],
                         [self.answers[i] for i in idx], self.epochs[idx], self.night[idx],
                         dict(self.meta),
                         None if self.variants is None else self.variants[idx])

    def stage_indices(self) -> np.ndarray:
        return np.array([STAGES.index(s) for s in self.stages], dtype=np.int64)

    def sequence_model(self, balanced: bool = True, rows: np.ndarray | None = None
                       ) -> StageSequenceModel:
        """The night-context model of these examples' hypnograms (one count per night).

        ``balanced`` must match the training run's ``TrainSettings.balance``. ``rows``
        restricts it to some examples (a fold's training blocks) without copying images.
        """
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=int)
        stages = np.asarray(self.stages, dtype=object)[rows]
        night, epochs = self.night[rows], self.epochs[rows]
        nights = [(list(stages[night == k]), epochs[night == k]) for k in np.unique(night)]
        recs = self.meta.get("recordings") or []
        return StageSequenceModel.fit_many(
            nights, balanced=balanced,
            source=f"expert hypnograms of the {len(rows)} training epochs"
                   + (f" ({', '.join(map(str, recs))})" if recs else ""))


def build_night(psg: str | Path, hypnogram: str | Path,
                epoch_indices: np.ndarray | None = None, variants: int = 0,
                seed: int = 0) -> NightData:
    """Render, measure and write reasoning targets for the scored epochs of one night.

    Parameters
    ----------
    psg, hypnogram : path
        The recording and its expert hypnogram (any format ``read_hypnogram`` reads).
    epoch_indices : array of int, optional
        Epochs to use; default: the standard window (sleep period plus 30 min of wake
        on each side, unscored epochs excluded; see ``core.protocol``).
    variants : int
        Perturbed renderings per example for augmented training (0: none); see
        :func:`~.augment.render_variants`.
    seed : int
        Seed of the variants.
    """
    # Imported here so that loading a saved dataset (e.g. on a GPU machine for training)
    # needs neither MNE nor YASA.
    from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.picture.cot import format_answer, reasoning_steps
    from eegvlm_desktop.core.picture.evidence import measure_night
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.recording.montage import describe_roles, pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.staging.protocol import standard_window

    rec = read_recording(psg)
    n = rec.n_epochs(30.0)
    res = read_hypnogram(hypnogram, recording_start=rec.meas_date,
                         recording_duration=rec.duration)
    hyp = res.hypnogram
    if check_fit(hyp, n, 30.0):
        hyp = fit_to_recording(hyp, n, "crop_or_pad")
    idx = standard_window(hyp) if epoch_indices is None else np.asarray(epoch_indices, int)
    stages = [hyp[int(i)] for i in idx]
    keep = [k for k, s in enumerate(stages) if s in STAGES]
    idx = idx[keep]
    stages = [stages[k] for k in keep]
    if len(idx) == 0:
        raise EEGVLMError(f"{Path(hypnogram).name} has no scored epochs to learn from.")
    roles = pick_roles(rec.ch_names, rec.ch_types)
    images = render_night(rec, roles, idx)
    evidence = measure_night(rec, roles, idx)
    answers = [format_answer(reasoning_steps(ev, st), st) for ev, st in zip(evidence, stages)]
    extra = None
    if variants:
        from eegvlm_desktop.core.picture.augment import AUGMENT_VERSION, render_variants

        extra = render_variants(rec, roles, idx, variants, seed)
    meta = {"format": DATASET_FORMAT, "renderer_version": RENDERER_VERSION,
            "recordings": [Path(psg).name], "hypnograms": [Path(hypnogram).name],
            "channel_roles": describe_roles(roles, rec.ch_names),
            "label_mapping": [list(m) for m in res.mapping]}
    if variants:
        meta["variants"] = {"per_example": int(variants), "seed": int(seed),
                            "augment_version": AUGMENT_VERSION}
    return NightData(images, stages, answers, np.asarray(idx), np.zeros(len(idx), int), meta,
                     extra)


def concat(nights: list[NightData]) -> NightData:
    """Several nights as one dataset; ``night`` numbers them in order."""
    meta = dict(nights[0].meta)
    for key in ("recordings", "hypnograms", "channel_roles"):
        meta[key] = [v for nd in nights for v in nd.meta.get(key, [])]
    shapes = {None if nd.variants is None else nd.variants.shape[1] for nd in nights}
    if len(shapes) > 1:
        raise ValueError("Invalid value for the 'nights' parameter: every night must have the "
                         f"same number of training variants, but got {sorted(shapes, key=str)}.")
    variants = (None if None in shapes
                else np.concatenate([nd.variants for nd in nights]))
    return NightData(np.concatenate([nd.images for nd in nights]),
                     [s for nd in nights for s in nd.stages],
                     [a for nd in nights for a in nd.answers],
                     np.concatenate([nd.epochs for nd in nights]),
                     np.concatenate([np.full(len(nd), k) for k, nd in enumerate(nights)]),
                     meta, variants)


def save_dataset(data: NightData, path: str | Path) -> Path:
    """Write ``data`` as one compressed npz (no pickle: strings are stored as JSON)."""
    path = Path(path)
    np.savez_compressed(path, images=data.images, epochs=data.epochs, night=data.night,
                        text=np.array(json.dumps({"stages": data.stages,
                                                  "answers": data.answers,
                                                  "meta": data.meta})),
                        **({} if data.variants is None else {"variants": data.variants}))
    return path


def load_dataset(path: str | Path) -> NightData:
    """Read a dataset written by :func:`save_dataset`; refuse other renderer versions."""
    with np.load(Path(path), allow_pickle=False) as z:
        text = json.loads(str(z["text"]))
        data = NightData(z["images"], text["stages"], text["answers"], z["epochs"], z["night"],
                         text["meta"], z["variants"] if "variants" in z.files else None)
    if data.meta.get("renderer_version") != RENDERER_VERSION:
        raise EEGVLMError(
            f"The dataset {Path(path).name} was rendered with renderer version "
            f"{data.meta.get('renderer_version')!r}, but this code renders version "
            f"{RENDERER_VERSION!r}. Rebuild it from the recordings.")
    return data
