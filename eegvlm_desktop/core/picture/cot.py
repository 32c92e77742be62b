"""Chain-of-thought text: reasoning steps built from measured evidence, and answer parsing.

Unlike the fixed per-stage paragraphs of the public EEG-VLM reproduction (which can state
spindles that are not there), every sentence here is derived from an :class:`EpochEvidence`,
so it is true of the epoch; when the evidence does not support the given stage the text says
so instead of inventing support. Pure string code: no numpy, no torch.
"""
from __future__ import annotations

import re

from eegvlm_desktop.core.picture.evidence import BANDS, EpochEvidence
from eegvlm_desktop.core.stages import STAGES

PROMPT = (
    "This image shows one 30-second epoch of a sleep recording: EEG traces (frontal, central, "
    "occipital), EOG and chin EMG at fixed amplitude scales, and a time-frequency map of the EEG "
    "at the bottom. Reason step by step like a sleep expert following the AASM rules: "
    "(1) background rhythm and band powers, (2) graphoelements (spindles, K-complexes, slow "
    "waves), (3) eye movements and chin EMG, (4) the AASM rule that applies. End with "
    "'Stage: ' followed by one of W, N1, N2, N3, R.")
DIRECT_PROMPT = (
    "This image shows one 30-second epoch of a sleep recording (EEG, EOG, chin EMG and an EEG "
    "time-frequency map). Answer only with 'Stage: ' followed by one of W, N1, N2, N3, R.")

N3_PERCENT = 20.0  # AASM: slow waves over >= 20 % of the epoch
# Chin tone words relative to the night's median RMS. R needs the lowest tone of the night;
# these cut-offs only choose words, each sentence also gives the number it is based on.
_EMG_LOW, _EMG_HIGH = 0.8, 1.25

_ANSWER = re.compile(r"stage\s*[:=\-]?\s*(rem|wake|w|n\s*[123]|r)(?![a-z0-9])", re.IGNORECASE)
_BARE = re.compile(r"^\s*(rem|wake|w|n\s*[123]|r)(?![a-z0-9])", re.IGNORECASE)


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"Invalid value for the 'stage' parameter: it must be one of {STAGES}, "
                         f"but got {stage!r} instead.")
    return stage


def _pct(x: float) -> str:
    return f"{100.0 * x:.0f} %"


def _step_background(ev: EpochEvidence) -> str:
    bp = ev.band_powers
    powers = ", ".join(f"{b} {_pct(bp[b])}" for b in BANDS)
    dominant = max(BANDS, key=lambda b: bp[b])
    # No channel name in the text: the model sees only the image, so a name it cannot see
    # would be learnt by rote and repeated on recordings with other montages (it was).
    return (f"Background rhythm: relative EEG power (0.5-30 Hz) is {powers}; "
            f"the dominant band is {dominant}; the EEG amplitude is {ev.eeg_rms_uv:.0f} µV RMS.")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _step_graphoelements(ev: EpochEvidence) -> str:
    return (f"Graphoelements: {_plural(ev.n_spindles, 'sleep spindle')} "
            f"({ev.spindle_density:.1f} per minute), "
            f"{_plural(ev.n_k_complexes, 'K-complex-like isolated slow wave')}, and "
            f"{_plural(ev.n_slow_waves, 'slow wave')} (> 75 µV peak-to-peak) covering "
            f"{ev.slow_wave_percent:.0f} % of the epoch.")


def tone_word(rel: float) -> str:
    """The chin-tone word for a chin EMG ``rel`` times the night's median RMS."""
    if rel < _EMG_LOW:
        return "low"
    return "high" if rel > _EMG_HIGH else "intermediate"


def _step_eyes_emg(ev: EpochEvidence) -> str:
    if ev.n_rems is None:
        eyes = "No EOG channel, so eye movements cannot be assessed."
    else:
        eyes = (f"Eye movements: {_plural(ev.n_rems, 'rapid eye movement')} detected; slow "
                f"(0.3-2 Hz) EOG power is {ev.eog_slow_power:.0f} µV².")
    if ev.emg_rms_uv is None or ev.emg_relative is None:
        emg = "No chin EMG channel, so muscle tone cannot be assessed."
    else:
        emg = (f"Chin EMG is {ev.emg_rms_uv:.2f} µV RMS, {ev.emg_relative:.2f} times the "
               f"night's median ({tone_word(round(ev.emg_relative, 2))} tone).")
    return f"{eyes} {emg}"


