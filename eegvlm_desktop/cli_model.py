"""``eegvlm train``, ``evaluate``, ``finetune``: the model from the command line (JSON out).

torch is imported only inside these commands, so ``eegvlm info`` and the GUI start fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .core.errors import EEGVLMError


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_parsers(sub) -> None:
    """Register the model subcommands on the CLI's subparsers."""
    t = sub.add_parser("train", help="train a model on scored nights")
    t.add_argument("--data", nargs="+", required=True, metavar="PSG:HYPNOGRAM|FOLDER",
                   help="recording and hypnogram pairs joined by ':', or folders: every "
                   "recording in a folder with a hypnogram beside it (NAME-Hypnogram.*, "
                   "NAME_hypnogram.*, Sleep-EDF's SC4001E0-PSG.edf + SC4001EC-Hypnogram.edf)")
    t.add_argument("--out", required=True, help="model folder to write (model_weights/<name>)")
    t.add_argument("--preset", default="fast", choices=("tiny", "default", "fast"))
    t.add_argument("--fusion", default="both", choices=("both", "clip", "enhance"))
    t.add_argument("--epochs", type=_positive_int, default=30)
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    t.add_argument("--checkpoint-dir", help="where a checkpoint is written after every epoch "
                   "(default: <out>.checkpoints beside the model folder)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint (same "
                   "data and settings; --epochs may be raised); starts afresh if there is none")
    t.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    t.add_argument("--vision-arch", default="", help="an open_clip ViT name (e.g. ViT-B-16) "
                   "instead of the preset's small ViT")
    t.add_argument("--vision-checkpoint", default="", help="local open_clip checkpoint of "
                   "--vision-arch to start from (.safetensors, or a weights-only .pt/.bin)")
    t.add_argument("--lm", default="", help="local transformers causal-LM folder to use "
                   "instead of the small LM built here")
    t.add_argument("--lora-r", type=_positive_int, help="with --lm: train LoRA adapters of "
                   "this rank (peft) instead of the whole LM")
    e = sub.add_parser("evaluate", help="measure a model against the expert (JSON)")
    e.add_argument("--model", required=True, help="model folder")
    e.add_argument("--data", required=True, metavar="PSG:HYPNOGRAM")
    e.add_argument("--cv", help="blocks:K = blocked K-fold inside the night, retraining the "
                   "model's architecture and settings on each fold (use a GPU)")
    e.add_argument("--folds", help="with --cv: run only these folds, e.g. 0,2 (0-based, in "
                   "time order); metrics then cover those folds' epochs only")
    e.add_argument("--epochs", type=_positive_int, help="with --cv: train each fold for this "
                   "many epochs instead of the model card's (marked in the JSON as "
                   "settings_differ_from_card)")
    e.add_argument("--device", default="auto")
    e.add_argument("--yasa", action="store_true", help="also score YASA on the same epochs")
    e.add_argument("--save-models", metavar="DIR", help="with --cv: save each fold's model "
                   "in DIR/fold<k> (its card names the blocks it never saw)")
    e.add_argument("--reasoning", type=_positive_int, metavar="N", help="also generate the "
                   "reasoning for N evaluated epochs (per fold with --cv) and report how often "
                   "its stage agrees with the direct answer")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    f = sub.add_parser("finetune", help="fine-tune a model on exported expert corrections")
    f.add_argument("--model", required=True, help="model folder to start from (only read)")
    f.add_argument("--data", nargs="+", required=True, metavar="EXPORT_FOLDER",
                   help="fine-tuning export folders written by the app")
    f.add_argument("--out", required=True, help="new model folder (model_weights/<name>)")
    f.add_argument("--eval-data", nargs="+", metavar="EXPORT_FOLDER", help="held-out export "
                   "folders: the direct answer is scored on them before and after")
    f.add_argument("--epochs", type=_positive_int, default=5)
    f.add_argument("--batch-size", type=_positive_int, default=16)
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--freeze-vision", action="store_true", help="train the LM only (ViT, "
                   "enhancement CNN and projectors frozen)")
    f.add_argument("--lora-r", type=_positive_int, help="LoRA adapters of this rank on a "
                   "pretrained LM (its base frozen)")
    f.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class _ProgressBar:
    """A tqdm bar on stderr fed by the training ``progress`` callback; stdout stays JSON."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, done: int, total: int, info: dict) -> None:
        if not self.enabled:
            return
        post = {"epoch": info.get("epoch"), "loss": f"{info.get('loss', float('nan')):.3f}"}
        if "fold" in info:
            post = {"fold": info["fold"], **post}
        if self.bar is None:
            from tqdm import tqdm

            # Made at the first step with initial=done: a resumed run starts where it left
            # off, and the time left is estimated from the steps of this run only.
            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit="step",
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
            self.bar.set_postfix(post)
        else:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(done - self.bar.n)

    def echo(self, line: str) -> None:
        """Print a stdout line without tearing the bar."""
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _pair(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise EEGVLMError(f"--data expects PSG:HYPNOGRAM, got {text!r}.")
    psg, hyp = text.rsplit(":", 1)
    return psg, hyp


def _folder_pairs(folder: Path) -> list[tuple[str, str]]:
    """Every recording in ``folder`` that has a hypnogram beside it, in name order."""
    from .core.document import find_sibling_hypnogram
    from .core.recording import SUPPORTED_FORMATS

    found, lonely = [], []
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        # Sleep-EDF hypnograms are EDF files too: they must not count as recordings.
        if (not path.is_file() or "hypnogram" in name
                or not any(name.endswith(ext) for ext in SUPPORTED_FORMATS)):
            continue
        hyp = find_sibling_hypnogram(path)
        (found if hyp is not None else lonely).append((path, hyp))
    hyps = {h for _, h in found}
    pairs = [(str(p), str(h)) for p, h in found if p not in hyps]
    if not pairs:
        raise EEGVLMError(
            f"--data: the folder '{folder}' holds no recording with a matching hypnogram. "
            "Allowed: recordings (" + ", ".join(SUPPORTED_FORMATS) + ") each with "
            "'NAME-Hypnogram.*' or 'NAME_hypnogram.*' beside them (or Sleep-EDF's "
            "SC4001E0-PSG.edf with SC4001EC-Hypnogram.edf); found "
            f"{len(lonely)} recording(s) without one"
            + (": " + ", ".join(p.name for p, _ in lonely[:5]) if lonely else "") + ".")
    return pairs


def _data_pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in items:
        pairs += _folder_pairs(Path(item)) if Path(item).is_dir() else [_pair(item)]
    return pairs


def _parse_folds(text: str, k: int) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(map(int, parts))) != len(parts) \
            or not all(int(p) < k for p in parts):
        raise EEGVLMError(f"--folds expects distinct fold numbers from 0 to {k - 1} joined by "
                          f"',' (e.g. 0,2), got {text!r}.")
    return sorted(int(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    """Dispatch ``train`` / ``evaluate`` / ``finetune``; user errors raise EEGVLMError."""
    if args.command == "finetune":
        return _finetune(args)
    return _train(args) if args.command == "train" else _evaluate(args)


def _train(args) -> int:
    from .core.checkpoint import POINTER_FILE, peek_checkpoint
    from .core.dataset import build_night, concat
    from .core.training import TrainSettings, train, write_log
    from .core.vlm.weights import save_model

    pairs = _data_pairs(args.data)
    data = concat([build_night(psg, hyp) for psg, hyp in pairs])
    lora = {"r": args.lora_r, "lora_alpha": 2 * args.lora_r} if args.lora_r else {}
    if lora and not args.lm:
        raise EEGVLMError("--lora-r needs --lm: LoRA adapts a pretrained language model.")
    settings = TrainSettings(preset=args.preset, fusion=args.fusion, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             vision_arch=args.vision_arch,
                             vision_checkpoint=args.vision_checkpoint, lm_pretrained=args.lm,
                             lora=lora)
    out = Path(args.out)
    ckpt_dir = Path(args.checkpoint_dir or out.parent / f"{out.name}.checkpoints")
    pointer = peek_checkpoint(ckpt_dir) if args.resume else None
    resumed = int(pointer["epoch"]) if pointer else 0
    if args.resume:
        print(f"eegvlm: resuming after epoch {resumed} from {ckpt_dir}" if pointer else
              f"eegvlm: no checkpoint in {ckpt_dir}, starting afresh", file=sys.stderr)
    elif (ckpt_dir / POINTER_FILE).exists():
        print(f"eegvlm: the checkpoint in {ckpt_dir} will be replaced after the first epoch "
              "(use --resume to continue it instead)", file=sys.stderr)
    bar = _ProgressBar(not args.no_progress, "train")
    log = write_log(out.parent / f"{out.name}-train-log.jsonl", echo=bar.echo)
    t0 = time.perf_counter()
    try:
        model, tok, history = train(data, settings, args.device, log=log,
                                    checkpoint_dir=ckpt_dir, resume=args.resume,
                                    progress=bar)
    finally:
        bar.close()
    card = {"name": out.name, "training_data": data.meta, "n_examples": len(data),
            "training": {"settings": settings.to_dict(), "history": history,
                         "resumed_from_epoch": resumed,
                         "seconds": round(time.perf_counter() - t0, 1)},
            "metrics": None}
    save_model(model.cpu(), tok, out, card)
    print(json.dumps({"model": str(out), "examples": len(data), "recordings": len(pairs),
                      "final": history[-1], "checkpoint_dir": str(ckpt_dir),
                      "resumed_from_epoch": resumed}), flush=True)
    return 0


def _finetune(args) -> int:
    """Fine-tune ``--model`` on export folders; one JSON line on stdout (main process)."""
    from .core.finetune import FinetuneSettings, finetune, save_finetuned
    from .core.vlm.weights import read_manifest

    model_dir, out = Path(args.model), Path(args.out)
    read_manifest(model_dir)  # a missing or broken folder fails before the data is read
    if out.resolve() == model_dir.resolve():
        raise EEGVLMError(f"--out must be a new folder, not the --model folder it fine-tunes "
                          f"(got {args.out!r} for both).")
    for flag, folder in [("--data", f) for f in args.data] + [
            ("--eval-data", f) for f in args.eval_data or []]:
        if not Path(folder).is_dir():
            raise EEGVLMError(f"{flag}: the export folder '{folder}' does not exist; give "
                              "folders written by the app's fine-tuning export.")
    try:
        from .core.export import load_finetune_dataset
    except ModuleNotFoundError as err:
        if err.name != f"{__package__}.core.export":
            raise
        raise EEGVLMError("This version of eegvlm cannot read fine-tuning export folders "
                          "(eegvlm_desktop.core.export is missing); update the app.") from None
    data = load_finetune_dataset(args.data)
    eval_data = load_finetune_dataset(args.eval_data) if args.eval_data else None
    settings = FinetuneSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                seed=args.seed, freeze_vision=args.freeze_vision,
                                lora_r=args.lora_r or 0)
    bar = _ProgressBar(not args.no_progress, "finetune")
    try:
        result = finetune(model_dir, data, settings, args.device, progress=bar,
                          eval_data=eval_data)
    finally:
        bar.close()
    if not result.is_main_process:  # under accelerate/torchrun only rank 0 writes
        return 0
    save_finetuned(result, out, result.parent_manifest, data.meta, settings)
    print(json.dumps({"model": str(out), "parent": str(model_dir), "examples": len(data),
                      "eval_examples": None if eval_data is None else len(eval_data),
                      "final": result.final, "stopped": result.stopped,
                      "processes": result.num_processes,
                      "metrics_before": result.metrics_before,
                      "metrics_after": result.metrics_after}), flush=True)
    return 0


def _reasoning(model, tok, data, indices, n: int) -> dict:
    """Reasoned vs direct answers on ``n`` of ``indices``, spread evenly (held-out ones)."""
    import numpy as np

    from .core.vlm.explain import reasoning_agreement

    pick = np.asarray(indices)[np.linspace(0, len(indices) - 1, min(n, len(indices)))
                               .round().astype(int)]
    return reasoning_agreement(model, tok, data.images[pick], [data.stages[i] for i in pick])


def _save_fold_model(model, tok, folder: Path, data, te, fold: int, k: int, settings) -> None:
    """Keep one CV fold's model, its card naming exactly which epochs it never saw."""
    from .core.vlm.weights import save_model

    card = {"name": folder.name,
            "training_data": {**data.meta, "epochs": len(data) - len(te),
                              "held_out_block": {"fold": fold, "k": k,
                                                 "first_epoch": int(data.epochs[te[0]]),
                                                 "last_epoch": int(data.epochs[te[-1]])}},
            "training": {"settings": settings.to_dict()},
            "metrics": None,
            "note": f"blocked {k}-fold CV model: trained on every block of the standard window "
                    f"except block {fold} (epochs {int(data.epochs[te[0]])}-"
                    f"{int(data.epochs[te[-1]])}), which it never saw"}
    save_model(model.cpu(), tok, folder, card)


