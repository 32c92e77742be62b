"""Make the bundled example night from PhysioNet Sleep-EDF SC4001 (run from the repo root).

    python scripts/make_example.py [--src ../shared/data/sleep-edf] [--out resources/example]

Crops SC4001E0-PSG.edf to the sleep period (lights-off - 30 min .. end of the last scored sleep
epoch + 30 min, on the hypnogram's 30-s grid), keeps EEG Fpz-Cz, EEG Pz-Oz, EOG horizontal and
EMG submental, and writes:

- ``SC4001-example-PSG.edf``: the original digital samples (no requantisation), each channel
  with its own rate, label, unit, prefilter text and physical/digital ranges;
- ``SC4001-example-Hypnogram.edf``: an EDF+C annotations-only file in Sleep-EDF's style,
  onsets relative to the cropped start, covering the cropped length exactly;
- ``ATTRIBUTION.md``: source, licence, citations, what was changed and how.

Then it reads both back with MNE and checks the stage counts against the original annotations
over the same window.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import warnings
from collections import Counter
from pathlib import Path

import edfio
import mne
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "sleep-edf"
PSG, HYP = "SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"
OUT_PSG, OUT_HYP = "SC4001-example-PSG.edf", "SC4001-example-Hypnogram.edf"
KEEP = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
LIGHTS_OFF = dt.time(0, 38)  # subject 00 night 1, from MNE's sleep_physionet age_records.csv
MARGIN_S = 30 * 60
EPOCH_S = 30
NOT_SLEEP = {"Sleep stage W", "Sleep stage ?"}


def crop_window(start: dt.datetime, annotations: mne.Annotations,
                duration: float) -> tuple[int, int]:
    """(start, stop) in seconds of the original file, on the hypnogram's 30-s grid."""
    lights_off = dt.datetime.combine(start.date(), LIGHTS_OFF)
    if lights_off < start:  # lights-off after midnight: the next calendar day
        lights_off += dt.timedelta(days=1)
    grid0 = float(annotations.onset[0])  # Sleep-EDF's grid starts at the first annotation
    t0 = (lights_off - start).total_seconds() - MARGIN_S
    sleep_end = max(o + d for o, d, s in zip(annotations.onset, annotations.duration,
                                             annotations.description) if s not in NOT_SLEEP)
    t1 = sleep_end + MARGIN_S
    t0 = grid0 + math.floor((t0 - grid0) / EPOCH_S) * EPOCH_S
    t1 = grid0 + math.ceil((t1 - grid0) / EPOCH_S) * EPOCH_S
    t1 = min(t1, grid0 + math.floor((duration - grid0) / EPOCH_S) * EPOCH_S)
    return int(max(t0, grid0)), int(t1)


def clip_annotations(ann: mne.Annotations, t0: float, t1: float) -> list[edfio.EdfAnnotation]:
    """Stage annotations intersected with [t0, t1), shifted to start at 0."""
    out = []
    for onset, dur, text in zip(ann.onset, ann.duration, ann.description):
        a, b = max(onset, t0), min(onset + dur, t1)
        if b > a:
            out.append(edfio.EdfAnnotation(round(a - t0, 6), round(b - a, 6), str(text)))
    return out


