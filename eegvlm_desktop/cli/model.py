"""``eegvlm train``, ``evaluate``, ``finetune``: the model from the command line (JSON out).

torch is imported only inside these commands, so ``eegvlm info`` and the GUI start fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from eegvlm_desktop.core.errors import EEGVLMError


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
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
    t.add_argument("--augment", type=_non_negative_int, default=0, metavar="K",
                   help="train on K perturbed renderings of each epoch as well (EEG/EOG/EMG "
                   "gains, a 50-Hz recording's low-pass, one EEG channel in every EEG row, no "
                   "EOG or no chin EMG; core/picture/augment.py), one drawn at random each time the "
                   "epoch is used: same steps, steadier on other labs (default 0)")
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
    e.add_argument("--augment", type=_non_negative_int, metavar="K", help="with --cv: train "
                   "each fold with K perturbed renderings per epoch instead of the model "
                   "card's (marked in the JSON as settings_differ_from_card)")
    e.add_argument("--device", default="auto")
    e.add_argument("--yasa", action="store_true", help="also score YASA on the same epochs")
    e.add_argument("--save-models", metavar="DIR", help="with --cv: save each fold's model "
                   "in DIR/fold<k> (its card names the blocks it never saw), and a checkpoint "
                   "after every training epoch in DIR/fold<k>.checkpoints")
    e.add_argument("--resume", action="store_true", help="with --save-models: continue each "
                   "fold from its checkpoint (same data and settings), e.g. after a CV was cut "
                   "short; a fold without one starts afresh")
    e.add_argument("--cv-models", metavar="DIR", help="with --cv: instead of training, use "
                   "the fold models an earlier --save-models wrote in DIR/fold<k> (each is "
                   "checked to have never seen its block)")
    e.add_argument("--save-probs", metavar="FILE", help="also write every evaluated epoch's "
                   "probabilities (epoch alone and with night context) to this JSON file")
    e.add_argument("--reasoning", type=_positive_int, metavar="N", help="also generate the "
                   "reasoning for N evaluated epochs (per fold with --cv) and report how often "
                   "its stage agrees with the direct answer")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    s = sub.add_parser("stage", help="stage a whole recording with a model and write its "
                       "hypnogram (no expert labels needed)")
    s.add_argument("recording")
    s.add_argument("out", help="hypnogram file to write (.csv .tsv .edf .json .txt, "
                   "*_events.tsv for BIDS); de-identified like every export")
    s.add_argument("--model", default="", help="model folder (default: the shipped "
                   "model_weights/default)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    s.add_argument("--no-context", action="store_true", help="each epoch from its own image "
                   "only, without the model's night context")
    s.add_argument("--context", action="store_true", help="apply night context even where the "
                   "model's card turns it off (a pooled answer already reads its neighbours)")
    # 16, not 32: the same speed on 2 CPU cores (3.4 vs 3.7 s for the example night's image
    # model) and ~80 MB less peak RSS (activations of half the batch).
    s.add_argument("--batch-size", type=_positive_int, default=16)
    # Two runs side by side on 2 cores, each with torch's default (all cores): 55 s for both,
    # their compute threads busy-waiting on each other; with --threads 1 each: 14.6 s.
    s.add_argument("--threads", type=_positive_int, default=None,
                   help="torch compute threads (default: all cores); give each run 1 when "
                        "several nights are staged at once on a small machine")
    f = sub.add_parser("finetune", help="fine-tune a model on exported expert corrections")
    f.add_argument("--model", required=True, help="model folder to start from (only read)")
    f.add_argument("--method", choices=("adapt", "image"), default="adapt", help="adapt "
                   "(default): re-fit the pooled layer on the exports' nights, networks frozen, "
                   "guarded so it never strays from the model without evidence (seconds); "
                   "image: train the image model itself on the exported images")
    f.add_argument("--data", nargs="+", required=True, metavar="EXPORT_FOLDER",
                   help="fine-tuning export folders written by the app")
    f.add_argument("--out", required=True, help="new model folder (model_weights/<name>)")
    f.add_argument("--eval-data", nargs="+", metavar="EXPORT_FOLDER", help="held-out export "
                   "folders: the direct answer is scored on them before and after")
    f.add_argument("--keep-held-out", action="store_true", help="adapt, without --eval-data: "
                   "save the model fitted without the last 20 %% of each export (the one the "
                   "held-out before/after measured); default: fit again on every epoch after "
                   "that check")
    f.add_argument("--variant-gains", type=float, nargs="*", metavar="GAIN", help="adapt: "
                   "also fit on the labelled epochs with every channel times each gain, same "
                   "labels (default: the shipped setting, in the new model's card; the flag "
                   "alone: none)")
    f.add_argument("--variant-shifts", type=float, nargs="*", metavar="SECONDS", help="adapt: "
                   "also fit on the labelled epochs with the epoch grid moved by each shift "
                   "(|s| < 15; default: the shipped setting; the flag alone: none)")
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
    from eegvlm_desktop.core.recording.recording import SUPPORTED_FORMATS
    from eegvlm_desktop.core.scoring.document import find_sibling_hypnogram

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


def _stage(args) -> int:
    """Stage every epoch of a recording; write the hypnogram; one JSON line on stdout."""
    from collections import Counter

    from eegvlm_desktop.core.hypnogram.hypnogram import Hypnogram
    from eegvlm_desktop.core.hypnogram.write import write_hypnogram
    from eegvlm_desktop.core.recording.quality import recording_notes
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.staging.model_card import (context_default, default_models_root,
                                                        night_context)
    from eegvlm_desktop.core.stages import UNS
    from eegvlm_desktop.core.staging.model_layer import ModelLayer
    from eegvlm_desktop.ml.inference import EpochQueue, InferenceEngine, threads, use_threads

    folder = Path(args.model) if args.model else default_models_root() / "default"
    rec = read_recording(args.recording)
    n = rec.n_epochs(30.0)
    if n == 0:  # said before the model loads, not after
        raise EEGVLMError(f"{Path(args.recording).name} is shorter than one 30-s epoch "
                          f"({rec.duration:.1f} s): there is nothing to stage.")
    # What `eegvlm info` and the window tell about the file (unit fixes, the reader's
    # warnings, flat/tiny/clipped channels) goes into the JSON too: a night staged from a
    # doubtful signal must say so even where the per-epoch gate let its epochs through.
    notes = recording_notes(rec)
    if args.threads is not None:
        use_threads(args.threads)
    # Staging only: the stage-only forward, without open_clip and transformers (ml/vlm/stager.py).
    engine = InferenceEngine.load(folder, rec, args.device, batch_size=args.batch_size,
                                  staging_only=True)
    # The app's own model layer: the same decoding the scorer sees in the window.
    layer = ModelLayer(n, folder.name)
    if args.context and args.no_context:
        raise EEGVLMError("The '--context' and '--no-context' options contradict each other; "
                          "give at most one.")
    wanted = args.context or (not args.no_context and context_default(engine.manifest))
    layer.set_sequence(night_context(engine.manifest) if wanted else None)
    report = engine.run(EpochQueue(range(n)), layer.set_proba)
    # An epoch the quality gate found unscorable gets no stage, never a guess.
    stages = [s if s else UNS for s in layer.stages()]
    hyp = Hypnogram(stages, 30.0, 0.0, f"EEG-VLM model {folder.name}", layer.proba,
                    ["model"] * n)
    files = engine.manifest.get("files") or {}
    out = write_hypnogram(hyp, Path(args.out), provenance={
        "source": f"EEG-VLM model {folder.name}", "model_sha256": files.get("model.safetensors"),
        "night_context": layer.context_active, "channels": engine.channel_map})
    print(json.dumps({"wrote": str(out), "epochs": n, "model": folder.name,
                      "night_context": layer.context_active, "device": report.device,
                      "seconds": round(report.seconds, 2), "threads": threads(),
                      "channels": engine.channel_map,
                      "stages": dict(Counter(stages)),
                      "sources": _sources(engine),
                      "unscorable": {"epochs": len(report.unscorable),
                                     "first": [{"epoch": e + 1, "reason": r} for e, r in
                                               sorted(report.unscorable.items())[:20]]},
                      "notes": notes + report.notes}), flush=True)
    return 0


def _sources(engine) -> dict:
    """What the answer was pooled from, with the weights (empty: the image model alone)."""
    if engine.fusion is None:
        return {"vlm": 1.0}
    return {name: round(w, 4) for name, w in engine.fusion.weights.items()
            if name == "vlm" or np.isfinite(engine.sources[name]).all()}


def run(args: argparse.Namespace) -> int:
    """Dispatch ``train`` / ``evaluate`` / ``finetune`` / ``stage``; user errors raise
    EEGVLMError."""
    if args.command == "finetune" and args.method == "adapt":
        from eegvlm_desktop.cli.adapt import adapt

        return adapt(args)
    if args.command == "finetune":
        return _finetune(args)
    if args.command == "stage":
        return _stage(args)
    if args.command == "train":
        return _train(args)
    from eegvlm_desktop.cli.evaluate import evaluate

    return evaluate(args, _pair, _parse_folds, _ProgressBar)


def _train(args) -> int:
    from eegvlm_desktop.core.export.dataset import build_night, concat
    from eegvlm_desktop.ml.checkpoint import POINTER_FILE, peek_checkpoint
    from eegvlm_desktop.ml.training import TrainSettings, train, write_log
    from eegvlm_desktop.ml.vlm.weights import save_model

    pairs = _data_pairs(args.data)
    data = concat([build_night(psg, hyp, variants=args.augment, seed=args.seed)
                   for psg, hyp in pairs])
    lora = {"r": args.lora_r, "lora_alpha": 2 * args.lora_r} if args.lora_r else {}
    if lora and not args.lm:
        raise EEGVLMError("--lora-r needs --lm: LoRA adapts a pretrained language model.")
    settings = TrainSettings(preset=args.preset, fusion=args.fusion, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             augment=args.augment,
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
    save_model(model.cpu(), tok, out, card, data.sequence_model(settings.balance))
    print(json.dumps({"model": str(out), "examples": len(data), "recordings": len(pairs),
                      "final": history[-1], "checkpoint_dir": str(ckpt_dir),
                      "resumed_from_epoch": resumed}), flush=True)
    return 0


def _finetune(args) -> int:
    """Fine-tune ``--model`` on export folders; one JSON line on stdout (main process)."""
    from eegvlm_desktop.ml.finetune.card import save_finetuned
    from eegvlm_desktop.ml.finetune.run import finetune
    from eegvlm_desktop.ml.finetune.settings import FinetuneSettings
    from eegvlm_desktop.ml.vlm.weights import read_manifest

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
        from eegvlm_desktop.core.export.finetune_folder import load_finetune_dataset
    except ModuleNotFoundError as err:
        if err.name != "eegvlm_desktop.core.export.finetune_folder":
            raise
        raise EEGVLMError("This version of eegvlm cannot read fine-tuning export folders "
                          "(eegvlm_desktop.core.export.finetune_folder is missing); update "
                          "the app.") from None
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