def rule_step(ev: EpochEvidence, stage: str) -> str:
    """Step 4's text for ``stage``: the AASM rule of that stage and the verdict on ``ev``.

    The verdict compares the numbers *as the text states them* (percentages to 1 %, the chin
    ratio to 0.01), so it follows from the text's own numbers: measured 19.7 % slow waves are
    stated as "20 %" and judged as 20 %, never "20 % ... below the 20 % criterion".
    """
    _check_stage(stage)
    bp = {b: round(100.0 * v) for b, v in ev.band_powers.items()}
    spindles_or_kc = ev.n_spindles + ev.n_k_complexes
    sw = round(ev.slow_wave_percent)
    rems = ev.n_rems or 0
    rel = None if ev.emg_relative is None else round(ev.emg_relative, 2)
    if stage == "N3":
        rule = "AASM rule for N3: slow waves over at least 20 % of the epoch (6 s)."
        verdict = (f"Slow waves cover {sw:.0f} %, which meets it." if sw >= N3_PERCENT else
                   f"Slow-wave activity ({sw:.0f} %) is below the 20 % N3 criterion; the stage "
                   "is assigned from context.")
    elif stage == "N2":
        rule = ("AASM rule for N2: one or more sleep spindles or K-complexes, with slow waves "
                "under 20 % of the epoch.")
        if spindles_or_kc and sw < N3_PERCENT:
            verdict = "Spindles or K-complexes are present and slow waves stay under 20 %."
        elif sw >= N3_PERCENT:
            verdict = (f"Slow waves cover {sw:.0f} %, above the 20 % limit of N2; the stage is "
                       "assigned from context.")
        else:
            verdict = ("No spindle or K-complex is detected in this epoch; N2 continues from "
                       "the preceding epochs (AASM 'N2 continues' rule).")
    elif stage == "N1":
        rule = ("AASM rule for N1: alpha replaced by low-amplitude mixed 4-7 Hz activity, with "
                "no spindles or K-complexes.")
        if spindles_or_kc:
            verdict = ("Spindles or K-complexes are detected, which argues against N1; the stage "
                       "is assigned from context.")
        elif bp["theta"] >= bp["alpha"]:
            verdict = "Theta power exceeds alpha power and no spindle or K-complex is seen."
        else:
            verdict = ("Alpha power still exceeds theta power; the stage is assigned from "
                       "context.")
    elif stage == "R":
        rule = ("AASM rule for R: low-amplitude mixed-frequency EEG, rapid eye movements and "
                "low chin tone.")
        parts = []
        if ev.n_rems is not None:
            parts.append("rapid eye movements are present" if rems else
                         "no rapid eye movement is detected")
        if rel is not None:
            parts.append("chin tone is at or below the night's median" if rel <= 1.0 else
                         "chin tone is above the night's median")
        verdict = ("Here " + ", ".join(parts) + "." if parts
                   else "Eye movements and chin tone cannot be checked.")
        if spindles_or_kc:
            # Without EOG and EMG there is no clause to attach "but ..." to.
            verdict = (verdict[:-1] + ", but spindles or K-complexes are present." if parts
                       else verdict + " Spindles or K-complexes are present, which argues "
                       "against R.")
    else:  # W
        rule = ("AASM rule for W: alpha rhythm over more than half of the epoch (eyes closed), "
                "or eye blinks / rapid eye movements with normal-to-high chin tone.")
        alpha_top = bp["alpha"] >= max(bp["theta"], bp["sigma"], bp["beta"])
        active = rems > 0 and rel is not None and rel >= 1.0
        if alpha_top:
            verdict = "Alpha is the strongest band above 4 Hz, which fits."
        elif active:
            verdict = "Eye movements with chin tone at or above the night's median fit."
        else:
            verdict = ("Neither a dominant alpha rhythm nor eye movements with high chin tone is "
                       "measured; the stage is assigned from context.")
    return f"{rule} {verdict}"


def reasoning_steps(ev: EpochEvidence, stage: str) -> list[str]:
    """Numbered reasoning steps for ``stage``, each true of the measured evidence ``ev``.

    Parameters
    ----------
    ev : EpochEvidence
        Output of :func:`eegvlm_desktop.core.picture.evidence.measure_night` for one epoch.
    stage : str
        One of ``STAGES`` (W, N1, N2, N3, R): the label the answer ends with.

    Returns
    -------
    list of str
        Four steps, "1. ..." to "4. ...": background, graphoelements, eyes and EMG, AASM rule.
    """
    _check_stage(stage)
    steps = measured_steps(ev) + [f"4. {rule_step(ev, stage)}"]
    return steps


def measured_steps(ev: EpochEvidence) -> list[str]:
    """Steps 1-3 ("1. ..." to "3. ..."): the measurements alone, the same for every stage.

    Only step 4 depends on the stage, so these are what the app states as measured and
    feeds to the model as the start of its answer (:mod:`eegvlm_desktop.core.vlm.explain`).
    """
    steps = [_step_background(ev), _step_graphoelements(ev), _step_eyes_emg(ev)]
    return [f"{k}. {s}" for k, s in enumerate(steps, 1)]


def format_answer(steps: list[str], stage: str) -> str:
    """Join the steps and end with exactly ``Stage: <W|N1|N2|N3|R>``."""
    _check_stage(stage)
    return "\n".join(list(steps) + [f"Stage: {stage}"])


def parse_answer(text: str) -> str | None:
    """The stage a model's answer ends with, or None when it names none.

    Takes the last ``Stage: X`` in the text (case and spacing free, trailing text allowed);
    failing that, a bare label at the start ("REM.", "n2"). 'REM' -> 'R', 'Wake' -> 'W'.
    """
    if not isinstance(text, str):
        return None
    found = _ANSWER.findall(text)
    label = found[-1] if found else None
    if label is None:
        m = _BARE.match(text)
        label = m.group(1) if m else None
    if label is None:
        return None
    label = re.sub(r"\s+", "", label).upper()
    return {"REM": "R", "WAKE": "W"}.get(label, label)
