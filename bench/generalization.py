"""Leave-one-recording-out: how the app's answer holds up on recordings it never saw (JSON).

Recordings on hand (``../shared/data``): SC4001's standard window (Sleep-EDF, Fpz-Cz + Pz-Oz
+ EOG + chin-EMG envelope, 100 Hz, 841 epochs) and DREAMS excerpts 2, 3, 4 (another lab:
Cz-A1 at 200 Hz alone for 2 and 4; the EDF of 3 at 50 Hz with C3-A1, FP1-A1, O1-A1, EOG and
raw chin EMG), 60 epochs each. Each recording is scored by models that never saw it and
with settings fitted without it:

* DREAMS 2, 3, 4: the shipped model (image model trained on SC4001 only) with its shipped
  fusion weights (fitted on SC4001's cross-validation out-of-fold answers). No DREAMS epoch
  was used to fit anything. (DREAMS 3 was looked at when the image model's training variants
  were chosen in earlier sessions, so for the image model alone it is not zero-shot.)
* SC4001: an image model of the same recipe trained on DREAMS 2, 3 and 4 only
  (``--loro-vlm``; see below), pooled with weights fitted on the shipped image model's
  answers on DREAMS 2, 3 and 4 (never on SC4001). RobustSleepNet and YASA never saw
  Sleep-EDF.

Every recording is staged over its scored span (SC4001: the standard window, as YASA's
reference numbers are measured; DREAMS: the whole excerpt). Answers per recording and pooled
(all epochs together): ``default`` (what the app shows: the fused answer), ``image_alone``
(the EEG-VLM's direct answer, each epoch alone), ``image_context`` (the previous default: the
image model with calibrated night context), the ablations (each pair of sources, each
cohort stager alone, ``default_context``: the fused answer with night context on top) and
``yasa`` (YASA 0.8.1 itself, EEG only, on the same epochs; the library's own classifier).

Conditions (``conditions``): SC4001's window as other labs would record it -- one EEG
derivation only, no EOG and no EMG, EEG/EOG gain x0.5 and x2, resampled to 50 Hz and to
200 Hz, clipped at +-300 µV -- each scored by the SC4001 row's models (which never saw
SC4001).

The image model for the SC4001 row (its data are NC-ND: it stays on this machine)::

    eegvlm train --data excerpt2.edf:hyp2.csv .../excerpt3.edf:hyp3.csv excerpt4.edf:hyp4.csv \
        --out .devdata/loro/dreams-vlm --preset fast --fusion both --epochs 30 --batch-size 32 \
        --lr 0.0003 --seed 0 --augment 3 --device cpu

(``python bench/generalization.py --write-dreams DIR`` writes those EDF and CSV files.)

    python bench/generalization.py [--loro-vlm .devdata/loro/dreams-vlm] [--no-conditions]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SLEEP_EDF = SHARED / "sleep-edf"
DREAMS = SHARED / "dreams-spindles"
OOF = REPO / "bench" / "results" / "evaluate_cv5_cpu_r2_aug3v3_probs.json"
OUT = REPO / "bench" / "results" / "generalization.json"
#: DREAMS' R&K codes (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4).
DREAMS_CODES = {5: "W", 4: "R", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}
DREAMS_SECONDS = 1800.0
STAGES = ("W", "N1", "N2", "N3", "R")


# ---------------------------------------------------------------------------- data
def dreams_stages(k: int) -> list[str]:
    """30-s stages of DREAMS excerpt ``k``: the majority of six 5-s codes; a tie -> UNS."""
    codes = [int(float(x)) for x in (DREAMS / f"Hypnogram_excerpt{k}.txt").read_text().split()[1:]]
    out = []
    for i in range(0, len(codes) - 5, 6):
        ranked = Counter(DREAMS_CODES.get(c, "UNS") for c in codes[i:i + 6]).most_common()
        tie = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        out.append("UNS" if tie else ranked[0][0])
    return out


def dreams_text_to_edf(k: int, folder: Path) -> Path:
    """DREAMS' text export (``[CZ-A1]`` header, one µV value per line) as an EDF.

    The rate is not in the file: the excerpts last 1800 s, so rate = samples / 1800.
    """
    import mne

    lines = (DREAMS / f"excerpt{k}.txt").read_text().split()
    name = lines[0].strip("[]")
    x = np.asarray(lines[1:], dtype=float)
    raw = mne.io.RawArray(x[None] * 1e-6, mne.create_info([name], len(x) / DREAMS_SECONDS,
                                                           ["eeg"]), verbose="error")
    path = folder / f"excerpt{k}.edf"
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


def re_recorded(src: Path, out: Path, rate: float, gain: float) -> Path:
    """``src``'s first central channel (Cz, C3 or C4) alone, resampled to ``rate`` Hz with MNE
    and times ``gain``, written to ``out`` as EDF: a night as other labs record it."""
    import mne

    raw = mne.io.read_raw_edf(src, preload=True, verbose="error")
    central = [c for c in raw.ch_names if any(k in c.upper() for k in ("CZ", "C3", "C4"))]
    if not central:
        raise SystemExit(f"{src} has no central channel (Cz, C3, C4): {raw.ch_names}")
    raw.pick(central[:1])
    raw.resample(rate, verbose="error")
    raw.apply_function(lambda x: x * gain)
    mne.export.export_raw(out, raw, fmt="edf", overwrite=True, verbose="error")
    return out


def condition(spec: str) -> tuple[float, float] | None:
    """'RATE:GAIN' -> (rate, gain) for :func:`re_recorded`; 'recorded' -> None (as it is)."""
    if spec == "recorded":
        return None
    try:
        rate, gain = (float(v) for v in spec.split(":"))
    except ValueError:
        raise SystemExit(f"a condition is 'recorded' or RATE:GAIN (e.g. 128:2), got {spec!r}")
    return rate, gain


def stages_csv(stages: list[str], path: Path) -> Path:
    path.write_text("onset,duration,stage\n" + "".join(
        f"{30 * i},30,{s}\n" for i, s in enumerate(stages)), encoding="utf-8")
    return path


class Span:
    """A recording seen from epoch ``first`` for ``n`` epochs (the scored span)."""

    def __init__(self, recording: Any, first: int, n: int) -> None:
        self._rec = recording
        self._start = int(round(first * 30 * recording.sfreq))
        self.n_times = int(round(n * 30 * recording.sfreq))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rec, name)

    @property
    def duration(self) -> float:
        return self.n_times / self._rec.sfreq

    def n_epochs(self, epoch_length: float = 30.0) -> int:
        return int(np.floor(self.duration / epoch_length + 1e-9))

    def get_data(self, picks=None, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n_times if stop is None else min(int(stop), self.n_times)
        return self._rec.get_data(picks, self._start + max(0, int(start)), self._start + stop)


def sc4001_expert() -> tuple[list[str], np.ndarray]:
    """Expert stages and epoch numbers of SC4001's standard window (841 epochs)."""
    from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.staging.protocol import standard_window
    from eegvlm_desktop.core.recording.recording import read_recording

    rec = read_recording(SLEEP_EDF / "SC4001E0-PSG.edf")
    n = rec.n_epochs(30.0)
    hyp = read_hypnogram(SLEEP_EDF / "SC4001EC-Hypnogram.edf", recording_start=rec.meas_date,
                         recording_duration=rec.duration).hypnogram
    if check_fit(hyp, n, 30.0):
        hyp = fit_to_recording(hyp, n, "crop_or_pad")
    idx = np.asarray([i for i in standard_window(hyp) if hyp[int(i)] in STAGES])
    return [hyp[int(i)] for i in idx], idx


