"""Evaluation logic behind ``eegvlm evaluate``: fold models, night context, reasoning check.

The CLI (:mod:`eegvlm_desktop.cli.evaluate`) parses and prints; the benches reuse these
functions. Out-of-fold probabilities come from blocked cross-validation (see
:func:`~eegvlm_desktop.core.staging.protocol.block_folds`); torch is imported by the functions
that load or run a model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError


def reasoning_check(model, tok, data, indices, n: int) -> dict:
    """Reasoned vs direct answers on ``n`` of ``indices``, spread evenly (held-out ones)."""
    from eegvlm_desktop.ml.vlm.explain import reasoning_agreement

    pick = np.asarray(indices)[np.linspace(0, len(indices) - 1, min(n, len(indices)))
                               .round().astype(int)]
    # Grounded as the app explains an epoch: the targets' measured steps 1-3, step 4 chosen
    # among the texts true of their numbers (issue 19).
    return reasoning_agreement(model, tok, data.images[pick], [data.stages[i] for i in pick],
                               answers=[data.answers[i] for i in pick])


def save_fold_model(model, tok, folder: Path, data, te, fold: int, k: int, settings) -> None:
    """Keep one CV fold's model, its card naming exactly which epochs it never saw."""
    from eegvlm_desktop.ml.vlm.weights import save_model

    card = {"name": folder.name,
            "training_data": {**data.meta, "epochs": len(data) - len(te),
                              "held_out_block": held_out_block(data, te, fold, k)},
            "training": {"settings": settings.to_dict()},
            "metrics": None,
            "note": f"blocked {k}-fold CV model: trained on every block of the standard window "
                    f"except block {fold} (epochs {int(data.epochs[te[0]])}-"
                    f"{int(data.epochs[te[-1]])}), which it never saw"}
    save_model(model.cpu(), tok, folder, card, data.sequence_model(
        settings.balance, rows=np.setdiff1d(np.arange(len(data)), te)))


def held_out_block(data, te, fold: int, k: int) -> dict:
    return {"fold": fold, "k": k, "first_epoch": int(data.epochs[te[0]]),
            "last_epoch": int(data.epochs[te[-1]])}


def saved_fold_probs(folder: Path, data, splits, folds: list[int], k: int, device: str,
                      on_model: Callable | None = None) -> np.ndarray:
    """Out-of-fold probabilities from fold models saved earlier, each checked to fit its block.

    ``on_model(fold, model, tokenizer, test_rows)`` is called with each loaded fold model
    (the reasoning check), as training calls it with each freshly trained one.
    """
    from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.ml.vlm.predict import pick_device, predict_probs
    from eegvlm_desktop.ml.vlm.weights import load_model, read_manifest

    probs = np.full((len(data), len(STAGES)), np.nan)
    for f in folds:
        te = splits[f][1]
        sub = folder / f"fold{f}"
        card = read_manifest(sub).get("card") or {}
        saw = (card.get("training_data") or {}).get("held_out_block")
        if saw != held_out_block(data, te, f, k):
            raise EEGVLMError(
                f"--cv-models: '{sub}' was not trained for fold {f} of {k} on this night: its "
                f"card says it never saw {saw!r}, but this fold's block is "
                f"{held_out_block(data, te, f, k)!r}. Use the folder --save-models wrote for the "
                "same night and --cv.")
        model, tok, _ = load_model(sub, str(pick_device(device)),
                                   expected_renderer_version=RENDERER_VERSION)
        probs[te] = predict_probs(model, data.images[te])
        if on_model is not None:
            on_model(f, model, tok, te)
        del model
    return probs


def context_probs(data, probs: np.ndarray, splits: list, folds: list[int],
                  balanced: bool = True) -> np.ndarray:
    """Night-context posteriors of out-of-fold ``probs`` (NaN outside ``folds``' blocks).

    Each fold's block is decoded alone, by a transition model counted from that fold's
    training blocks only, so no test label leaks in.
    """
    out = np.full_like(probs, np.nan)
    for f in folds:
        tr, te = splits[f]
        out[te] = data.sequence_model(balanced, rows=tr).smooth(probs[te], data.epochs[te])
    return out


def calibrated_context_probs(data, probs: np.ndarray, splits: list, folds: list[int],
                             balanced: bool = True) -> tuple[np.ndarray, dict[int, float]]:
    """As :func:`context_probs`, with the answers first softened by a fitted temperature.

    Fold ``f``'s temperature is fitted on the out-of-fold answers of the *other* evaluated
    folds and their expert labels (all inside ``f``'s training blocks), never on block ``f``;
    the models that made those answers did see block ``f``, an indirect influence the JSON
    names. Needs at least two evaluated folds.
    """
    from eegvlm_desktop.core.staging.sequence import fit_temperature

    if len(folds) < 2:
        raise ValueError(f"The 'folds' parameter needs at least two folds to fit a temperature "
                         f"on the others, but got {folds!r}.")
    out = np.full_like(probs, np.nan)
    temps: dict[int, float] = {}
    for f in folds:
        tr, te = splits[f]
        other = np.concatenate([splits[g][1] for g in folds if g != f])
        temps[f] = round(fit_temperature(probs[other], [data.stages[i] for i in other]), 3)
        seq = data.sequence_model(balanced, rows=tr).with_temperature(temps[f])
        out[te] = seq.smooth(probs[te], data.epochs[te])
    return out, temps
