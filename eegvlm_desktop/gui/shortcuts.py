"""The one shortcut table: it drives the QActions, the menus, the help dialog and the tests.

Scorers work from the keyboard and come from two conventions: AASM tools (0/W, 1, 2, 3,
4/R) and R&K-era tools (5 = REM). Both are bound. Keep every key here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    """One user command: ``action_id`` names the handler, ``keys`` its key sequences."""

    action_id: str
    keys: tuple[str, ...]
    text: str
    description: str
    menu: str


SHORTCUTS: tuple[Shortcut, ...] = (
    # File
    Shortcut("open", ("Ctrl+O",), "&Open recording…", "Open a recording (EDF, BDF, FIF, …)", "File"),
    Shortcut("import_hypnogram", ("Ctrl+I",), "&Import hypnogram…",
             "Load stages from CSV/TSV, EDF+, YASA text, NSRR XML or JSON", "File"),
    Shortcut("export_hypnogram", ("Ctrl+E",), "&Export hypnogram…",
             "Save stages as CSV/TSV, EDF+ annotations, BIDS events or JSON", "File"),
    Shortcut("export_finetune", ("Ctrl+Shift+E",), "Export &fine-tuning dataset…",
             "Write your labels as a dataset the model can learn from (de-identified)", "File"),
    Shortcut("quit", ("Ctrl+Q",), "&Quit", "Close the app (labels are already saved)", "File"),
    # Edit
    Shortcut("undo", ("Ctrl+Z",), "&Undo", "Undo the last label change", "Edit"),
    Shortcut("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "&Redo", "Redo the last undone change", "Edit"),
    # Score
    Shortcut("stage_W", ("W", "0"), "Wake (W)", "Score the current epoch as Wake", "Score"),
    Shortcut("stage_N1", ("1",), "N1", "Score the current epoch as N1", "Score"),
    Shortcut("stage_N2", ("2",), "N2", "Score the current epoch as N2", "Score"),
    Shortcut("stage_N3", ("3",), "N3", "Score the current epoch as N3", "Score"),
    Shortcut("stage_R", ("R", "4", "5"), "REM (R)", "Score the current epoch as REM (5 as in R&K tools)",
             "Score"),
    Shortcut("stage_ART", ("A",), "Artefact", "Mark the current epoch as artefact", "Score"),
    Shortcut("stage_UNS", (".", "Delete"), "Unscored", "Clear the current epoch's label", "Score"),
    Shortcut("auto_advance", ("Ctrl+T",), "&Auto-advance",
             "Move to the next epoch after each label (toggle)", "Score"),
    # Navigate
    Shortcut("prev_epoch", ("Left",), "Previous epoch", "One epoch back", "Navigate"),
    Shortcut("next_epoch", ("Right",), "Next epoch", "One epoch forward", "Navigate"),
    Shortcut("prev_page", ("PgUp",), "Previous page", "One window back", "Navigate"),
    Shortcut("next_page", ("PgDown",), "Next page", "One window forward", "Navigate"),
    Shortcut("first_epoch", ("Home",), "First epoch", "Go to the first epoch", "Navigate"),
    Shortcut("last_epoch", ("End",), "Last epoch", "Go to the last epoch", "Navigate"),
    Shortcut("next_unscored", ("U",), "Next unscored", "Go to the next unscored epoch", "Navigate"),
    Shortcut("goto_epoch", ("Ctrl+G",), "&Go to epoch…", "Jump to an epoch number or clock time",
             "Navigate"),
    # View
    Shortcut("gain_up", ("+", "="), "Increase gain", "Bigger traces: the channel selected by a "
             "click, else all (the wheel on a trace changes that channel)", "View"),
    Shortcut("gain_down", ("-",), "Decrease gain", "Smaller traces: the selected channel, "
             "else all", "View"),
    Shortcut("deselect_channel", ("Esc",), "Deselect channel",
             "Gain keys act on all channels again", "View"),
    Shortcut("window_longer", ("Ctrl+Down",), "Longer window", "Show more seconds per page", "View"),
    Shortcut("window_shorter", ("Ctrl+Up",), "Shorter window", "Show fewer seconds per page", "View"),
    Shortcut("channels", ("Ctrl+K",), "&Channels and filters…",
             "Hide, reorder, filter and scale channels", "View"),
    # Model
    Shortcut("run_model", ("Ctrl+R",), "Stage the &night", "Run the model on every epoch in "
             "the background (the epoch on screen goes first)", "Model"),
    Shortcut("run_model_page", ("Ctrl+Shift+R",), "Stage this &page",
             "Run the model on the epochs on screen", "Model"),
    Shortcut("cancel_model", ("Ctrl+.",), "&Cancel staging", "Stop the model run; results so "
             "far are kept", "Model"),
    Shortcut("explain", ("E",), "&Explain this epoch", "Generate the model's step-by-step "
             "reasoning and attention for the current epoch", "Model"),
    Shortcut("accept_model", ("M",), "&Accept model label", "Take the model's stage for the "
             "current epoch as your label (undoable, logged as accepted)", "Model"),
    Shortcut("accept_model_page", ("Shift+M",), "Accept model labels on &page",
             "Take the model's stages for every epoch on screen", "Model"),
    Shortcut("next_uncertain", ("N",), "&Next to check", "Go to the next epoch where the model "
             "is unsure or disagrees with your label", "Model"),
    Shortcut("next_review", ("Q",), "Next in review &queue", "Go to the next unreviewed epoch "
             "of the review queue", "Model"),
    Shortcut("finetune", (), "&Fine-tune on exports…", "Fine-tune the current model on "
             "exported corrections, in the background", "Model"),
    Shortcut("show_model_hypnogram", (), "Show model &hypnogram", "Draw the model's stages "
             "over the expert hypnogram (toggle)", "Model"),
    Shortcut("show_hypnodensity", (), "Show hypno&density", "Draw the model's stage "
             "probabilities under the hypnogram (toggle)", "Model"),
    Shortcut("show_disagreements", (), "Show &disagreements", "Mark epochs where the model and "
             "the expert differ (toggle)", "Model"),
    Shortcut("toggle_attention", ("O",), "Attention &overlay", "Show or hide where the model "
             "looked, on the image and on the traces", "Model"),
    Shortcut("night_context", ("C",), "Night &context", "Decode the model's stages with the "
             "stage transitions of sleep (its neighbours inform each epoch) or show each "
             "epoch's own answer (toggle)", "Model"),
    # Help
    Shortcut("help", ("F1", "?"), "&Keyboard shortcuts", "Show this table", "Help"),
)

BY_ID: dict[str, Shortcut] = {s.action_id: s for s in SHORTCUTS}

#: action id -> stage label, for the scoring actions.
STAGE_ACTIONS: dict[str, str] = {
    s.action_id: s.action_id.split("_", 1)[1] for s in SHORTCUTS if s.action_id.startswith("stage_")
}


def help_rows() -> list[tuple[str, str, str]]:
    """Rows ``(menu, keys, description)`` for the help dialog, in table order."""
    return [(s.menu, ", ".join(s.keys), s.description) for s in SHORTCUTS]