# ---------------------------------------------------------------------------- answers
def image_probs(model: Any, recording: Any, roles: dict, epochs: np.ndarray) -> np.ndarray:
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    out = [predict_probs(model, render_night(recording, roles, list(epochs[i:i + 128])))
           for i in range(0, len(epochs), 128)]
    return np.concatenate(out)


def yasa_library(recording: Any, roles: dict) -> np.ndarray:
    """YASA 0.8.1 itself (its pickled EEG-only classifier), on the central EEG channel."""
    import warnings

    import mne
    import yasa

    pick = next(roles[r] for r in ("eeg_central", "eeg_frontal", "eeg_occipital")
                if roles.get(r) is not None)
    n = recording.n_epochs(30.0)
    x = recording.get_data([pick], 0, int(round(n * 30 * recording.sfreq)))[0] * 1e-6
    raw = mne.io.RawArray(x[None], mne.create_info(["EEG"], recording.sfreq, ["eeg"]),
                          verbose="error")
    if recording.sfreq < 80:  # YASA asserts >= 80 Hz; give it what it needs
        raw.resample(100.0, verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hyp = yasa.SleepStaging(raw, eeg_name="EEG").predict()
    names = {"WAKE": "W", "W": "W", "N1": "N1", "N2": "N2", "N3": "N3", "REM": "R", "R": "R"}
    proba = hyp.proba.rename(columns=lambda c: names.get(str(c), str(c)))
    return proba.reindex(columns=list(STAGES)).to_numpy(dtype=float)


def metrics(expert: list[str], proba: np.ndarray) -> dict[str, Any]:
    from eegvlm_desktop.core.staging.metrics import stage_metrics

    m = stage_metrics(expert, [STAGES[i] for i in np.asarray(proba).argmax(1)])
    keep = ("accuracy", "macro_f1", "kappa", "per_stage_f1", "confusion", "n_epochs")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k in keep}


