"""Command line: ``eegvlm [gui] [FILE]``, ``info``, ``hypnogram``, ``export``
(:mod:`.scoring`), ``train``, ``evaluate``, ``finetune``, ``stage`` (:mod:`.model`,
:mod:`.evaluate`). This module holds the parser and the routing.

Every error the user can cause (bad file, mismatched hypnogram) is printed as one clear
line on stderr with exit status 2 — never a traceback. Imports are lazy so that the
non-GUI commands do not load Qt.
"""
from __future__ import annotations

import argparse
import sys

from eegvlm_desktop.core.errors import EEGVLMError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eegvlm", description="EEG-VLM Desktop: view and score "
                                "sleep recordings.")
    sub = p.add_subparsers(dest="command")
    g = sub.add_parser("gui", help="open the desktop app (default)")
    g.add_argument("recording", nargs="?", help="recording to open (EDF, BDF, FIF, ...)")
    g.add_argument("--hypnogram", help="hypnogram to import after opening")
    from eegvlm_desktop.cli import model, scoring

    scoring.add_parsers(sub)
    model.add_parsers(sub)
    return p


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown, once ``stage`` has written its
    result and printed its line.

    With torch loaded the teardown (module and library destructors) took 0.65 s and touched
    ~127 MB more (peak RSS of ``python -c "import torch"``: 647 MB, 519 MB when it ends
    this way), which set the peak of a whole ``eegvlm stage``. Only from the command line:
    callers of :func:`main` in a process of their own keep it.
    """
    import logging
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eegvlm`` script."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    known = {"gui", "info", "hypnogram", "export", "train", "evaluate", "finetune", "stage",
             "-h", "--help"}
    if not argv or argv[0] not in known:
        argv = ["gui"] + argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "gui":
            from eegvlm_desktop.gui.app import run_app
            return run_app(args.recording, args.hypnogram)
        if args.command in ("train", "evaluate", "finetune", "stage"):
            from eegvlm_desktop.cli.model import run
            code = run(args)
            if args.command == "stage" and from_command_line:
                _exit_now(code)
            return code
        from eegvlm_desktop.cli.scoring import run
        return run(args)
    except EEGVLMError as err:
        print(f"eegvlm: error: {err}", file=sys.stderr)
        return 2