def _evaluate(args) -> int:
    import numpy as np

    from .core.dataset import build_night
    from .core.metrics import stage_metrics
    from .core.protocol import PROTOCOL_TEXT, block_folds
    from .core.rendering import RENDERER_VERSION
    from .core.stages import STAGES
    from .core.training import TrainSettings, cross_validate, pick_device, predict_probs
    from .core.model_card import trained_on
    from .core.vlm.weights import load_model, read_manifest

    for flag, value in (("--folds", args.folds), ("--epochs", args.epochs),
                        ("--save-models", args.save_models)):
        if value is not None and not args.cv:
            raise EEGVLMError(f"{flag} only applies to cross-validation: add --cv blocks:K, "
                              f"or drop {flag} (got {flag} {value}).")
    psg, hyp = _pair(args.data)
    manifest = read_manifest(args.model)
    data = build_night(psg, hyp)
    result = {"model": str(args.model), "recording": Path(psg).name, "epochs": len(data),
              "protocol": PROTOCOL_TEXT, "channel_roles": data.meta["channel_roles"],
              "label_mapping": data.meta["label_mapping"]}
    evaluated = np.arange(len(data))
    reasoning: list[dict] = []
    if args.cv:
        kind, _, k_text = args.cv.partition(":")
        if kind != "blocks" or not k_text.isdigit() or not 2 <= int(k_text) <= len(data):
            raise EEGVLMError(f"--cv expects blocks:K with K from 2 to the night's {len(data)} "
                              f"scored epochs (e.g. blocks:5), got {args.cv!r}.")
        k = int(k_text)
        folds = _parse_folds(args.folds, k) if args.folds else list(range(k))
        card = manifest.get("card") or {}
        saved = (card.get("training") or {}).get("settings") or {}
        settings = TrainSettings(**{k2: v for k2, v in saved.items()
                                    if k2 in TrainSettings.__dataclass_fields__})
        differ = args.epochs is not None and args.epochs != settings.epochs
        if args.epochs is not None:
            settings.epochs = args.epochs
        bar = _ProgressBar(not args.no_progress, "cv")
        try:
            def on_model(f, m, t, te):
                if args.reasoning:
                    reasoning.append(_reasoning(m, t, data, te, args.reasoning))
                if args.save_models:
                    _save_fold_model(m, t, Path(args.save_models) / f"fold{f}", data, te, f, k,
                                     settings)

            probs = cross_validate(data, k, settings, args.device, progress=bar, folds=folds,
                                   on_model=on_model)
        finally:
            bar.close()
        splits = block_folds(np.arange(len(data)), k)
        evaluated = np.sort(np.concatenate([splits[f][1] for f in folds]))
        which = (f"all {k} folds ran" if len(folds) == k else
                 f"ONLY folds {', '.join(map(str, folds))} of {k} ran (0-based, in time "
                 f"order), so the metrics cover the {len(evaluated)} epochs of their blocks, "
                 "not the whole night")
        result["split"] = (f"blocked {k}-fold cross-validation inside the night; {which}; "
                           "every epoch predicted by a model (this architecture and "
                           "settings, trained from scratch) that never saw its block")
        result["folds"] = folds
        result["k"] = k
        result["settings_differ_from_card"] = differ
        result["training_settings"] = settings.to_dict()
        result["device"] = str(pick_device(args.device))
    else:
        model, tok, _ = load_model(args.model, str(pick_device(args.device)),
                                 expected_renderer_version=RENDERER_VERSION)
        probs = predict_probs(model, data.images)
        if args.reasoning:
            reasoning.append(_reasoning(model, tok, data, evaluated, args.reasoning))
        # By file name or Sleep-EDF record id: the bundled example is cut from SC4001.
        held_out = not trained_on(manifest, psg)
        result["split"] = ("held-out recording (not in the model's training data)" if held_out
                           else "TRAINING DATA: this recording was used to train the model, "
                                "so this is not an honest accuracy; use --cv blocks:K")
        result["held_out"] = held_out
    pred = np.array(STAGES)[np.nan_to_num(np.asarray(probs)).argmax(1)]
    result["eegvlm"] = stage_metrics([data.stages[i] for i in evaluated], pred[evaluated])
    if args.cv:
        result["per_fold"] = []
        for f in folds:
            te = splits[f][1]
            result["per_fold"].append(
                {"fold": f, "epochs": len(te), "first_epoch": int(data.epochs[te[0]]),
                 "last_epoch": int(data.epochs[te[-1]]),
                 "eegvlm": stage_metrics([data.stages[i] for i in te], pred[te])})
    if reasoning:
        total = {key: sum(r[key] for r in reasoning) for key in ("epochs", "agree", "no_stage")}
        n = max(total["epochs"], 1)
        result["reasoning_vs_direct"] = {
            **total,
            "reasoned_accuracy": sum(r["reasoned_accuracy"] * r["epochs"] for r in reasoning) / n,
            "direct_accuracy": sum(r["direct_accuracy"] * r["epochs"] for r in reasoning) / n,
            "note": "reasoning generated greedily for epochs spread evenly over each evaluated "
                    "block; 'agree' counts epochs whose reasoned stage equals the direct answer"}
    if args.yasa:
        from .core.hypnogram_io import read_hypnogram
        from .core.recording import read_recording
        from .core.yasa_baseline import compare_with_yasa

        rec = read_recording(psg)
        h = read_hypnogram(hyp, recording_start=rec.meas_date,
                           recording_duration=rec.duration).hypnogram
        # Same epochs as the model's numbers (with --folds, YASA runs on their span only).
        result["yasa"] = compare_with_yasa(rec, h, data.epochs[evaluated])
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