#: Answers scored on every recording: name -> sources pooled ('image+context' is special).
ABLATIONS: dict[str, tuple[str, ...]] = {
    "default": ("vlm", "rsn", "yasa"),
    "image_alone": ("vlm",),
    "rsn_alone": ("rsn",),
    "yasa_cohort_alone": ("yasa",),
    "image+rsn": ("vlm", "rsn"),
    "image+yasa": ("vlm", "yasa"),
    "rsn+yasa (no image)": ("rsn", "yasa"),
}


def fit_all(logs: list[dict], stages: list[list[str]]) -> dict[str, dict[str, float]]:
    """Fusion weights of every ablation, fitted on the given recordings."""
    from eegvlm_desktop.core.staging.fusion import fit_weights

    return {name: fit_weights(logs, stages, src) for name, src in ABLATIONS.items()
            if len(src) > 1}


def answers(logs: dict[str, np.ndarray], weights: dict[str, dict[str, float]],
            expert: list[str], epochs: np.ndarray, seq: Any, yasa_lib: np.ndarray
            ) -> dict[str, dict[str, Any]]:
    from eegvlm_desktop.core.staging.fusion import Fusion

    out: dict[str, Any] = {}
    fused = {}
    for name, src in ABLATIONS.items():
        w = weights.get(name, {src[0]: 1.0})
        fused[name] = Fusion(w).pool({s: logs[s] for s in src})
        out[name] = metrics(expert, fused[name]) | {"weights": {k: round(v, 3)
                                                                for k, v in w.items()}}
    if seq is not None:
        out["image_context"] = metrics(expert, seq.smooth(np.exp(logs["vlm"]), epochs))
        out["default_context"] = metrics(expert, seq.with_temperature(1.0).smooth(
            fused["default"], epochs))
    out["yasa"] = metrics(expert, yasa_lib)
    return out


