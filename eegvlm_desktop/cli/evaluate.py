"""``eegvlm evaluate``: the model against the expert, as JSON on stdout.

Two answers are scored on the same epochs: ``eegvlm`` (each epoch's direct answer from its
own image) and ``eegvlm_context`` (the same probabilities decoded with the night-context
stage-transition model, :mod:`eegvlm_desktop.core.staging.sequence`). With ``--cv`` the transition model of each
fold is counted from that fold's training blocks only, like its network.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError


def evaluate(args, pair: Callable, parse_folds: Callable, progress_bar: Callable) -> int:
    """Run ``eegvlm evaluate`` (see ``cli.model.add_parsers`` for the options)."""
    from eegvlm_desktop.ml.evaluate import (calibrated_context_probs, context_probs,
                                            held_out_block, reasoning_check, save_fold_model,
                                            saved_fold_probs)
    from eegvlm_desktop.core.atomic import atomic_write_text
    from eegvlm_desktop.core.export.dataset import build_night
    from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.core.staging.metrics import stage_metrics
    from eegvlm_desktop.core.staging.model_card import trained_on
    from eegvlm_desktop.core.staging.protocol import PROTOCOL_TEXT, block_folds
    from eegvlm_desktop.ml.training import TrainSettings, cross_validate
    from eegvlm_desktop.ml.vlm.predict import pick_device, predict_probs
    from eegvlm_desktop.ml.vlm.weights import load_model, read_manifest, read_sequence

    if args.resume and not args.save_models:
        raise EEGVLMError("--resume continues the fold checkpoints that --save-models DIR "
                          "writes: add --save-models DIR (got --resume alone).")
    for flag, value in (("--folds", args.folds), ("--epochs", args.epochs),
                        ("--augment", args.augment),
                        ("--save-models", args.save_models), ("--cv-models", args.cv_models)):
        if value is not None and not args.cv:
            raise EEGVLMError(f"{flag} only applies to cross-validation: add --cv blocks:K, "
                              f"or drop {flag} (got {flag} {value}).")
    if args.cv_models and (args.save_models or args.epochs or args.augment is not None):
        raise EEGVLMError("--cv-models reuses saved fold models, so it cannot be combined with "
                          "--save-models, --epochs or --augment (which need training).")
    psg, hyp = pair(args.data)
    manifest = read_manifest(args.model)
    card = manifest.get("card") or {}
    saved = (card.get("training") or {}).get("settings") or {}
    settings = TrainSettings(**{k2: v for k2, v in saved.items()
                                if k2 in TrainSettings.__dataclass_fields__})
    differ = False
    for name in ("epochs", "augment"):
        value = getattr(args, name)
        if value is not None:
            differ = differ or value != getattr(settings, name)
            setattr(settings, name, value)
    # Training variants only when folds are trained here; evaluation never reads them.
    trains = bool(args.cv) and not args.cv_models
    data = build_night(psg, hyp, variants=settings.augment if trains else 0,
                       seed=settings.seed)
    result: dict[str, Any] = {
        "model": str(args.model), "recording": Path(psg).name, "epochs": len(data),
        "protocol": PROTOCOL_TEXT, "channel_roles": data.meta["channel_roles"],
        "label_mapping": data.meta["label_mapping"],
        "renderer_version": RENDERER_VERSION}
    evaluated = np.arange(len(data))
    reasoning: list[dict] = []
    splits = folds = ctx_cal = None
    if args.cv:
        kind, _, k_text = args.cv.partition(":")
        if kind != "blocks" or not k_text.isdigit() or not 2 <= int(k_text) <= len(data):
            raise EEGVLMError(f"--cv expects blocks:K with K from 2 to the night's {len(data)} "
                              f"scored epochs (e.g. blocks:5), got {args.cv!r}.")
        k = int(k_text)
        folds = parse_folds(args.folds, k) if args.folds else list(range(k))
        splits = block_folds(np.arange(len(data)), k)

        def reason(f, m, t, te):  # each fold model, saved or just trained, on its own block
            if args.reasoning:
                reasoning.append(reasoning_check(m, t, data, te, args.reasoning))

        if args.cv_models:
            probs = saved_fold_probs(Path(args.cv_models), data, splits, folds, k,
                                      args.device, reason)
            how = f"the fold models saved in {args.cv_models}"
        else:
            bar = progress_bar(not args.no_progress, "cv")
            try:
                def on_model(f, m, t, te):
                    reason(f, m, t, te)
                    if args.save_models:
                        save_fold_model(m, t, Path(args.save_models) / f"fold{f}", data, te,
                                         f, k, settings)

                probs = cross_validate(data, k, settings, args.device, progress=bar,
                                       folds=folds, on_model=on_model,
                                       checkpoint_root=args.save_models, resume=args.resume)
            finally:
                bar.close()
            how = "models trained from scratch (this architecture and settings)"
        evaluated = np.sort(np.concatenate([splits[f][1] for f in folds]))
        which = (f"all {k} folds ran" if len(folds) == k else
                 f"ONLY folds {', '.join(map(str, folds))} of {k} ran (0-based, in time "
                 f"order), so the metrics cover the {len(evaluated)} epochs of their blocks, "
                 "not the whole night")
        result["split"] = (f"blocked {k}-fold cross-validation inside the night; {which}; "
                           f"every epoch predicted by one of {how} that never saw its block; "
                           "night context counted from the same training blocks only")
        result["folds"] = folds
        result["k"] = k
        result["settings_differ_from_card"] = differ
        result["training_settings"] = settings.to_dict()
        result["device"] = str(pick_device(args.device))
        ctx = context_probs(data, probs, splits, folds, settings.balance)
        if len(folds) >= 2:
            ctx_cal, temps = calibrated_context_probs(data, probs, splits, folds,
                                                      settings.balance)
            result["calibration"] = {
                "temperatures": temps,
                "how": ("each fold's answers softened by a temperature fitted (least negative "
                        "log-likelihood) on the other folds' out-of-fold answers and labels, "
                        "then decoded with night context; no label of the fold's own block is "
                        "used, though the other folds' models trained on it")}
    else:
        model, tok, _ = load_model(args.model, str(pick_device(args.device)),
                                   expected_renderer_version=RENDERER_VERSION)
        probs = predict_probs(model, data.images)
        if args.reasoning:
            reasoning.append(reasoning_check(model, tok, data, evaluated, args.reasoning))
        # By file name or Sleep-EDF record id: the bundled example is cut from SC4001.
        held_out = not trained_on(manifest, psg)
        result["split"] = ("held-out recording (not in the model's training data)" if held_out
                           else "TRAINING DATA: this recording was used to train the model, "
                                "so this is not an honest accuracy; use --cv blocks:K")
        result["held_out"] = held_out
        seq = read_sequence(manifest, args.model)
        ctx = None if seq is None else seq.smooth(probs, data.epochs)
        if seq is None:
            result["context_note"] = ("this model folder has no night-context model (it was "
                                      "saved before they existed), so only 'eegvlm' is given")
    expert = [data.stages[i] for i in evaluated]

    def scores(p: np.ndarray, rows: np.ndarray) -> dict:
        pred = np.array(STAGES)[np.nan_to_num(p[rows]).argmax(1)]
        return stage_metrics([data.stages[i] for i in rows], pred)

    result["eegvlm"] = scores(probs, evaluated)
    if ctx is not None:
        result["eegvlm_context"] = scores(ctx, evaluated)
    if ctx_cal is not None:
        result["eegvlm_context_calibrated"] = scores(ctx_cal, evaluated)
    if args.cv:
        result["per_fold"] = []
        for f in folds:
            te = splits[f][1]
            row = {**held_out_block(data, te, f, result["k"]), "epochs": len(te),
                   "eegvlm": scores(probs, te), "eegvlm_context": scores(ctx, te)}
            if ctx_cal is not None:
                row["eegvlm_context_calibrated"] = scores(ctx_cal, te)
            row.pop("k")
            result["per_fold"].append(row)
    if reasoning:
        total = {key: sum(r[key] for r in reasoning)
                 for key in ("epochs", "agree", "no_stage", "grounded", "free")}
        n = max(total["epochs"], 1)
        result["reasoning_vs_direct"] = {
            **total,
            "reasoned_accuracy": sum(r["reasoned_accuracy"] * r["epochs"] for r in reasoning) / n,
            "direct_accuracy": sum(r["direct_accuracy"] * r["epochs"] for r in reasoning) / n,
            "note": "reasoning generated greedily for epochs spread evenly over each evaluated "
                    "block, as the app explains an epoch: the measured steps 1-3 given, step 4 "
                    "and the stage chosen among the texts true of them ('grounded'; 'free': "
                    "written freely where a target could not be read); 'agree' counts epochs "
                    "whose reasoned stage equals the direct answer"}
    if args.yasa:
        from eegvlm_desktop.core.hypnogram.read import read_hypnogram
        from eegvlm_desktop.core.recording.recording import read_recording
        from eegvlm_desktop.core.staging.yasa_baseline import compare_with_yasa

        rec = read_recording(psg)
        h = read_hypnogram(hyp, recording_start=rec.meas_date,
                           recording_duration=rec.duration).hypnogram
        # Scored on the model's epochs; staged over the whole window as the protocol says
        # (with --folds, staging only their span would cut the night YASA normalises over).
        result["yasa"] = compare_with_yasa(rec, h, data.epochs, score=data.epochs[evaluated])
    if args.save_probs:
        atomic_write_text(args.save_probs, json.dumps({
            "model": str(args.model), "recording": Path(psg).name, "split": result["split"],
            "stages": list(STAGES), "epochs": data.epochs[evaluated].tolist(),
            "expert": expert, "probs": np.round(probs[evaluated], 5).tolist(),
            "context_probs": None if ctx is None else np.round(ctx[evaluated], 5).tolist(),
            "context_calibrated_probs": (None if ctx_cal is None else
                                         np.round(ctx_cal[evaluated], 5).tolist())}))
        result["probs_file"] = str(args.save_probs)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
