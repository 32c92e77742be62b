"""Inference benchmark of the shipped model on the example night (JSON out).

Measures on this machine: rendering, the fast whole-night pass (direct-answer stage
probabilities, batched), decoding them with the folder's night context, the reasoning of an
explained epoch as the app runs it (s per epoch; the night's evidence, measured once per
recording, timed apart) and the old free generation (tokens/s), peak RSS. The worker-thread vs
direct-call ratio is measured by ``bench/app_inference.py``.

    python bench/inference.py [--model model_weights/default] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "model_weights" / "default"))
    ap.add_argument("--psg", default=str(REPO / "resources/example/SC4001-example-PSG.edf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reasoning-epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import numpy as np
    import torch

    from eegvlm_desktop.core.picture.cot import PROMPT
    from eegvlm_desktop.core.picture.evidence import measure_night
    from eegvlm_desktop.core.picture.rendering import RENDERER_VERSION, render_night
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.ml.vlm.explain import explain_epoch
    from eegvlm_desktop.core.recording.montage import EEG_ROLES
    from eegvlm_desktop.core.staging.quality_gate import epoch_quality
    from eegvlm_desktop.ml.cohort import CohortStager
    from eegvlm_desktop.ml.vlm.predict import predict_probs
    from eegvlm_desktop.ml.vlm.tokenizer import encode_prompt
    from eegvlm_desktop.ml.vlm.weights import load_model, read_sequence

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    model, tok, manifest = load_model(args.model, "cpu",
                                      expected_renderer_version=RENDERER_VERSION)
    load_s = time.perf_counter() - t
    rec = read_recording(args.psg)
    roles = pick_roles(rec.ch_names, rec.ch_types)
    n = rec.n_epochs()
    t = time.perf_counter()
    images = render_night(rec, roles, np.arange(n))
    render_s = time.perf_counter() - t
    predict_probs(model, images[:8], batch_size=8)  # warm-up: lazy init, allocator
    t = time.perf_counter()
    probs = predict_probs(model, images, batch_size=args.batch_size)
    probs_s = time.perf_counter() - t
    # What whole-night staging adds for a model pooled with cohort stagers: the per-epoch
    # quality gate and RobustSleepNet + YASA on the whole night. The first call in a process
    # also pays antropy's eager numba compilation (YASA's features): timed apart.
    cohort = {}
    if CohortStager.available(args.model) and "fusion" in manifest:
        stager = CohortStager(args.model)
        eeg = sorted({roles[r] for r in EEG_ROLES if roles[r] is not None})
        t = time.perf_counter()
        epoch_quality(rec, eeg)
        gate_s = time.perf_counter() - t
        t = time.perf_counter()
        stager.evidence(rec, roles)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        ev = stager.evidence(rec, roles)
        warm_s = time.perf_counter() - t
        night = render_s + probs_s + gate_s + warm_s
        cohort = {"quality_gate_s": round(gate_s, 2), "first_call_s": round(first_s, 2),
                  "warm_s": round(warm_s, 2), "per_source_s": ev.seconds,
                  "whole_night_with_cohort_s": round(night, 2),
                  "whole_night_with_cohort_epochs_per_s": round(n / night, 1)}
    seq = read_sequence(manifest, args.model)
    context_ms = None
    if seq is not None:
        t = time.perf_counter()
        for _ in range(5):
            seq.smooth(probs)
        context_ms = round((time.perf_counter() - t) / 5 * 1000, 1)
    # Reasoning as the app explains an epoch (explain_epoch: measured steps 1-3, step 4
    # constrained to true texts, attention maps, direct answer). The night's evidence is
    # measured once per recording, before the first explanation: timed on its own.
    picks = np.linspace(0, n - 1, args.reasoning_epochs).astype(int)
    t = time.perf_counter()
    evidence = measure_night(rec, roles)
    evidence_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in picks:
        explain_epoch(model, tok, images[i], evidence=evidence[i])
    explain_s = time.perf_counter() - t
    # The free generation the app used before (the model writes every step), for comparison.
    prompt = encode_prompt(tok, PROMPT)
    tokens, t = 0, time.perf_counter()
    for i in picks:
        res = model.generate_reasoning(images[i], prompt, max_new_tokens=400)
        tokens += len(res.token_ids)
    gen_s = time.perf_counter() - t
    print(json.dumps({
        "benchmark": "inference", "model": Path(args.model).name, "epochs": int(n),
        "threads": args.threads, "batch_size": args.batch_size,
        "model_load_s": round(load_s, 2),
        "render_epochs_per_s": round(n / render_s, 1),
        "stage_probs_epochs_per_s": round(n / probs_s, 1),
        "whole_night_s": round(render_s + probs_s, 2),
        "night_context_decode_ms": context_ms,
        "cohort_stagers": cohort,
        "reasoning": {"epochs": args.reasoning_epochs,
                      "path": "explain_epoch with the measured evidence (what the app runs "
                              "per explained epoch, attention maps included)",
                      "s_per_epoch": round(explain_s / args.reasoning_epochs, 3),
                      "evidence_s_once_per_recording": round(evidence_s, 2)},
        "free_generation": {"epochs": args.reasoning_epochs, "tokens": tokens,
                            "tokens_per_s": round(tokens / gen_s, 1),
                            "s_per_epoch": round(gen_s / args.reasoning_epochs, 2),
                            "note": "generation only, no maps: the path before issue 19"},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"stage_probs_epochs_per_s": 100, "reasoning_s_per_epoch_max": 0.5},
    }, indent=2))


if __name__ == "__main__":
    main()
