"""Adapt a model to a recording (or a lab's exported nights) from the expert's labels.

The inputs of the pooled layer (:mod:`eegvlm_desktop.core.staging.adapt`) are computed here
-- the cohort stagers on the whole night and the image model on the labelled epochs -- and
the adapted layer is saved as a normal model folder: the parent's files, with
RobustSleepNet's classifier and the fusion weights replaced, and a card that names the
parent, the data, the settings and the held-out accuracy before and after. The app and
``eegvlm stage`` then use it like any model; the parent stays where it was.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError
from eegvlm_desktop.core.stages import STAGES
from eegvlm_desktop.core.staging.adapt import (AdaptReport, AdaptSettings, Head, HeadData,
                                               adapt_layer)
from eegvlm_desktop.core.staging.metrics import stage_metrics
from eegvlm_desktop.ml.adapt_card import (RSN_FILE, AdaptOutcome, adapted_card, pool_weights,
                                          save_adapted)
from eegvlm_desktop.ml.cohort import COHORT_DIR
from eegvlm_desktop.ml.variants import EPOCH_S, variant_views

REHEARSAL_FILE = f"{COHORT_DIR}/rehearsal.safetensors"
#: Re-exported: the adapted folder's writer lives in :mod:`.adapt_card`.
__all__ = ["AdaptOutcome", "RSN_FILE", "adapt_and_save", "adapt_from_exports",
           "adapt_to_recording", "load_rehearsal", "night_variants", "parent_head",
           "recording_inputs", "save_adapted", "split_held_out"]
#: Share of the labelled epochs (the last ones in time) held out to measure the adaptation.
HOLDOUT = 0.2


def parent_head(folder: str | Path, manifest: dict) -> Head:
    """The parent's pooled layer: its fusion weights and RobustSleepNet's classifier."""
    from safetensors.numpy import load_file

    fusion = manifest.get("fusion") or {}
    weights = fusion.get("weights") or {}
    if not all(weights.get(s, 0) > 0 for s in ("rsn", "yasa")) or not \
            (Path(folder) / RSN_FILE).is_file():
        raise EEGVLMError(
            f"The model {Path(folder).name!r} cannot be adapted to a recording: adapting "
            "re-fits the pooled answer of RobustSleepNet and YASA, and this model pools "
            f"{', '.join(sorted(weights)) or 'nothing'}. Choose a model with cohort stagers "
            "(the shipped default has them).")
    arrays = load_file(str(Path(folder) / RSN_FILE))
    return Head.from_parent(weights, arrays["classifier.weight"], arrays["classifier.bias"])


def load_rehearsal(folder: str | Path, exclude_epochs: Sequence[int] = ()) -> HeadData | None:
    """The parent's fusion-training epochs shipped with the model (None without the file);
    ``exclude_epochs`` leaves some out (the bench: a block of the same night)."""
    from safetensors.numpy import load_file

    path = Path(folder) / REHEARSAL_FILE
    if not path.is_file():
        return None
    z = load_file(str(path))
    keep = ~np.isin(z["epochs"], np.asarray(exclude_epochs, dtype=z["epochs"].dtype))
    return HeadData(z["vlm"][keep], z["yasa"][keep], z["seq"][keep], z["y"][keep])


def recording_inputs(recording: Any, roles: dict[str, int | None], epochs: Sequence[int],
                     model: Any, cohort: Any, images: np.ndarray | None = None,
                     should_stop: Callable[[], bool] = lambda: False) -> HeadData:
    """The pooled layer's inputs for ``epochs`` of ``recording`` (no stages).

    Parameters
    ----------
    recording : Recording or SignalRecording
    roles : dict
        Montage roles.
    epochs : sequence of int
        Epoch numbers in the recording.
    model : EEGVLM
        The image model (its direct answer).
    cohort : CohortStager
        The model folder's cohort stagers; they read the whole night.
    images : ndarray, optional
        The epochs' images (an export's); rendered from ``recording`` when None.

    Raises
    ------
    EEGVLMError
        RobustSleepNet or YASA could not run on this recording (the note says why).
    """
    from eegvlm_desktop.core.staging.fusion import to_log
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    ep = np.asarray(epochs, dtype=int)
    ev = cohort.evidence(recording, roles, should_stop)
    if should_stop():
        raise InterruptedError("adaptation cancelled")
    if "rsn" not in ev.embedding or "yasa" not in ev.log_proba:
        raise EEGVLMError("This recording cannot be used to adapt the model: "
                          + (" ".join(ev.notes) or "RobustSleepNet or YASA could not run."))
    if images is None:
        from eegvlm_desktop.core.picture.rendering import render_night

        chunks = []
        for k in range(0, len(ep), 64):
            if should_stop():
                raise InterruptedError("adaptation cancelled")
            chunks.append(predict_probs(model, render_night(recording, roles,
                                                            list(ep[k:k + 64]))))
        vlm = np.concatenate(chunks) if chunks else np.zeros((0, len(STAGES)))
    else:
        vlm = predict_probs(model, images)
    return HeadData(to_log(vlm), ev.log_proba["yasa"][ep], ev.embedding["rsn"][ep])


def split_held_out(n: int, share: float = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """(tune, held-out) positions of ``n`` labelled epochs in time order: the last
    ``share`` is held out (none below 10 epochs, where it would measure nothing)."""
    cut = n - int(round(share * n)) if n >= 10 else n
    return np.arange(cut), np.arange(cut, n)


def _metrics(head: Head, x: HeadData) -> dict[str, Any]:
    m = stage_metrics([STAGES[i] for i in x.y], [STAGES[i] for i in head.logits(x).argmax(1)])
    return {k: (round(m[k], 4) if isinstance(m[k], float) else m[k])
            for k in ("accuracy", "macro_f1", "kappa", "n_epochs") if k in m}


def adapt_and_save(parent_folder: str | Path, data: HeadData, out_folder: str | Path, *,
                   source: dict[str, Any], settings: AdaptSettings | None = None,
                   held_out: HeadData | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   variants: tuple[HeadData, np.ndarray] | None = None,
                   refit: tuple[HeadData, tuple[HeadData, np.ndarray] | None] | None = None
                   ) -> AdaptOutcome:
    """Fit the pooled layer on ``data`` (labelled, in time order) and save the new model.

    ``held_out`` (labelled epochs never fitted on) measures before/after for the card.
    ``source`` describes the data for the card (recordings, scorer, epochs).
    ``variants`` (training variants, the position in ``data`` of each one's source) are
    fitted on only (:func:`~eegvlm_desktop.core.staging.adapt.adapt_layer`).
    ``refit`` (every labelled epoch, in time order, and its variants): after the held-out
    check, the saved model is fitted again on all of them, the same way; the card then says
    the before/after measured the check fit, not the saved one.
    """
    t0 = time.perf_counter()
    from eegvlm_desktop.ml.vlm.weights import read_manifest

    manifest = read_manifest(parent_folder)
    parent = parent_head(parent_folder, manifest)
    settings = settings or AdaptSettings()
    rehearsal = load_rehearsal(parent_folder)

    def fit(x: HeadData, var: tuple[HeadData, np.ndarray] | None) -> tuple[Head, AdaptReport]:
        v, src = var if var is not None and len(var[0]) else (None, None)
        return adapt_layer(parent, x, rehearsal, settings, should_stop, v, src)

    head, report = fit(data, variants)
    before = after = None
    if held_out is not None and len(held_out):
        before, after = _metrics(parent, held_out), _metrics(head, held_out)
    check = None
    if refit is not None:
        check = report
        head, report = fit(*refit)
    outcome = AdaptOutcome(Path(out_folder), report, before, after,
                           round(time.perf_counter() - t0, 2), check)
    card = adapted_card(parent_folder, manifest, out_folder, source, settings, outcome,
                        0 if held_out is None else len(held_out))
    card["adaptation"]["pool_weights"] = pool_weights(parent, head, report.chosen)
    save_adapted(parent_folder, manifest, head, out_folder, card)
    return outcome


def _night_inputs(recording: Any, roles: dict, epochs: np.ndarray, stages: Sequence[str],
                  model: Any, cohort: Any, images: np.ndarray | None,
                  should_stop: Callable[[], bool]) -> HeadData:
    order = np.argsort(epochs, kind="stable")  # the guard's folds are stretches of time
    x = recording_inputs(recording, roles, epochs[order], model, cohort,
                         None if images is None else images[order], should_stop)
    x.y = np.asarray([STAGES.index(stages[i]) for i in order])
    return x


def night_variants(recording: Any, roles: dict, x: HeadData, epochs: np.ndarray,
                   model: Any, cohort: Any, settings: AdaptSettings,
                   should_stop: Callable[[], bool], among: np.ndarray | None = None,
                   done: Callable[[int], None] = lambda k: None
                   ) -> tuple[HeadData, np.ndarray]:
    """Training variants of the labelled ``epochs`` (sorted; ``x`` their inputs, with y),
    of those at positions ``among`` only when given: each variant's inputs and the position
    in ``x`` of its source epoch. The stagers run on each variant's whole night (RobustSleepNet
    and YASA read the night around an epoch); ``done(k)`` after each variant."""
    parts, src = [], []
    among = np.arange(len(epochs)) if among is None else np.asarray(among, dtype=int)
    for k, (_, view, step) in enumerate(variant_views(recording, settings)):
        e = epochs[among] - step
        pos = among[(e >= 0) & (e < view.n_epochs(EPOCH_S))]
        if len(pos):
            v = recording_inputs(view, roles, epochs[pos] - step, model, cohort, None,
                                 should_stop)
            v.y = x.y[pos]
            parts.append(v)
            src.append(pos)
        done(k)
    if not parts:
        return HeadData(np.zeros((0, len(STAGES))), np.zeros((0, len(STAGES))),
                        np.zeros((0, x.seq.shape[1])), np.zeros(0, dtype=int)), \
            np.zeros(0, dtype=int)
    return _concat(parts), np.concatenate(src)


def _concat(parts: Sequence[HeadData]) -> HeadData:
    return HeadData(np.concatenate([p.vlm for p in parts]),
                    np.concatenate([p.yasa for p in parts]),
                    np.concatenate([p.seq for p in parts]),
                    np.concatenate([p.y for p in parts]))


def adapt_from_exports(parent_folder: str | Path, folders: Sequence[str | Path],
                       out_folder: str | Path, eval_folders: Sequence[str | Path] = (), *,
                       settings: AdaptSettings | None = None, refit: bool = True,
                       should_stop: Callable[[], bool] = lambda: False,
                       progress: Callable[[int, int], None] = lambda done, total: None
                       ) -> AdaptOutcome:
    """Adapt ``parent_folder`` to a lab's exported nights (``eegvlm finetune``).

    Each export carries its night's signal (``signal.npz``), from which the cohort stagers
    are run; the image model reads the exported images. Held out: ``eval_folders`` when
    given, else the last 20 % of each export's epochs in time; in that case, with ``refit``
    (the default), the saved model is fitted again on every labelled epoch after the
    held-out check (a lab that exports half a night should not lose a fifth of it to the
    check). With training variants in ``settings``, the stagers also run on each variant of
    the night's signal; the check never fits a held-out epoch's variants.

    Raises
    ------
    EEGVLMError
        An export without the signal (written by an older version), a model without cohort
        stagers, or a recording the stagers cannot read.
    """
    from eegvlm_desktop.core.export.finetune_folder import export_signal, load_finetune_dataset
    from eegvlm_desktop.ml.cohort import CohortStager
    from eegvlm_desktop.ml.vlm.weights import load_model

    model, _, manifest = load_model(parent_folder)
    parent_head(parent_folder, manifest)  # a model without cohort stagers fails here
    cohort = CohortStager(parent_folder)
    settings = settings or AdaptSettings()
    settings.validate()
    every = [(Path(f), False) for f in folders] + [(Path(f), True) for f in eval_folders]
    nights, tune, held, evals, names, var, var_src = [], [], [], [], [], [], []
    n_before = 0
    for k, (folder, is_eval) in enumerate(every):
        progress(k, len(every))
        signal = export_signal(folder)
        if signal is None:
            raise EEGVLMError(
                f"The export '{folder}' does not carry its night's signal (it was written by "
                "an older version), and adapting a model needs it. Export the night again.")
        data = load_finetune_dataset([folder])
        x = _night_inputs(signal, signal.roles, np.asarray(data.epochs), data.stages, model,
                          cohort, data.images, should_stop)
        if is_eval:
            evals.append(x)
            continue
        names += [str(r.get("name", r)) if isinstance(r, dict) else str(r)
                  for r in data.meta.get("recordings") or []]
        t, h = (np.arange(len(x)), np.arange(0)) if eval_folders else split_held_out(len(x))
        if settings.has_variants:
            ep = np.sort(np.asarray(data.epochs, dtype=int))
            v, src = night_variants(signal, signal.roles, x, ep, model, cohort, settings,
                                    should_stop)
            var.append(v)
            var_src.append(src + n_before)
        nights.append(x)
        tune.append(t + n_before)
        held.append(h + n_before)
        n_before += len(x)
    progress(len(every), len(every))
    every_x = _concat(nights)
    tune_at, held_at = np.concatenate(tune), np.concatenate(held)
    all_var = (_concat(var), np.concatenate(var_src)) if var else None
    source = {"recordings": names, "exports": [str(Path(f).name) for f in folders],
              "eval_exports": [str(Path(f).name) for f in eval_folders],
              "n_epochs": int(len(tune_at))}
    redo = None
    if refit and len(held_at):
        source["n_epochs"] = int(len(every_x))
        source["held_out_check_epochs"] = int(len(held_at))
        redo = (every_x, all_var)
    return adapt_and_save(parent_folder, every_x.subset(tune_at), out_folder, source=source,
                          settings=settings,
                          held_out=_concat(evals) if evals else (
                              every_x.subset(held_at) if len(held_at) else None),
                          should_stop=should_stop, variants=_among(all_var, tune_at),
                          refit=redo)


def _among(variants: tuple[HeadData, np.ndarray] | None, rows: np.ndarray
           ) -> tuple[HeadData, np.ndarray] | None:
    """The variants whose source is one of ``rows`` (sorted positions), with their source
    given as a position in ``rows``: a held-out epoch's variants are never fitted on."""
    if variants is None:
        return None
    v, src = variants
    mine = np.flatnonzero(np.isin(src, rows))
    return v.subset(mine), np.searchsorted(rows, src[mine])