def epoch_counts(ann: mne.Annotations, t0: float, t1: float) -> Counter:
    """30-s epochs per label within [t0, t1) (annotation times relative to the file)."""
    counts: Counter = Counter()
    for onset, dur, text in zip(ann.onset, ann.duration, ann.description):
        overlap = min(onset + dur, t1) - max(onset, t0)
        if overlap > 0:
            counts[str(text)] += round(overlap / EPOCH_S)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=SRC, help="folder with the SC4001 files")
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "example")
    args = parser.parse_args(argv)
    if not (args.src / PSG).exists() or not (args.src / HYP).exists():
        print(f"error: {PSG} and {HYP} are needed in {args.src}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    psg = edfio.read_edf(args.src / PSG)
    orig_ann = mne.read_annotations(args.src / HYP)
    with warnings.catch_warnings():  # edfio warns when the legacy and EDF+ dates differ
        warnings.simplefilter("ignore")
        start = psg.startdatetime
    t0, t1 = crop_window(start, orig_ann, psg.duration)
    originals = {s.label: s for s in psg.signals}
    orig_digital = {label: originals[label].digital.copy() for label in KEEP}

    # Crop with edfio: slicing keeps every signal's digital samples and header fields.
    psg.drop_signals([s.label for s in psg.signals if s.label not in KEEP])
    psg.slice_between_seconds(t0, t1)
    psg.write(args.out / OUT_PSG)
    new_start = dt.datetime.combine(psg.startdate, psg.starttime)
    if new_start != start + dt.timedelta(seconds=t0):
        raise SystemExit(f"unexpected start of the crop: {new_start}")

    stages = clip_annotations(orig_ann, t0, t1)
    hyp = edfio.Edf([], patient=psg.patient, recording=psg.recording,
                    starttime=psg.starttime, annotations=stages)
    hyp.write(args.out / OUT_HYP)

    # ---- read back and check --------------------------------------------------------------
    check = edfio.read_edf(args.out / OUT_PSG)
    for sig in check.signals:
        rate = originals[sig.label].sampling_frequency
        a, b = round(t0 * rate), round(t1 * rate)
        if not np.array_equal(sig.digital, orig_digital[sig.label][a:b]):
            raise SystemExit(f"digital samples of {sig.label} changed")
        for field in ("physical_dimension", "prefiltering", "physical_range", "digital_range",
                      "sampling_frequency", "transducer_type"):
            if getattr(sig, field) != getattr(originals[sig.label], field):
                raise SystemExit(f"{sig.label}: {field} changed")
    raw = mne.io.read_raw_edf(args.out / OUT_PSG, preload=False, verbose="error")
    ann = mne.read_annotations(args.out / OUT_HYP)
    duration = raw.n_times / raw.info["sfreq"]
    covered = float(ann.onset[0]), float(ann.onset[-1] + ann.duration[-1])
    if duration != t1 - t0 or covered != (0.0, duration) or ann.duration.sum() != duration:
        raise SystemExit(f"length mismatch: signal {duration} s, hypnogram {covered}")
    before, after = epoch_counts(orig_ann, t0, t1), epoch_counts(ann, 0, duration)
    print(f"crop: {t0}-{t1} s of the original ({(t1 - t0) / 3600:.2f} h, "
          f"{(t1 - t0) // EPOCH_S} epochs), "
          f"{start + dt.timedelta(seconds=t0):%Y-%m-%d %H:%M:%S} - "
          f"{start + dt.timedelta(seconds=t1):%Y-%m-%d %H:%M:%S}")
    print(f"MNE reads {len(raw.ch_names)} channels {raw.ch_names}, {duration:g} s, "
          f"start {raw.info['meas_date']}")
    print(f"{'label':<16}{'original window':>16}{'example file':>14}")
    for label in sorted(before | after):
        print(f"{label:<16}{before[label]:>16}{after[label]:>14}")
    if before != after:
        raise SystemExit("stage counts differ")
    sizes = {p: (args.out / p).stat().st_size for p in (OUT_PSG, OUT_HYP)}
    for name, size in sizes.items():
        print(f"{name}: {size:,} bytes ({size / 2**20:.1f} MiB)")
    write_attribution(args.out / "ATTRIBUTION.md", start, t0, t1, after, sizes)
    return 0


def write_attribution(path: Path, start: dt.datetime, t0: int, t1: int, counts: Counter,
                      sizes: dict[str, int]) -> None:
    clock = [start + dt.timedelta(seconds=s) for s in (t0, t1)]
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items()))
    path.write_text(f"""# Example night: provenance and licence

`{OUT_PSG}` ({sizes[OUT_PSG]:,} bytes) and `{OUT_HYP}` ({sizes[OUT_HYP]:,} bytes) are a
cropped copy of one night of the **PhysioNet Sleep-EDF Database Expanded** (sleep-edfx v1.0.0),
sleep-cassette study, record **SC4001** (subject 00, night 1): files `{PSG}` and `{HYP}`.

## Licence

The Sleep-EDF Database Expanded is distributed by PhysioNet under the **Open Data Commons
Attribution License v1.0 (ODC-By 1.0)**, https://opendatacommons.org/licenses/by/1-0/.
This derived copy is shared under the same terms; keep this notice with it.

## Citations

- B. Kemp, A. H. Zwinderman, B. Tuk, H. A. C. Kamphuisen, J. J. L. Oberyé. Analysis of a
  sleep-dependent neuronal feedback loop: the slow-wave microcontinuity of the EEG.
  *IEEE Transactions on Biomedical Engineering* 47(9):1185–1194 (2000).
- A. L. Goldberger, L. A. N. Amaral, L. Glass, J. M. Hausdorff, P. Ch. Ivanov, R. G. Mark,
  J. E. Mietus, G. B. Moody, C.-K. Peng, H. E. Stanley. PhysioBank, PhysioToolkit, and
  PhysioNet: components of a new research resource for complex physiologic signals.
  *Circulation* 101(23):e215–e220 (2000).

## What was changed

- **Cropped in time** to {t0}–{t1} s of the original recording ({t1 - t0} s =
  {(t1 - t0) / 3600:.2f} h = {(t1 - t0) // EPOCH_S} epochs of 30 s), i.e. clock time
  {clock[0]:%Y-%m-%d %H:%M:%S} to {clock[1]:%Y-%m-%d %H:%M:%S} (the original starts
  {start:%Y-%m-%d %H:%M:%S}; Sleep-EDF dates are shifted for anonymity). The window runs from
  lights-off ({LIGHTS_OFF:%H:%M:%S}) minus 30 min to the end of the last scored sleep epoch
  plus 30 min, on the original 30-s epoch grid. The start date/time in the header is the
  original start plus {t0} s.
- **Channels kept**: EEG Fpz-Cz, EEG Pz-Oz, EOG horizontal (100 Hz) and EMG submental
  (1 Hz, an envelope). Dropped: Resp oro-nasal, Temp rectal, Event marker.
- **Samples unchanged**: the original 16-bit digital samples were copied (no resampling, no
  requantisation); labels, units, prefilter text, transducer and physical/digital ranges of
  each kept channel are the original ones, as is the header's patient field (already
  anonymised by PhysioNet); the recording field's start date follows the new start.
- **Hypnogram**: the original stage annotations intersected with the window and shifted so
  that onsets are relative to the cropped start; written as an EDF+C annotations-only file
  with Sleep-EDF's labels ('Sleep stage W', 'Sleep stage 1'…'Sleep stage 4', 'Sleep stage R',
  'Sleep stage ?'; the last does not occur in this window). It covers the cropped length
  exactly. Epochs per stage (the same as in the original over this window):

| label | 30-s epochs |
|---|---|
{rows}

## How it was made

From the repository root, with `../shared/data/sleep-edf` holding the two original files:

    python scripts/make_example.py

The script reads the result back with MNE and checks the digital samples, header fields and
stage counts against the original over the same window.
""", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