# ---------------------------------------------------------------------------- main
def score_recording(recording: Any, roles: dict, epochs: np.ndarray, first: int,
                    model: Any, cohort: Any) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Each source's log-probabilities on ``epochs`` (numbers in the original recording)."""
    from eegvlm_desktop.core.staging.fusion import to_log

    span = Span(recording, first, int(epochs.max()) - first + 1)
    local = epochs - first
    t0 = time.perf_counter()
    ev = cohort.evidence(span, roles)
    logs = {s: v[local] for s, v in ev.log_proba.items()}
    logs["vlm"] = to_log(image_probs(model, span, roles, local))
    lib = yasa_library(span, roles)[local]
    info = {"cohort_channels": ev.channels, "notes": ev.notes, "seconds": round(
        time.perf_counter() - t0, 1), "cohort_seconds": ev.seconds}
    return logs, lib, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "model_weights" / "default"))
    ap.add_argument("--loro-vlm", default=str(REPO / ".devdata" / "loro" / "dreams-vlm"),
                    help="image model trained without SC4001 (for the SC4001 row)")
    ap.add_argument("--no-conditions", action="store_true")
    ap.add_argument("--write-dreams", metavar="DIR", help="only write DREAMS 2, 3, 4 as "
                    "EDF + 30-s stage CSV into DIR (training data of --loro-vlm) and exit")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--markdown", metavar="JSON", help="only print the tables of a result "
                    "file as Markdown (for docs/model.md) and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text(encoding="utf-8"))))
        return
    import torch

    torch.set_num_threads(2)
    from eegvlm_desktop.ml.cohort import CohortStager
    from eegvlm_desktop.core.staging.fusion import Fusion
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.staging.sequence import StageSequenceModel
    from eegvlm_desktop.ml.vlm.weights import load_model

    tmp = Path(tempfile.mkdtemp(prefix="eegvlm-gen-"))
    dreams_files = {}
    for k in (2, 3, 4):
        st = dreams_stages(k)
        psg = DREAMS / "excerpt3.edf" if k == 3 else dreams_text_to_edf(k, tmp)
        dreams_files[k] = (psg, st)
        if args.write_dreams:
            out = Path(args.write_dreams)
            out.mkdir(parents=True, exist_ok=True)
            if k != 3:
                (out / psg.name).write_bytes(psg.read_bytes())
            stages_csv(st, out / f"hyp{k}.csv")
    if args.write_dreams:
        print(f"wrote DREAMS 2, 4 (EDF) and the stage CSVs of 2, 3, 4 into {args.write_dreams}")
        return

    model, _, manifest = load_model(args.model)
    cohort = CohortStager(args.model)
    shipped = Fusion.from_dict(manifest["fusion"])
    rows: dict[str, Any] = {}
    logs_by: dict[str, dict] = {}
    expert_by: dict[str, list[str]] = {}
    lib_by: dict[str, np.ndarray] = {}
    for k, (psg, st) in dreams_files.items():
        name = f"dreams{k}"
        keep = np.array([i for i, s in enumerate(st) if s in STAGES])
        rec = read_recording(psg)
        roles = pick_roles(rec.ch_names, rec.ch_types)
        logs, lib, info = score_recording(rec, roles, keep, 0, model, cohort)
        logs_by[name], expert_by[name], lib_by[name] = logs, [st[i] for i in keep], lib
        rows[name] = {"file": psg.name, "channels": rec.ch_names, "rate_hz": rec.sfreq,
                      "epochs": len(keep), "image_model": "shipped (trained on SC4001 only)",
                      "stage_counts": dict(Counter(expert_by[name])), **info,
                      "_epochs": keep}
        print(name, "scored", flush=True)
    # SC4001: the image model of the same recipe trained on DREAMS only.
    expert, idx = sc4001_expert()
    loro_folder = Path(args.loro_vlm)
    loro_model, _, loro_manifest = load_model(loro_folder)
    rec = read_recording(SLEEP_EDF / "SC4001E0-PSG.edf")
    roles = pick_roles(rec.ch_names, rec.ch_types)
    first = int(idx.min())
    logs, lib, info = score_recording(rec, roles, idx, first, loro_model, cohort)
    logs_by["sc4001"], expert_by["sc4001"], lib_by["sc4001"] = logs, expert, lib
    rows["sc4001"] = {"file": "SC4001E0-PSG.edf (standard window)", "channels": rec.ch_names,
                      "rate_hz": rec.sfreq, "epochs": len(idx), "image_model":
                      f"{loro_folder.name}: same recipe, trained on DREAMS 2, 3, 4 only",
                      "stage_counts": dict(Counter(expert)), **info, "_epochs": idx}
    print("sc4001 scored", flush=True)

    # Weights: DREAMS rows use the shipped ones (fitted on SC4001's out-of-fold answers);
    # SC4001's are fitted on DREAMS 2, 3, 4 with the shipped image model's answers there.
    oof = json.loads(OOF.read_text())
    oof_pos = {e: i for i, e in enumerate(oof["epochs"])}
    sc_oof = dict(logs_by["sc4001"])
    sc_oof["vlm"] = np.log(np.clip(np.asarray(oof["probs"])[[oof_pos[e] for e in idx]],
                                   1e-6, 1))
    w_sc = fit_all([sc_oof], [expert])          # what the shipped weights are fitted on
    w_dreams = fit_all([logs_by[f"dreams{k}"] for k in (2, 3, 4)],
                       [expert_by[f"dreams{k}"] for k in (2, 3, 4)])
    for name, row in rows.items():
        weights = w_dreams if name == "sc4001" else w_sc
        if name != "sc4001":
            weights = dict(weights, default=shipped.weights)  # exactly what ships
        # Night context: the transitions of the image model's own training hypnograms.
        row_seq = StageSequenceModel.from_manifest(loro_manifest if name == "sc4001"
                                                   else manifest)
        ans = answers(logs_by[name], weights, expert_by[name], row.pop("_epochs"), row_seq,
                      lib_by[name])
        row["answers"] = ans
        row["weights_fitted_on"] = ("DREAMS 2, 3, 4 (shipped image model)" if name == "sc4001"
                                    else "SC4001 out-of-fold answers (the shipped weights)")
    # Pooled: every epoch of every recording together (summed confusion).
    from eegvlm_desktop.core.staging.metrics import stage_metrics

    pooled = {}
    for ans in rows["sc4001"]["answers"]:
        t, p = [], []
        for row in rows.values():
            cm = np.asarray(row["answers"][ans]["confusion"])
            for i in range(5):
                for j in range(5):
                    t += [STAGES[i]] * int(cm[i, j])
                    p += [STAGES[j]] * int(cm[i, j])
        m = stage_metrics(t, p)
        pooled[ans] = {k: round(m[k], 4) for k in ("accuracy", "macro_f1", "kappa")}
    result = {
        "command": " ".join(sys.argv),
        "protocol": __doc__.split("\n\n")[1].strip(),
        "shipped_fusion": manifest["fusion"]["weights"],
        "weights_fitted_on_sc4001_oof": {k: {s: round(v, 4) for s, v in w.items()}
                                         for k, w in w_sc.items()},
        "weights_fitted_on_dreams": {k: {s: round(v, 4) for s, v in w.items()}
                                     for k, w in w_dreams.items()},
        "recordings": rows, "pooled": pooled,
    }
    if not args.no_conditions:
        result["conditions"] = conditions(rec, roles, idx, expert, loro_model, cohort, w_dreams,
                                          tmp)
    Path(args.out).write_text(json.dumps(result, indent=1, default=_json), encoding="utf-8")
    summary = {n: {a: (r["answers"][a]["accuracy"], r["answers"][a]["kappa"])
                   for a in ("default", "image_alone", "yasa")} for n, r in rows.items()}
    print(json.dumps({"per_recording": summary, "pooled": pooled}, indent=1))


