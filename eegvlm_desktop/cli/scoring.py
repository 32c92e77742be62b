"""``eegvlm info``, ``hypnogram`` and ``export``: the scoring side of the command line.

Argument parsing and printing only; the work is done by :mod:`eegvlm_desktop.core`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    """Add the ``info``, ``hypnogram`` and ``export`` sub-commands to ``sub``."""
    i = sub.add_parser("info", help="describe a recording (channels, rates, units, duration)")
    i.add_argument("recording")
    h = sub.add_parser("hypnogram", help="convert a hypnogram, optionally checked against a "
                       "recording")
    h.add_argument("input")
    h.add_argument("output", nargs="?", help="output file (.csv .tsv .edf .json .txt, "
                   "*_events.tsv for BIDS, Luna's .annot .eannot); omit to print statistics")
    h.add_argument("--recording", help="check that the hypnogram fits this recording")
    h.add_argument("--fit", choices=("crop", "pad", "crop_or_pad"),
                   help="crop/pad a hypnogram that does not fit the recording")
    from eegvlm_desktop.core.hypnogram.write import WRITE_FORMATS
    x = sub.add_parser("export", help="export the labels: a fine-tuning dataset folder (images, "
                       "reasoning, expert stages) or a hypnogram file; de-identified by default")
    x.add_argument("recording")
    x.add_argument("out", help="folder (--format finetune) or file to write")
    x.add_argument("--hypnogram", help="labels to export (default: the labels saved for the "
                   "recording, else its hypnogram beside it)")
    x.add_argument("--format", default="finetune", choices=("finetune",) + WRITE_FORMATS)
    x.add_argument("--include-identity", action="store_true", help="keep the file name, start "
                   "date and patient fields of the recording (default: left out)")
    x.add_argument("--scorer", help="who vouches for the labels (default: your login name)")
    x.add_argument("--overwrite", action="store_true", help="replace an earlier export")


def run(args: argparse.Namespace) -> int:
    """Run one of this module's commands (``args.command``)."""
    if args.command == "info":
        return _info(args)
    if args.command == "export":
        return _export(args)
    return _hypnogram(args)


def _info(args: argparse.Namespace) -> int:
    """The recording's summary, then what the signal check on open finds, one line each."""
    from eegvlm_desktop.core.recording.quality import check_signal_quality
    from eegvlm_desktop.core.recording.recording import read_recording

    rec = read_recording(args.recording)
    print(rec.summary())
    if rec.n_epochs(30.0) == 0:
        print(f"Note: {rec.duration:g} s is shorter than one 30-s epoch, so this recording "
              "cannot be scored or staged.")
    for issue in check_signal_quality(rec):
        print(f"Signal problem: {issue}")
    return 0


def _hypnogram(args: argparse.Namespace) -> int:
    from eegvlm_desktop.core.errors import HypnogramMismatchError, as_sentences
    from eegvlm_desktop.core.hypnogram.fit import check_fit, fit_to_recording
    from eegvlm_desktop.core.hypnogram.read import read_hypnogram
    from eegvlm_desktop.core.hypnogram.write import write_hypnogram

    meas_date = duration = None
    rec = None
    if args.recording:
        from eegvlm_desktop.core.recording.recording import read_recording

        rec = read_recording(args.recording)
        meas_date, duration = rec.meas_date, rec.duration
    result = read_hypnogram(args.input, recording_start=meas_date, recording_duration=duration)
    hyp = result.hypnogram
    for a, b in result.mapping:
        print(f"mapping: {a} -> {b}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if rec is not None:
        problems = check_fit(hyp, rec.n_epochs(hyp.epoch_length), hyp.epoch_length)
        if problems and not args.fit:
            raise HypnogramMismatchError(
                f"{Path(args.input).name} does not match {Path(args.recording).name}: "
                + as_sentences(problems + ["Use --fit crop, pad or crop_or_pad to fit it"]),
                problems)
        if problems:
            hyp = fit_to_recording(hyp, rec.n_epochs(hyp.epoch_length), args.fit)
    if args.output:
        out = write_hypnogram(hyp, Path(args.output), meas_date=meas_date,
                              provenance={"source": Path(args.input).name})
        print(f"wrote {out}")
    else:
        from eegvlm_desktop.core.hypnogram.stats import sleep_statistics
        print(json.dumps(sleep_statistics(hyp), indent=2, default=float))
    return 0


def _export(args: argparse.Namespace) -> int:
    from eegvlm_desktop.core.export.recording import export_recording
    from eegvlm_desktop.core.scoring.document import default_user

    out, notes = export_recording(args.recording, args.out, fmt=args.format,
                                  hypnogram_path=args.hypnogram,
                                  scorer=args.scorer or default_user(),
                                  include_identity=args.include_identity,
                                  overwrite=args.overwrite)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {out}")
    return 0
