"""YASA zero-shot baseline on Sleep-EDF SC4001's standard window, printed as JSON.

Reference (design notes, YASA 0.8.1, EEG Fpz-Cz only, 841 epochs): accuracy 0.854,
macro-F1 0.809, kappa 0.809, ~9 s per night.

    python bench/yasa_baseline.py [--psg PATH] [--hyp PATH] [--eeg NAME] [--eog NAME]
                                  [--emg NAME] [--span window|recording]

``--span recording`` runs YASA on the whole 22-h file instead of the window's span and shows
how much YASA's per-recording feature normalisation moves the same 841 epochs.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

DATA = REPO.parent / "shared" / "data" / "sleep-edf"
REFERENCE = {"accuracy": 0.854, "macro_f1": 0.809, "kappa": 0.809, "n_epochs": 841}


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and print one JSON object; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psg", type=Path, default=DATA / "SC4001E0-PSG.edf")
    ap.add_argument("--hyp", type=Path, default=DATA / "SC4001EC-Hypnogram.edf")
    ap.add_argument("--eeg", default="EEG Fpz-Cz")
    ap.add_argument("--eog", default=None)
    ap.add_argument("--emg", default=None)
    ap.add_argument("--span", default="window", choices=("window", "recording"))
    args = ap.parse_args(argv)

    import yasa

    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.recording.recording import read_recording
    from eegvlm_desktop.core.staging.protocol import standard_window
    from eegvlm_desktop.core.staging.yasa_baseline import compare_with_yasa

    for p in (args.psg, args.hyp):
        if not p.exists():
            print(json.dumps({"error": f"{p} does not exist"}))
            return 2
    rec = read_recording(args.psg)
    imported = read_hypnogram(args.hyp, recording_start=rec.meas_date,
                              recording_duration=rec.duration)
    hyp = imported.hypnogram
    window = standard_window(hyp)
    result = compare_with_yasa(rec, hyp, window, eeg_name=args.eeg, eog_name=args.eog,
                               emg_name=args.emg, span=args.span)
    # The first call in a process pays for loading YASA's classifier and compiling its
    # feature code (numba); a second call shows the per-night cost once the app is warm.
    warm = compare_with_yasa(rec, hyp, window, eeg_name=args.eeg, eog_name=args.eog,
                             emg_name=args.emg, span=args.span)
    result["runtime_warm_s"] = warm["runtime_s"]
    out = {
        "recording": args.psg.name,
        "hypnogram": args.hyp.name,
        "window": {"n_epochs": int(len(window)), "first": int(window[0]),
                   "last": int(window[-1])},
        "yasa_version": yasa.__version__,
        "python": platform.python_version(),
        "reference": REFERENCE,
        **result,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
