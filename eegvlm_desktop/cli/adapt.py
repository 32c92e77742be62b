"""``eegvlm finetune --method adapt`` (the default): adapt a model to a lab's exported nights.

One JSON line on stdout: the new model, the guard's choice and the held-out accuracy and
kappa before -> after. Without ``--eval-data`` the last 20 % of each export's epochs are held
out for that check and the saved model is then fitted on all of them (``--keep-held-out``:
save the check's model instead). See :mod:`eegvlm_desktop.ml.adapt`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eegvlm_desktop.core.errors import EEGVLMError


def adapt(args: argparse.Namespace) -> int:
    """Run the adaptation; user errors raise :class:`EEGVLMError`."""
    from dataclasses import replace

    from eegvlm_desktop.core.staging.adapt import AdaptError, AdaptSettings
    from eegvlm_desktop.ml.adapt import adapt_from_exports
    from eegvlm_desktop.ml.vlm.weights import read_manifest

    model_dir, out = Path(args.model), Path(args.out)
    read_manifest(model_dir)  # a missing or broken folder fails before the data is read
    if out.resolve() == model_dir.resolve():
        raise EEGVLMError(f"--out must be a new folder, not the --model folder it adapts "
                          f"(got {args.out!r} for both).")
    if out.exists():
        raise EEGVLMError(f"--out: '{out}' already exists; choose a new model folder name.")
    for flag, folder in [("--data", f) for f in args.data] + [
            ("--eval-data", f) for f in args.eval_data or []]:
        if not Path(folder).is_dir():
            raise EEGVLMError(f"{flag}: the export folder '{folder}' does not exist; give "
                              "folders written by the app's fine-tuning export.")

    def progress(done: int, total: int) -> None:
        if not args.no_progress:
            print(f"adapt: {done}/{total} nights read", file=sys.stderr, flush=True)

    settings = AdaptSettings()
    if getattr(args, "variant_gains", None) is not None:
        settings = replace(settings, variant_gains=tuple(args.variant_gains))
    if getattr(args, "variant_shifts", None) is not None:
        settings = replace(settings, variant_shifts=tuple(args.variant_shifts))
    try:
        settings.validate()
    except AdaptError as err:
        raise EEGVLMError(f"--variant-gains / --variant-shifts: {err}") from None
    o = adapt_from_exports(model_dir, args.data, out, args.eval_data or (), progress=progress,
                           settings=settings, refit=not getattr(args, "keep_held_out", False))
    print(json.dumps({"model": str(out), "parent": str(model_dir), "method": "adapt",
                      "examples": o.report.n_epochs, "guard": o.report.to_dict(),
                      "metrics_before": o.before, "metrics_after": o.after,
                      # With a refit, before/after measured this fit, not the saved model.
                      "check_guard": None if o.check is None else o.check.to_dict(),
                      "seconds": o.seconds}), flush=True)
    return 0