def _cell(m: dict) -> str:
    return f"{m['accuracy']:.3f} / {m['kappa']:.3f}"


def markdown(res: dict) -> str:
    """The result's tables: per recording and pooled, ablations, conditions."""
    rows = res["recordings"]
    order = [n for n in ("sc4001", "dreams2", "dreams3", "dreams4") if n in rows]
    head = ("| answer (accuracy / kappa) | " + " | ".join(
        f"{n} ({rows[n]['epochs']})" for n in order) + " | pooled |\n|---|"
        + "---|" * (len(order) + 1))
    lines = [head]
    for ans in res["pooled"]:
        cells = [_cell(rows[n]["answers"][ans]) for n in order]
        bold = "**" if ans in ("default", "yasa") else ""
        lines.append(f"| {bold}{ans}{bold} | " + " | ".join(cells)
                     + f" | {bold}{_cell(res['pooled'][ans])}{bold} |")
    out = "\n".join(lines)
    cond = res.get("conditions")
    if cond:
        answers = [a for a in next(iter(cond.values())) if a != "notes"]
        out += ("\n\n| SC4001 as recorded by another lab (accuracy / kappa) | "
                + " | ".join(answers) + " |\n|---|" + "---|" * len(answers))
        for name, c in cond.items():
            out += f"\n| {name} | " + " | ".join(_cell(c[a]) for a in answers) + " |"
    return out


