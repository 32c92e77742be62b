"""Train on a machine without MNE/YASA (e.g. a lent GPU) from a prepared dataset .npz.

Runs blocked K-fold cross-validation (out-of-fold probabilities for the honest number),
optionally the fusion ablations, then trains the shipped model on all examples. What comes
back has to fit a transfer limit of a few files of < 16 MiB, so the weights are written as
safetensors shards and everything small (config, tokenizer files, history, out-of-fold
probabilities) as one results.json. ``scripts/assemble_model.py`` rebuilds the model folder.

    python scripts/train_remote.py DATASET.npz OUT_DIR [--cv 5] [--epochs 30] [--ablations]
        [--augment K]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from eegvlm_desktop.core.export.dataset import load_dataset
from eegvlm_desktop.ml.training import TrainSettings, cross_validate, train

SHARD_BYTES = 12 * 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--ablations", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", type=int, default=0,
                    help="training variants per epoch to draw from (the dataset must have been "
                         "built with build_night(..., variants=K), K >= this)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                     "torch": torch.__version__, "n_examples": len(data), "cv": {},
                     "stages": data.stages, "epochs_index": data.epochs.tolist()}
    log_rows: list[dict] = []

    def log(row: dict) -> None:
        log_rows.append(row)
        print(json.dumps(row), flush=True)

    fusions = ["both", "clip", "enhance"] if args.ablations else ["both"]
    for fusion in fusions:
        settings = TrainSettings(preset=args.preset, fusion=fusion, epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 augment=args.augment)
        t0 = time.perf_counter()
        probs = cross_validate(data, args.cv, settings, device,
                               log=lambda r, f=fusion: log({"fusion": f, **r}))
        results["cv"][fusion] = {"k": args.cv, "settings": settings.to_dict(),
                                 "seconds": round(time.perf_counter() - t0, 1),
                                 "oof_probs": np.round(probs, 5).tolist()}
    # Written now too, so a run stopped by a time limit still returns the CV numbers.
    (out / "results.json").write_text(json.dumps(results))
    settings = TrainSettings(preset=args.preset, fusion="both", epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             augment=args.augment)
    t0 = time.perf_counter()
    model, tok, history = train(data, settings, device, log=lambda r: log({"final": 1, **r}))
    results["final"] = {"settings": settings.to_dict(), "history": history,
                        "seconds": round(time.perf_counter() - t0, 1)}
    results["config"] = model.config.to_dict()
    tok_dir = out / "tok"
    tok.save_pretrained(str(tok_dir))
    results["tokenizer_files"] = {p.name: p.read_text() for p in tok_dir.iterdir()}
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    shard, size, n = {}, 0, 0
    for key in sorted(state):
        shard[key] = state[key]
        size += state[key].numel() * 4
        if size >= SHARD_BYTES:
            save_file(shard, str(out / f"shard{n}.safetensors"))
            shard, size, n = {}, 0, n + 1
    if shard:
        save_file(shard, str(out / f"shard{n}.safetensors"))
    results["log"] = log_rows
    (out / "results.json").write_text(json.dumps(results))
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()


if __name__ == "__main__":
    main()
