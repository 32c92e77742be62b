"""How far does a model carry beyond its training lab? Zero-shot and amplitude-shift scores (JSON).

For each model folder given:

* ``dreams``: DREAMS excerpt 3 (another lab, C3-A1 / FP1-A1 at 50 Hz, raw chin EMG; 60 scored
  30-s epochs, never trained on), each epoch alone and with night context (the folder's own
  temperature, and temperature 1).
* ``gain_shift``: the same epochs with every EEG channel scaled by each ``--gains`` factor, as
  another montage or amplifier would record them (a referential C3-A1 is larger than the
  bipolar Fpz-Cz). Each epoch alone.
* ``held_out_block``: for a fold model of ``eegvlm evaluate --cv ... --save-models``, its own
  held-out SC4001 block at the same gains (in-lab, never trained on).
* ``montage`` (on both): the same epochs as a lab with another montage would record them:
  one EEG derivation in every EEG role (``only_<channel>``: a single-channel recording, e.g.
  Pz-Oz alone), no EOG, no chin EMG, and on SC4001 (100 Hz) ``rate_50hz``: EEG and EOG
  resampled to 50 Hz and back (a 50-Hz lab keeps nothing above 25 Hz).

No threshold or temperature is fitted on any of these epochs: they are only scored.

    python bench/zero_shot.py --models .devdata/cv2/fold4 .devdata/aug/a3/fold4 [--gains 0.7 1 1.4]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import DREAMS, SHARED, dreams_stages  # noqa: E402
from night_context import scores  # noqa: E402


class _Scaled:
    """A recording whose EEG channels read ``gain`` times larger (others unchanged)."""

    def __init__(self, recording: Any, eeg: set[int], gain: float) -> None:
        self._rec, self._eeg, self._gain = recording, eeg, gain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rec, name)

    def get_data(self, picks, start, stop):
        data = np.array(self._rec.get_data(picks, start, stop), dtype=np.float64)
        for row, ch in enumerate(picks):
            if ch in self._eeg:
                data[row] *= self._gain
        return data


def _dreams_epochs() -> tuple[Any, dict, np.ndarray, list[str]]:
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording

    stages = dreams_stages()
    rec = read_recording(DREAMS / "excerpt3.edf")
    return rec, pick_roles(rec.ch_names, rec.ch_types), np.arange(len(stages)), stages


def _sc4001_block(block: dict) -> tuple[Any, dict, np.ndarray, list[str]]:
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.recording.montage import pick_roles
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.stages import STAGES
    from eegvlm_desktop.core.staging.protocol import standard_window

    rec = read_recording(SHARED / "SC4001E0-PSG.edf")
    hyp = read_hypnogram(SHARED / "SC4001EC-Hypnogram.edf", recording_start=rec.meas_date,
                         recording_duration=rec.duration).hypnogram
    idx = [int(i) for i in standard_window(hyp)
           if block["first_epoch"] <= i <= block["last_epoch"] and hyp[int(i)] in STAGES]
    return rec, pick_roles(rec.ch_names, rec.ch_types), np.array(idx), [hyp[i] for i in idx]


def _at_gains(model, night, gains: list[float]) -> dict:
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    rec, roles, idx, stages = night
    eeg = {i for r, i in roles.items() if r.startswith("eeg") and i is not None}
    return {f"x{g:g}": scores(stages, predict_probs(
        model, render_night(_Scaled(rec, eeg, g), roles, idx))) for g in gains}


def _at_50hz(sig: Any) -> Any:
    """``sig`` as a 50-Hz recording would give it: EEG and EOG down to 50 Hz and back up."""
    from dataclasses import replace
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(50.0 / sig.sfreq).limit_denominator(1000)
    signals = dict(sig.signals)
    for role, x in signals.items():
        if role == "emg" or x is None or not np.all(np.isfinite(x)):
            continue  # edges off the recording (NaN) are left as they are
        down = resample_poly(x, ratio.numerator, ratio.denominator)
        signals[role] = resample_poly(down, ratio.denominator, ratio.numerator)[:len(x)]
    return replace(sig, signals=signals)


def _montages(model, night, rate: bool) -> dict:
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.core.recording.montage import EEG_ROLES
    from eegvlm_desktop.ml.vlm.predict import predict_probs

    rec, roles, idx, stages = night
    conditions: dict[str, tuple[dict, Any]] = {}
    for ch in sorted({i for r, i in roles.items() if r in EEG_ROLES and i is not None}):
        slug = "".join(c if c.isalnum() else "_" for c in rec.ch_names[ch].strip()).lower()
        conditions[f"only_{slug}"] = ({**roles, **dict.fromkeys(EEG_ROLES, ch)}, None)
    conditions["no_eog"] = ({**roles, "eog": None}, None)
    conditions["no_emg"] = ({**roles, "emg": None}, None)
    if rate:
        conditions["rate_50hz"] = (roles, _at_50hz)
    return {name: scores(stages, predict_probs(model, render_night(rec, r, idx, transform=t)))
            for name, (r, t) in conditions.items()}


def evaluate_model(folder: Path, gains: list[float]) -> dict:
    from eegvlm_desktop.core.picture.rendering import render_night
    from eegvlm_desktop.ml.vlm.predict import predict_probs
    from eegvlm_desktop.ml.vlm.weights import load_model, read_sequence

    model, _, manifest = load_model(folder, "cpu")
    card = manifest.get("card") or {}
    out: dict[str, Any] = {"model": str(folder),
                           "augment": ((card.get("training") or {}).get("settings")
                                       or {}).get("augment", 0)}
    if DREAMS.is_dir():
        night = _dreams_epochs()
        rec, roles, idx, stages = night
        probs = predict_probs(model, render_night(rec, roles, idx))
        seq = read_sequence(manifest, folder)
        out["dreams"] = {"epochs": len(idx), "epoch_alone": scores(stages, probs)}
        if seq is not None:
            out["dreams"]["night_context"] = scores(stages, seq.smooth(probs, idx))
            out["dreams"]["temperature"] = seq.temperature
            out["dreams"]["night_context_temperature_1"] = scores(
                stages, seq.with_temperature(1.0).smooth(probs, idx))
        out["dreams"]["gain_shift"] = _at_gains(model, night, gains)
        out["dreams"]["montage"] = _montages(model, night, rate=False)
    block = (card.get("training_data") or {}).get("held_out_block")
    if block and (SHARED / "SC4001E0-PSG.edf").exists():
        night = _sc4001_block(block)
        out["held_out_block"] = {**block, "epochs": len(night[2]),
                                 "gain_shift": _at_gains(model, night, gains),
                                 "montage": _montages(model, night, rate=True)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", type=Path, required=True)
    ap.add_argument("--gains", nargs="+", type=float, default=[0.7, 1.0, 1.4])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    result = {"benchmark": "zero_shot",
              "note": "scored only; nothing is fitted on these epochs",
              "command": "python bench/zero_shot.py " + " ".join(sys.argv[1:]),
              "models": [evaluate_model(m, args.gains) for m in args.models]}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
