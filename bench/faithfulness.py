"""Is the reasoning true of the epoch it explains? Every claim checked against the measurement.

For the example night (the shipped model's training night) and DREAMS excerpts 2, 3 and 4
(another lab, never trained on; ``../shared/data/dreams-spindles``), the reasoning of
``--epochs`` epochs per recording (evenly spaced, greedy, the app's explain path:
``explain_epoch``) is parsed claim by claim and compared with ``measure_night`` on the same
epoch (:mod:`eegvlm_desktop.core.picture.verify`; tolerances: band and slow-wave % +-10
points, amplitudes +-25 %, counts +-1). Per claim kind: within tolerance, exact, and the same for the
"state the recording's median" baseline (every claim replaced by the night's median measured
value of its kind: what a text that ignores the epoch would score). Also: claims about
channels the recording does not have, band percentages adding up to 100 +- 3, step 4
following from the text's own numbers and ending in the stage it names, the verifier's
verdict per step, the reasoned stage vs the direct answer vs the expert, and seconds per
epoch.

DREAMS hypnograms are 5-s R&K codes (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4); each 30-s epoch
takes the majority of its six, a tie leaves it unscored. Excerpts 2 and 4 are one Cz-A1
channel as text (one µV value per line, 1800 s): they are written to a temporary FIF file and
opened with the app's reader. Only numbers leave this machine (the data are NC-ND).

    python bench/faithfulness.py [--free] [--epochs 40] [--model model_weights/default]

``--free`` measures the old path (the model writes every step; no evidence given). Each run
replaces its own entry (``grounded`` or ``free``) in ``--out`` and keeps the other, so one
JSON holds the before and after.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "resources" / "example"
DREAMS = REPO.parent / "shared" / "data" / "dreams-spindles"
#: DREAMS' R&K codes: 5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4 (S3 and S4 are AASM N3).
DREAMS_CODES = {5: "W", 4: "R", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}
RECORDINGS = ("example", "dreams2", "dreams3", "dreams4")
#: Claim kinds about the EEG (the rest are about the EOG and the chin EMG), and event counts.
EEG_KINDS = ("band_percent", "dominant_band", "eeg_rms", "spindles_count", "spindle_density",
             "k_complexes_count", "slow_waves_count", "slow_wave_percent")
COUNT_KINDS = ("spindles_count", "k_complexes_count", "slow_waves_count", "rems_count")


def dreams_stages(k: int, folder: Path = DREAMS) -> list[str]:
    """30-s stages of DREAMS excerpt ``k``: the majority of six 5-s codes; a tie is 'UNS'."""
    codes = [int(x) for x in (folder / f"Hypnogram_excerpt{k}.txt").read_text().split()[1:]]
    out = []
    for i in range(0, len(codes) - 5, 6):
        top = Counter(DREAMS_CODES.get(c, "UNS") for c in codes[i:i + 6]).most_common()
        out.append("UNS" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0])
    return out


def _dreams_recording(k: int, tmp: Path, folder: Path) -> Any:
    from eegvlm_desktop.core.recording.recording import read_recording

    if k == 3:
        return read_recording(folder / "excerpt3.edf")
    import mne

    lines = (folder / f"excerpt{k}.txt").read_text().split("\n")
    name = lines[0].strip().strip("[]")  # e.g. CZ-A1
    x = np.array([float(v) for v in lines[1:] if v.strip()])
    info = mne.create_info([name], len(x) / 1800.0, ["eeg"], verbose="error")
    path = tmp / f"excerpt{k}_raw.fif"
    mne.io.RawArray(x[None] * 1e-6, info, verbose="error").save(path, verbose="error")
    return read_recording(path)


def load(name: str, tmp: Path, dreams: Path = DREAMS) -> tuple[Any, list[str], str]:
    """(recording, expert stage per epoch, description) of one benchmark recording."""
    if name == "example":
        from eegvlm_desktop.core.hypnogram.read import read_hypnogram
        from eegvlm_desktop.core.recording.recording import read_recording

        rec = read_recording(EXAMPLE / "SC4001-example-PSG.edf")
        hyp = read_hypnogram(EXAMPLE / "SC4001-example-Hypnogram.edf",
                             recording_start=rec.meas_date,
                             recording_duration=rec.duration).hypnogram
        stages = [hyp[i] if i < hyp.n_epochs else "UNS" for i in range(rec.n_epochs())]
        return rec, stages, "SC4001 example night (the shipped model's training night)"
    k = int(name[-1])
    rec = _dreams_recording(k, tmp, dreams)
    what = ("DREAMS excerpt 3 (EDF, 50 Hz, C3-A1/FP1-A1/O1-A1, EOG, chin EMG)" if k == 3 else
            f"DREAMS excerpt {k} (one Cz-A1 channel at 200 Hz: no EOG, no chin EMG)")
    return rec, dreams_stages(k, dreams), what + ", never trained on"


def _median_claim(kind: str, label: str, night: list[Any]) -> float | str | None:
    """The recording's median measured value of a claim kind (the baseline's statement)."""
    from eegvlm_desktop.core.picture.cot import tone_word

    def med(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return float(statistics.median(vals)) if vals else None

    if kind == "band_percent":
        return med([100.0 * ev.band_powers[label] for ev in night])
    if kind == "dominant_band":
        return Counter(max(ev.band_powers, key=ev.band_powers.get) for ev in night
                       ).most_common(1)[0][0]
    if kind == "emg_tone":
        rel = med([ev.emg_relative for ev in night])
        return None if rel is None else tone_word(round(rel, 2))
    field = {"eeg_rms": "eeg_rms_uv", "spindles_count": "n_spindles",
             "spindle_density": "spindle_density", "k_complexes_count": "n_k_complexes",
             "slow_waves_count": "n_slow_waves", "slow_wave_percent": "slow_wave_percent",
             "rems_count": "n_rems", "eog_power": "eog_slow_power", "emg_rms": "emg_rms_uv",
             "emg_relative": "emg_relative"}.get(kind)
    if field is None:
        return None
    value = med([getattr(ev, field) for ev in night])
    if value is None:
        return None
    # Stated the way the text states that kind (counts are whole numbers, % to 1 %...).
    if kind.endswith("_count") or kind in ("eeg_rms", "slow_wave_percent", "eog_power"):
        return float(round(value))
    return round(value, 2 if kind in ("emg_rms", "emg_relative") else 1)


def _baseline(claim: Any, ev: Any, night: list[Any]) -> tuple[bool, bool] | None:
    """(within, exact) of the median statement in place of ``claim``; None if not a number."""
    from eegvlm_desktop.core.picture.verify import compare_claim, step_claims

    stated = _median_claim(claim.kind, claim.label, night)
    if stated is None or claim.measured is None:
        return None
    if claim.kind == "band_percent":
        found = [c for c in step_claims(f"{claim.label} {stated:.0f} %", ev)]
        return found[0].within, found[0].exact
    if claim.kind in ("dominant_band", "emg_tone"):
        ok = stated in str(claim.measured).split("/")
        return ok, ok
    b = compare_claim(claim.kind, float(stated), ev)
    return b.within, b.exact


def _rate(hit: int, n: int) -> float | None:
    return round(hit / n, 4) if n else None


def evaluate(model: Any, tok: Any, name: str, n_epochs: int, free: bool, tmp: Path,
             dreams: Path = DREAMS) -> dict[str, Any]:
    """All the numbers of one recording."""
    from eegvlm_desktop.core.picture.evidence import measure_night
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.picture.verify import (EMG_KINDS, EOG_KINDS,
                                                    rule_follows_from_text, verify_reasoning)
    from eegvlm_desktop.core.recording.montage import describe_roles, pick_roles
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.ml.vlm.explain import explain_epoch
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    rec, expert, what = load(name, tmp, dreams)
    roles = pick_roles(rec.ch_names, rec.ch_types)
    t = time.perf_counter()
    night = measure_night(rec, roles)
    evidence_s = time.perf_counter() - t
    idx = np.linspace(0, len(night) - 1, min(n_epochs, len(night))).round().astype(int)
    images = render_night(rec, roles, idx)
    direct = [STAGES[k] for k in predict_probs(model, images).argmax(1)]
    kinds: dict[str, Counter] = defaultdict(Counter)
    absent = Counter()
    texts = Counter()
    steps_status = Counter()
    reasoned: list[str | None] = []
    seconds = []
    examples: list[dict] = []
    for img, i in zip(images, idx):
        ev = night[int(i)]
        t = time.perf_counter()
        ex = explain_epoch(model, tok, img, evidence=None if free else ev)
        seconds.append(time.perf_counter() - t)
        checks = ex.checks or verify_reasoning(ex.steps, ev)
        reasoned.append(ex.stage)
        texts["n"] += 1
        texts["fully_verified"] += all(c.verified for c in checks)
        texts["rule_follows_from_own_numbers"] += rule_follows_from_text(ex.steps)
        texts["stopped_at_length_limit"] += ex.stop_reason == "max_tokens"
        claims = [c for chk in checks for c in chk.claims]
        sums = [c for c in claims if c.kind == "band_sum"]
        texts["band_sum_stated"] += bool(sums)
        texts["band_sum_100pm3"] += bool(sums) and all(c.within for c in sums)
        said = {c.kind: c.stated for c in claims}
        texts["says_0_spindles_and_0_kcomplexes"] += (
            said.get("spindles_count") == 0 and said.get("k_complexes_count") == 0)
        texts["measured_spindle_or_kcomplex"] += (ev.n_spindles + ev.n_k_complexes) > 0
        for chk in checks:
            steps_status[chk.status] += 1
            rule = [c for c in chk.claims if c.kind == "rule"]
            if rule:
                texts["rule_step_true_of_measurement"] += rule[0].within
        for c in claims:
            if c.kind in ("rule", "rule_stage", "band_sum", "eog_absent", "emg_absent"):
                if c.kind in ("eog_absent", "emg_absent") and not c.within:
                    absent["says_absent_but_present"] += 1
                continue
            if c.measured is None and c.kind in EOG_KINDS + EMG_KINDS:
                absent["claims_about_absent_channels"] += 1
                continue
            k = kinds[c.kind]
            k["n"] += 1
            k["within"] += c.within
            k["exact"] += c.exact
            if c.kind in COUNT_KINDS and c.measured:
                k["n_measured_nonzero"] += 1
                k["exact_where_measured_nonzero"] += c.exact
            base = _baseline(c, ev, night)
            if base is not None:
                k["baseline_n"] += 1
                k["baseline_within"] += base[0]
                k["baseline_exact"] += base[1]
                if c.kind in COUNT_KINDS and c.measured:
                    k["baseline_exact_where_measured_nonzero"] += base[1]
        if name == "example" and len(examples) < 2:  # DREAMS (NC-ND): numbers only
            examples.append({"epoch": int(i), "text": ex.text,
                             "checks": [chk.note for chk in checks]})
    per_kind = {}
    for kind, k in sorted(kinds.items()):
        per_kind[kind] = {
            "claims": k["n"], "within_tolerance": _rate(k["within"], k["n"]),
            "exact": _rate(k["exact"], k["n"]),
            "median_baseline_within": _rate(k["baseline_within"], k["baseline_n"]),
            "median_baseline_exact": _rate(k["baseline_exact"], k["baseline_n"])}
        if kind in COUNT_KINDS:
            per_kind[kind].update({
                "epochs_measured_nonzero": k["n_measured_nonzero"],
                "exact_where_measured_nonzero": _rate(k["exact_where_measured_nonzero"],
                                                      k["n_measured_nonzero"]),
                "median_baseline_exact_where_measured_nonzero": _rate(
                    k["baseline_exact_where_measured_nonzero"], k["n_measured_nonzero"])})

    def total(kind_list: tuple[str, ...] | None) -> dict[str, Any]:
        ks = [kinds[k] for k in kinds if kind_list is None or k in kind_list]
        n = sum(k["n"] for k in ks)
        bn = sum(k["baseline_n"] for k in ks)
        return {"claims": n, "within_tolerance": _rate(sum(k["within"] for k in ks), n),
                "exact": _rate(sum(k["exact"] for k in ks), n),
                "median_baseline_within": _rate(sum(k["baseline_within"] for k in ks), bn)}

    nz = sum(kinds[k]["n_measured_nonzero"] for k in COUNT_KINDS)
    scored = [j for j, i in enumerate(idx) if expert[int(i)] in STAGES]
    n = texts["n"]
    return {
        "recording": what, "channel_roles": describe_roles(roles, rec.ch_names),
        "epochs": n, "epochs_scored_by_expert": len(scored),
        "evidence_s": round(evidence_s, 2),
        "seconds_per_epoch": round(float(np.mean(seconds)), 3),
        "claims": {"all": total(None), "eeg": total(EEG_KINDS), "per_kind": per_kind},
        "counts_exact_where_detector_found_something": {
            "claims": nz, "exact": _rate(sum(kinds[k]["exact_where_measured_nonzero"]
                                             for k in COUNT_KINDS), nz)},
        "claims_about_absent_channels": absent["claims_about_absent_channels"],
        "says_channel_absent_but_present": absent["says_absent_but_present"],
        "texts": {
            "band_percentages_sum_100_pm_3": _rate(texts["band_sum_100pm3"],
                                                   texts["band_sum_stated"]),
            "say_0_spindles_and_0_kcomplexes": texts["says_0_spindles_and_0_kcomplexes"],
            "epochs_with_a_measured_spindle_or_kcomplex":
                texts["measured_spindle_or_kcomplex"],
            "rule_follows_from_own_numbers_and_names_final_stage": _rate(
                texts["rule_follows_from_own_numbers"], n),
            "rule_step_true_of_measurement": _rate(texts["rule_step_true_of_measurement"], n),
            "every_step_verified": _rate(texts["fully_verified"], n),
            "stopped_at_length_limit": texts["stopped_at_length_limit"]},
        "steps_by_verification_status": dict(steps_status),
        "stages": {
            "reasoned_accuracy": _rate(sum(reasoned[j] == expert[int(idx[j])]
                                           for j in scored), len(scored)),
            "direct_accuracy": _rate(sum(direct[j] == expert[int(idx[j])] for j in scored),
                                     len(scored)),
            "reasoned_equals_direct": _rate(sum(r == d for r, d in zip(reasoned, direct)), n),
            "reasoning_names_no_stage": sum(r is None for r in reasoned)},
        "examples": examples,
    }


def _targets(recs: dict[str, dict], unseen: list[str]) -> dict[str, Any]:
    """Issue 19's targets on the recordings the model never trained on."""
    out: dict[str, Any] = {}
    for name in unseen:
        r = recs[name]
        margins = {k: (None if v["median_baseline_within"] is None else
                       round(v["within_tolerance"] - v["median_baseline_within"], 4))
                   for k, v in r["claims"]["per_kind"].items()}
        counts = r["counts_exact_where_detector_found_something"]["exact"]
        out[name] = {
            "claims_within_tolerance_ge_95pct": (r["claims"]["all"]["within_tolerance"] or 0)
            >= 0.95,
            "margin_over_median_baseline_per_kind": margins,
            "counts_exact_ge_80pct_where_found": None if counts is None else counts >= 0.8,
            "zero_claims_about_absent_channels": r["claims_about_absent_channels"] == 0,
            "rule_consistency_100pct": r["texts"][
                "rule_follows_from_own_numbers_and_names_final_stage"] == 1.0,
            "seconds_per_epoch_le_0_5": r["seconds_per_epoch"] <= 0.5}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "model_weights" / "default")
    ap.add_argument("--epochs", type=int, default=40, help="epochs per recording (evenly "
                    "spaced)")
    ap.add_argument("--free", action="store_true", help="the old path: the model writes every "
                    "step, no evidence given")
    ap.add_argument("--recordings", nargs="+", choices=RECORDINGS, default=list(RECORDINGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dreams", type=Path, default=DREAMS, help="the DREAMS spindles folder")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faithfulness.json")
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error(f"--epochs must be a positive integer, but got {args.epochs}")
    import torch

    from eegvlm_desktop.ml.vlm.weights import load_model

    torch.set_num_threads(args.threads)
    model, tok, _ = load_model(args.model, "cpu")
    names = [r for r in args.recordings if r == "example" or args.dreams.is_dir()]
    if len(names) < len(args.recordings):
        print(f"No DREAMS folder at {args.dreams}: only the example night is measured.",
              file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        recs = {name: evaluate(model, tok, name, args.epochs, args.free, Path(tmp), args.dreams)
                for name in names}
    mode = "free" if args.free else "grounded"
    run = {"mode": mode,
           "what": ("the model writes every step (no evidence given): the path before issue "
                    "19" if args.free else
                    "steps 1-3 are the measured evidence given to the model; it writes step 4 "
                    "and the stage by greedy decoding constrained to the texts true of the "
                    "evidence (one per stage)"),
           "command": " ".join(["python bench/faithfulness.py"] + sys.argv[1:]),
           "model": str(args.model.resolve().relative_to(REPO) if args.model.resolve()
                        .is_relative_to(REPO) else args.model),
           "threads": args.threads, "torch": torch.__version__,
           "recordings": recs,
           "targets_on_unseen_recordings": _targets(recs, [r for r in recs if r != "example"])}
    result: dict[str, Any] = {"benchmark": "faithfulness",
                              "note": "tolerances: band and slow-wave % +-10 points, "
                                      "amplitudes +-25 % (EOG power: +-25 % on its square "
                                      "root), counts and spindle density +-1 event; 'exact' "
                                      "is the measured value rounded as the text states it",
                              "runs": {}}
    if args.out.exists():
        try:
            old = json.loads(args.out.read_text())
            if old.get("benchmark") == "faithfulness":
                result["runs"] = old.get("runs", {})
        except json.JSONDecodeError:
            pass
    result["runs"][mode] = run
    text = json.dumps(result, indent=1, ensure_ascii=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(json.dumps({n: {"within": r["claims"]["all"]["within_tolerance"],
                          "absent": r["claims_about_absent_channels"],
                          "rule": r["texts"]["rule_follows_from_own_numbers_and_names_final_stage"],
                          "s": r["seconds_per_epoch"], **r["stages"]}
                      for n, r in recs.items()}, indent=1))


if __name__ == "__main__":
    main()