def adapt_to_recording(parent_folder: str | Path, recording: Any, labels: dict[int, str],
                       out_folder: str | Path, *, name: str,
                       settings: AdaptSettings | None = None,
                       should_stop: Callable[[], bool] = lambda: False,
                       progress: Callable[[int, int], None] = lambda done, total: None
                       ) -> AdaptOutcome:
    """Adapt ``parent_folder`` to the open recording from the expert's ``labels``
    (``{epoch: stage}``, confirmed and corrected epochs); the last 20 % in time are held
    out to show before -> after, and their training variants (``settings``) are never
    fitted on. The app's "Adapt to this recording" runs this on its worker thread."""
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.ml.cohort import CohortStager
    from eegvlm_desktop.ml.vlm.weights import load_model

    epochs = np.asarray(sorted(e for e, s in labels.items() if s in STAGES), dtype=int)
    if len(epochs) == 0:
        raise EEGVLMError("Nothing to adapt to: no epoch of this recording has an expert "
                          f"stage ({', '.join(STAGES)}). Score or confirm some epochs first.")
    settings = settings or AdaptSettings()
    settings.validate()
    steps = 3 + len(variant_views(recording, settings))
    progress(0, steps)
    if should_stop():
        raise InterruptedError("adaptation cancelled")
    model, _, manifest = load_model(parent_folder)
    parent_head(parent_folder, manifest)
    roles = pick_roles(recording.ch_names, recording.ch_types)
    progress(1, steps)
    cohort = CohortStager(parent_folder)
    x = _night_inputs(recording, roles, epochs, [labels[int(e)] for e in epochs], model,
                      cohort, None, should_stop)
    progress(2, steps)
    t, h = split_held_out(len(x))
    # Only the tuning epochs' variants: the held-out ones measure before -> after.
    v, src = (night_variants(recording, roles, x, epochs, model, cohort, settings,
                             should_stop, among=t, done=lambda k: progress(3 + k, steps))
              if settings.has_variants else (None, None))
    outcome = adapt_and_save(parent_folder, x.subset(t), out_folder,
                             source={"recordings": [name], "n_epochs": int(len(t)),
                                     "held_out_epochs": [int(e) for e in epochs[h]]},
                             settings=settings, held_out=x.subset(h) if len(h) else None,
                             should_stop=should_stop,
                             variants=None if v is None else (v, src))
    progress(steps, steps)
    return outcome
