"""Chain-of-thought text: every number comes from the evidence, answers parse robustly."""
from __future__ import annotations

import re

import pytest

from eegvlm_desktop.core.picture.cot import (DIRECT_PROMPT, PROMPT, format_answer, measured_steps,
                                             parse_answer, reasoning_steps, rule_step)
from eegvlm_desktop.core.picture.evidence import EpochEvidence
from eegvlm_desktop.core.stages import STAGES


def make_ev(**kw) -> EpochEvidence:
    base = dict(epoch=5, eeg_channel="EEG Fpz-Cz",
                band_powers={"delta": 0.62, "theta": 0.18, "alpha": 0.07, "sigma": 0.08,
                             "beta": 0.05},
                eeg_rms_uv=23.4, n_spindles=2, spindle_density=4.0, n_slow_waves=3,
                slow_wave_percent=12.3, n_k_complexes=1, n_rems=0, eog_slow_power=41.0,
                emg_rms_uv=1.5, emg_relative=0.62)
    base.update(kw)
    return EpochEvidence(**base)


def test_steps_state_the_measured_numbers() -> None:
    ev = make_ev()
    steps = reasoning_steps(ev, "N2")
    assert [s[:3] for s in steps] == ["1. ", "2. ", "3. ", "4. "]
    for band, value in ev.band_powers.items():
        assert f"{band} {round(100 * value)} %" in steps[0]
    assert "dominant band is delta" in steps[0] and "23 µV RMS" in steps[0]
    counts = {w: int(n) for n, w in re.findall(r"(\d+) (sleep spindle|K-complex|slow wave)",
                                                 steps[1])}
    assert counts == {"sleep spindle": 2, "K-complex": 1, "slow wave": 3}
    assert "4.0 per minute" in steps[1] and "covering 12 % of the epoch" in steps[1]
    assert "0 rapid eye movements" in steps[2] and "0.62 times" in steps[2]
    assert "low tone" in steps[2]
    assert "Spindles or K-complexes are present" in steps[3]


def test_n3_below_criterion_is_said_honestly() -> None:
    low = reasoning_steps(make_ev(slow_wave_percent=12.3), "N3")[3]
    assert "below the 20 % N3 criterion" in low and "12 %" in low
    high = reasoning_steps(make_ev(slow_wave_percent=35.0), "N3")[3]
    assert "meets it" in high and "35 %" in high


def test_no_invented_graphoelements() -> None:
    ev = make_ev(n_spindles=0, spindle_density=0.0, n_k_complexes=0, n_slow_waves=0,
                 slow_wave_percent=0.0)
    steps = reasoning_steps(ev, "N2")
    assert "0 sleep spindles" in steps[1] and "0 K-complex" in steps[1]
    assert "No spindle or K-complex is detected" in steps[3]
    assert "are present" not in " ".join(steps)


def test_rem_rule_checks_each_component() -> None:
    yes = reasoning_steps(make_ev(n_rems=4, n_spindles=0, n_k_complexes=0), "R")[3]
    assert "rapid eye movements are present" in yes and "at or below" in yes
    assert "spindles" not in yes.split("Here")[1]
    no = reasoning_steps(make_ev(n_rems=0, emg_relative=1.6), "R")[3]
    assert "no rapid eye movement" in no and "above the night's median" in no


def test_missing_channels_are_not_described() -> None:
    steps = reasoning_steps(make_ev(n_rems=None, eog_slow_power=None, emg_rms_uv=None,
                                    emg_relative=None), "W")
    assert "No EOG channel" in steps[2] and "No chin EMG channel" in steps[2]


@pytest.mark.parametrize("stage", STAGES)
def test_format_then_parse_round_trips(stage: str) -> None:
    text = format_answer(reasoning_steps(make_ev(), stage), stage)
    assert text.endswith(f"\nStage: {stage}")
    assert parse_answer(text) == stage


@pytest.mark.parametrize(("text", "stage"), [
    ("Stage: N2", "N2"), ("stage:n3", "N3"), ("STAGE :  w", "W"), ("Stage: REM", "R"),
    ("Stage: Wake.", "W"), ("Stage: R (rapid eye movements)", "R"), ("Stage: N 1", "N1"),
    ("1. lots of delta\nStage: N3\n</s>", "N3"), ("REM", "R"), ("n2.", "N2"),
    ("Stage: N2 ... on reflection Stage: N3", "N3"),
    ("the stage is assigned from context", None), ("Stage: N4", None), ("", None),
    ("Stage: wakefulness", None), ("Stage: Rapid", None),
])
def test_parse_answer(text: str, stage: str | None) -> None:
    assert parse_answer(text) == stage


def test_invalid_stage_and_prompts() -> None:
    with pytest.raises(ValueError, match="'stage'.*'N4'"):
        reasoning_steps(make_ev(), "N4")
    with pytest.raises(ValueError, match="'stage'"):
        format_answer([], "REM")
    assert "Stage: " in PROMPT and "step by step" in PROMPT
    assert "only" in DIRECT_PROMPT and parse_answer(DIRECT_PROMPT) is None


def test_only_step_4_depends_on_the_stage() -> None:
    """Steps 1-3 are the measurement alone: the app states them and gives them to the model."""
    for ev in (make_ev(), make_ev(n_rems=None, eog_slow_power=None, emg_rms_uv=None,
                                  emg_relative=None)):
        texts = [reasoning_steps(ev, s) for s in STAGES]
        assert all(t[:3] == measured_steps(ev) for t in texts)
        assert len({t[3] for t in texts}) == len(STAGES)
        assert all(t[3] == f"4. {rule_step(ev, s)}" for t, s in zip(texts, STAGES))


@pytest.mark.parametrize(("measured", "stated", "meets"), [(19.7, "20 %", True),
                                                          (19.4, "19 %", False)])
def test_the_verdict_follows_from_the_numbers_as_stated(measured, stated, meets) -> None:
    steps = reasoning_steps(make_ev(slow_wave_percent=measured), "N3")
    assert f"covering {stated}" in steps[1] and stated in steps[3]
    assert ("meets it" in steps[3]) is meets  # never "20 % ... below the 20 % criterion"
    rel = reasoning_steps(make_ev(emg_relative=0.999, n_rems=2), "W")
    assert "1.00 times" in rel[2] and "Eye movements with chin tone at or above" in rel[3]


def test_rem_rule_without_eog_and_emg_reads_well() -> None:
    ev = make_ev(n_rems=None, eog_slow_power=None, emg_rms_uv=None, emg_relative=None)
    assert rule_step(ev, "R").endswith("Eye movements and chin tone cannot be checked. "
                                       "Spindles or K-complexes are present, which argues "
                                       "against R.")
    with pytest.raises(ValueError, match="'stage'"):
        rule_step(ev, "REM")
