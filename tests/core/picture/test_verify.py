"""Verification of reasoning steps against the measured evidence (core/picture/verify.py)."""
from __future__ import annotations

import json

import pytest

from eegvlm_desktop.core.picture.cot import format_answer, reasoning_steps
from eegvlm_desktop.core.picture.evidence import EpochEvidence
from eegvlm_desktop.core.picture.verify import (CLAIM_KINDS, rule_follows_from_text,
                                                stated_evidence, step_claims, verify_reasoning)
from eegvlm_desktop.core.stages import STAGES

from tests.core.picture.test_cot import make_ev  # one evidence fixture for both


NO_EOG_EMG = dict(n_rems=None, eog_slow_power=None, emg_rms_uv=None, emg_relative=None)


def text_of(ev: EpochEvidence, stage: str) -> list[str]:
    return format_answer(reasoning_steps(ev, stage), stage).split("\n")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("channels", [{}, NO_EOG_EMG], ids=["full", "eeg_only"])
def test_the_measured_text_verifies_for_every_stage(stage, channels):
    ev = make_ev(**channels)
    checks = verify_reasoning(text_of(ev, stage), ev, measured=3)
    assert [c.status for c in checks] == ["measured"] * 3 + ["verified"] * 2
    assert all(c.verified and not c.reasons for c in checks)
    assert rule_follows_from_text(text_of(ev, stage))
    kinds = {c.kind for chk in checks for c in chk.claims}
    assert kinds <= set(CLAIM_KINDS)
    assert {"band_percent", "band_sum", "spindles_count", "rule", "rule_stage"} <= kinds
    json.dumps([c.to_dict() for c in checks])  # plain JSON, for exports


def test_a_wrong_number_marks_only_its_step():
    ev = make_ev()
    steps = text_of(ev, "N2")
    steps[0] = steps[0].replace("theta 18 %", "theta 55 %")
    checks = verify_reasoning(steps, ev)
    assert [c.status for c in checks] == ["unverified", "verified", "verified", "verified",
                                          "verified"]
    assert "theta 55 % stated, 18 % measured" in checks[0].note
    assert "band powers in total 137 % stated" in checks[0].note  # no longer sums to 100


@pytest.mark.parametrize(("said", "ok", "exact"), [(2, True, True), (3, True, False),
                                                   (1, True, False), (0, False, False),
                                                   (4, False, False)])
def test_counts_are_within_one_and_exact_when_equal(said, ok, exact):
    claim = [c for c in step_claims(f"{said} sleep spindles", make_ev(n_spindles=2))
             if c.kind == "spindles_count"][0]
    assert (claim.within, claim.exact) == (ok, exact)


def test_amplitude_and_power_tolerances():
    ev = make_ev(eeg_rms_uv=20.0, eog_slow_power=100.0)
    ok = {c.kind: c.within for c in step_claims(
        "the EEG amplitude is 25 µV RMS. EOG power is 150 µV².", ev)}
    assert ok == {"eeg_rms": True, "eog_power": True}  # 25 % on RMS; sqrt(1.5) = 1.22
    ok = {c.kind: c.within for c in step_claims(
        "the EEG amplitude is 26 µV RMS. EOG power is 160 µV².", ev)}
    assert ok == {"eeg_rms": False, "eog_power": False}


def test_a_dominant_band_tied_at_the_stated_rounding_is_true():
    ev = make_ev(band_powers={"delta": 0.404, "theta": 0.396, "alpha": 0.1, "sigma": 0.05,
                              "beta": 0.05})
    claims = step_claims("the dominant band is theta", ev)
    assert claims[0].within  # both are "40 %" in the text
    assert not step_claims("the dominant band is alpha", ev)[0].within


def test_statements_about_absent_channels_are_never_verified():
    ev = make_ev(**NO_EOG_EMG)
    steps = reasoning_steps(make_ev(), "R") + ["Stage: R"]  # written as if EOG/EMG existed
    checks = verify_reasoning(steps, ev)
    assert checks[2].status == "unverified"
    absent = [c for c in checks[2].claims if c.measured is None]
    assert {c.kind for c in absent} == {"rems_count", "eog_power", "emg_rms", "emg_relative",
                                        "emg_tone"}
    assert "but the recording has no EOG channel" in checks[2].note
    assert "but the recording has no chin EMG channel" in checks[2].note
    # Step 4's words about eye movements and chin tone are claims about absent channels too.
    assert {c.kind for c in checks[3].claims if c.measured is None} == {"eog_statement",
                                                                        "emg_statement"}
    # ... and saying a channel is absent when the recording has it is false as well.
    wrong = verify_reasoning(text_of(make_ev(**NO_EOG_EMG), "N2"), make_ev())
    assert wrong[2].status == "unverified" and "EOG channel 'absent' stated" not in wrong[2].note
    assert "EOG channel absent stated, present measured" in wrong[2].note


def test_rule_of_another_stage_and_a_mismatched_answer():
    ev = make_ev()
    steps = text_of(ev, "N1")
    # The issue's example: "AASM rule for W:" followed by N1's rule, ending "Stage: N1".
    steps[3] = steps[3].replace("AASM rule for N1", "AASM rule for W")
    checks = verify_reasoning(steps, ev)
    assert checks[3].status == "unverified"
    assert "this is not the AASM rule for W" in checks[3].note
    assert "it applies the rule for W but the answer is N1" in checks[3].note
    assert checks[4].status == "unverified" and "not the stage whose rule" in checks[4].note
    assert not rule_follows_from_text(steps)


def test_a_verdict_the_numbers_do_not_give_is_unverified():
    ev = make_ev(slow_wave_percent=43.0)
    steps = text_of(ev, "N3")
    steps[3] = steps[3].replace("Slow waves cover 43 %, which meets it.",
                                "Slow-wave activity (43 %) is below the 20 % N3 criterion; the "
                                "stage is assigned from context.")
    checks = verify_reasoning(steps, ev)
    assert checks[3].status == "unverified"
    assert 'for N3 the measured numbers give "Slow waves cover 43 %, which meets it."' in \
        checks[3].note
    # A wrong number inside a verdict of the right kind is caught by its tolerance.
    steps = text_of(ev, "N3")
    steps[3] = steps[3].replace("cover 43 %", "cover 30 %")
    assert "slow-wave coverage 30 % stated, 43 % measured" in verify_reasoning(steps, ev)[3].note


def test_rule_consistency_uses_the_texts_own_numbers():
    ev = make_ev(slow_wave_percent=43.0)
    steps = text_of(make_ev(slow_wave_percent=5.0), "N3")  # wrong numbers, own verdict
    assert rule_follows_from_text(steps)
    assert verify_reasoning(steps, ev)[1].status == "unverified"
    own = stated_evidence(steps)
    assert own is not None and own.slow_wave_percent == 5.0 and own.n_spindles == 2
    assert stated_evidence(["1. Nothing measurable.", "Stage: W"]) is None
    assert not rule_follows_from_text(["1. Nothing measurable.", "Stage: W"])


def test_lines_without_checkable_statements_and_a_missing_stage():
    ev = make_ev()
    checks = verify_reasoning(["1. The epoch looks like sleep.", "Stage: unsure"], ev)
    assert [c.status for c in checks] == ["unverified", "unverified"]
    assert "states nothing that can be checked" in checks[0].note
    assert "it names no stage" in checks[1].note


def test_bad_measured_count_names_the_parameter():
    with pytest.raises(ValueError, match="'measured'.*-1"):
        verify_reasoning(["Stage: W"], make_ev(), measured=-1)