def _json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


# ---------------------------------------------------------------------------- conditions
def _condition_raw(rec: Any, roles: dict, first: int, n: int, cond: str) -> Any:
    """SC4001's window as another lab would have recorded it, as an MNE Raw (volts)."""
    import mne
    from scipy.signal import resample_poly

    span = Span(rec, first, n)
    eeg = [roles[r] for r in ("eeg_frontal", "eeg_occipital")]
    keep = sorted({i for i in eeg + [roles["eog"], roles["emg"]] if i is not None})
    if cond == "no_eog_no_emg":
        keep = sorted(set(eeg))
    elif cond.startswith("only_"):
        keep = [eeg[0] if cond == "only_fpz_cz" else eeg[1]]
    data = span.get_data(keep)
    sf = rec.sfreq
    names = [rec.ch_names[i] for i in keep]
    types = [rec.ch_types[i] for i in keep]
    ex = [t in ("eeg", "eog") for t in types]
    if cond.startswith("gain_"):
        g = float(cond.split("_")[1])
        data[ex] *= g
    if cond == "clip_300":
        data[ex] = np.clip(data[ex], -300, 300)
    if cond.startswith("rate_"):
        new = int(cond.split("_")[1])
        data = resample_poly(data, new, int(sf), axis=1)
        sf = float(new)
    info = mne.create_info(names, sf, types)
    return mne.io.RawArray(data * 1e-6, info, verbose="error")


CONDITIONS = ("as_recorded", "only_fpz_cz", "only_pz_oz", "no_eog_no_emg", "gain_0.5",
              "gain_2", "rate_50", "rate_200", "clip_300")


def conditions(rec: Any, roles: dict, idx: np.ndarray, expert: list[str], model: Any,
               cohort: Any, weights: dict, tmp: Path) -> dict[str, Any]:
    import mne

    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording

    first, n = int(idx.min()), int(idx.max() - idx.min() + 1)
    out = {}
    for cond in CONDITIONS:
        raw = _condition_raw(rec, roles, first, n, cond)
        path = tmp / f"sc4001_{cond}.edf"
        mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
        r = read_recording(path)
        ro = pick_roles(r.ch_names, r.ch_types)
        logs, lib, info = score_recording(r, ro, idx - first, 0, model, cohort)
        ans = answers(logs, weights, expert, idx - first, None, lib)
        out[cond] = {k: {m: ans[k][m] for m in ("accuracy", "macro_f1", "kappa")}
                     for k in ("default", "image_alone", "rsn+yasa (no image)", "yasa")}
        out[cond]["notes"] = info["notes"]
        print(cond, {k: v["accuracy"] for k, v in out[cond].items() if k != "notes"},
              flush=True)
    return out


if __name__ == "__main__":
    main()
