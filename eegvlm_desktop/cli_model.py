"""``eegvlm train`` and ``eegvlm evaluate``: the model from the command line (JSON out).

torch is imported only inside these commands, so ``eegvlm info`` and the GUI start fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .core.errors import EEGVLMError


def add_parsers(sub) -> None:
    """Register the model subcommands on the CLI's subparsers."""
    t = sub.add_parser("train", help="train a model on scored nights")
    t.add_argument("--data", nargs="+", required=True, metavar="PSG:HYPNOGRAM",
                   help="recording and hypnogram pairs, joined by ':'")
    t.add_argument("--out", required=True, help="model folder to write (model_weights/<name>)")
    t.add_argument("--preset", default="fast", choices=("tiny", "default", "fast"))
    t.add_argument("--fusion", default="both", choices=("both", "clip", "enhance"))
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    e = sub.add_parser("evaluate", help="measure a model against the expert (JSON)")
    e.add_argument("--model", required=True, help="model folder")
    e.add_argument("--data", required=True, metavar="PSG:HYPNOGRAM")
    e.add_argument("--cv", help="blocks:K = blocked K-fold inside the night, retraining the "
                   "model's architecture and settings on each fold (use a GPU)")
    e.add_argument("--device", default="auto")
    e.add_argument("--yasa", action="store_true", help="also score YASA on the same epochs")


def _pair(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise EEGVLMError(f"--data expects PSG:HYPNOGRAM, got {text!r}.")
    psg, hyp = text.rsplit(":", 1)
    return psg, hyp


def run(args: argparse.Namespace) -> int:
    """Dispatch ``train`` / ``evaluate``; errors for users are raised as EEGVLMError."""
    return _train(args) if args.command == "train" else _evaluate(args)


def _train(args) -> int:
    from .core.dataset import build_night, concat
    from .core.training import TrainSettings, train, write_log
    from .core.vlm.weights import save_model

    nights = [build_night(*_pair(d)) for d in args.data]
    data = concat(nights)
    settings = TrainSettings(preset=args.preset, fusion=args.fusion, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    out = Path(args.out)
    log = write_log(out.parent / f"{out.name}-train-log.jsonl")
    t0 = time.perf_counter()
    model, tok, history = train(data, settings, args.device, log=log)
    card = {"name": out.name, "training_data": data.meta, "n_examples": len(data),
            "training": {"settings": settings.to_dict(), "history": history,
                         "seconds": round(time.perf_counter() - t0, 1)},
            "metrics": None}
    save_model(model.cpu(), tok, out, card)
    print(json.dumps({"model": str(out), "examples": len(data), "final": history[-1]}))
    return 0


def _evaluate(args) -> int:
    import numpy as np

    from .core.dataset import build_night
    from .core.metrics import stage_metrics
    from .core.protocol import PROTOCOL_TEXT
    from .core.stages import STAGES
    from .core.training import TrainSettings, cross_validate, pick_device, predict_probs
    from .core.vlm.weights import load_model, read_manifest

    from .core.rendering import RENDERER_VERSION

    psg, hyp = _pair(args.data)
    manifest = read_manifest(args.model)
    data = build_night(psg, hyp)
    result = {"model": str(args.model), "recording": Path(psg).name, "epochs": len(data),
              "protocol": PROTOCOL_TEXT, "channel_roles": data.meta["channel_roles"],
              "label_mapping": data.meta["label_mapping"]}
    if args.cv:
        kind, _, k = args.cv.partition(":")
        if kind != "blocks" or not k.isdigit():
            raise EEGVLMError(f"--cv expects blocks:K (e.g. blocks:5), got {args.cv!r}.")
        card = manifest.get("card") or {}
        saved = (card.get("training") or {}).get("settings") or {}
        settings = TrainSettings(**{k2: v for k2, v in saved.items()
                                    if k2 in TrainSettings.__dataclass_fields__})
        probs = cross_validate(data, int(k), settings, args.device)
        result["split"] = (f"blocked {k}-fold cross-validation inside the night; every epoch "
                           "predicted by a model (this architecture and settings, trained "
                           "from scratch) that never saw its block")
        result["device"] = str(pick_device(args.device))
    else:
        model, _, _ = load_model(args.model, str(pick_device(args.device)),
                                 expected_renderer_version=RENDERER_VERSION)
        probs = predict_probs(model, data.images)
        trained_on = json.dumps(manifest.get("card", {}).get("training_data", {}))
        held_out = Path(psg).name not in trained_on
        result["split"] = ("held-out recording (not in the model's training data)" if held_out
                           else "TRAINING DATA: this recording was used to train the model, "
                                "so this is not an honest accuracy; use --cv blocks:K")
        result["held_out"] = held_out
    pred = [STAGES[i] for i in np.asarray(probs).argmax(1)]
    result["eegvlm"] = stage_metrics(data.stages, pred)
    if args.yasa:
        from .core.hypnogram_io import read_hypnogram
        from .core.recording import read_recording
        from .core.yasa_baseline import compare_with_yasa

        rec = read_recording(psg)
        h = read_hypnogram(hyp, recording_start=rec.meas_date,
                           recording_duration=rec.duration).hypnogram
        result["yasa"] = compare_with_yasa(rec, h, data.epochs)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
