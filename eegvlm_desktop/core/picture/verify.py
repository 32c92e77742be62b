"""Check every step of a reasoning text against the evidence measured on its epoch.

The reasoning states numbers (band percentages, amplitudes, event counts, chin tone) and
draws a conclusion (step 4: the AASM rule of a stage and whether this epoch meets it). Each
statement is parsed back out of the text and compared with :class:`EpochEvidence`:

* band percentages and slow-wave coverage within ``PERCENT_POINTS`` percentage points;
* amplitudes (EEG and chin EMG RMS, the chin's ratio to the night's median) within
  ``RELATIVE`` of the measured value; EOG power (µV², a squared amplitude) within the same
  tolerance on its square root;
* event counts (spindles, K-complexes, slow waves, rapid eye movements) within ``COUNT`` of
  the detectors' count, and spindle density within the same count per 30 s;
* words that follow from numbers (dominant band, chin tone word) must be the ones the
  measured numbers give;
* step 4 must be the AASM rule of the stage it names, with the verdict the measured numbers
  give for that stage (:func:`.cot.rule_step`), and name the stage the text ends with;
* a statement about a channel the recording does not have is never true.

A step is *verified* when all its statements hold and it makes at least one checkable
statement. Pure Python: no numpy, torch or Qt, so the GUI, the exports and the benchmark all
use the same check.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from eegvlm_desktop.core.picture.cot import parse_answer, rule_step, tone_word
from eegvlm_desktop.core.picture.evidence import BANDS, EpochEvidence
from eegvlm_desktop.core.stages import STAGES

#: Tolerances of issue 19: band % and slow-wave % in points, amplitudes relative, counts.
PERCENT_POINTS = 10.0
RELATIVE = 0.25
COUNT = 1
#: Band percentages are rounded to 1 % each, so five of them may sum to 100 +- 2.5.
BAND_SUM_POINTS = 3.0

#: Where a step's statement came from.
MEASURED = "measured"  # the app's measurement, given to the model as the start of its answer
MODEL = "model"  # written by the model

_NUM = r"(\d+(?:\.\d+)?)"
_STAGE_ALT = "|".join(sorted(STAGES, key=len, reverse=True))
#: (kind, pattern); group 1 is the stated value. Kinds ending in '_count' are event counts.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("eeg_rms", re.compile(r"EEG amplitude is " + _NUM + r"\s*µV RMS", re.I)),
    ("spindles_count", re.compile(r"\b(\d+) sleep spindles?\b", re.I)),
    ("spindle_density", re.compile(_NUM + r" per minute", re.I)),
    ("k_complexes_count", re.compile(r"\b(\d+) K-complex", re.I)),
    ("slow_waves_count", re.compile(r"\b(\d+) slow waves?\b", re.I)),
    ("slow_wave_percent", re.compile(r"covering " + _NUM + r"\s*% of the epoch", re.I)),
    ("slow_wave_percent", re.compile(r"slow waves cover " + _NUM + r"\s*%", re.I)),
    ("slow_wave_percent", re.compile(r"slow-wave activity \(" + _NUM + r"\s*%\)", re.I)),
    ("rems_count", re.compile(r"\b(\d+) rapid eye movements?\b", re.I)),
    ("eog_power", re.compile(r"EOG power is " + _NUM + r"\s*µV", re.I)),
    ("emg_rms", re.compile(r"Chin EMG is " + _NUM + r"\s*µV RMS", re.I)),
    ("emg_relative", re.compile(_NUM + r" times the night's median", re.I)),
)
_BAND = re.compile(r"\b(" + "|".join(BANDS) + r")\s+" + _NUM + r"\s*%", re.I)
_DOMINANT = re.compile(r"dominant band is (\w+)", re.I)
_TONE = re.compile(r"\((low|intermediate|high) tone\)", re.I)
_NO_EOG = re.compile(r"no EOG channel", re.I)
_NO_EMG = re.compile(r"no chin EMG channel", re.I)
_RULE = re.compile(r"AASM rule for (" + _STAGE_ALT + r")\b")
# Words (not numbers) about eye movements or chin tone, as step 4's verdicts word them.
_EOG_WORDS = re.compile(r"rapid eye movements? (?:are|is) (?:present|detected)|"
                        r"no rapid eye movement|eye movements with chin tone", re.I)
_EMG_WORDS = re.compile(r"chin tone (?:is )?(?:at or below|at or above|above) the night's median",
                        re.I)
_STAGE_LINE = re.compile(r"^\s*stage\s*[:=]", re.I)
_STEP_NO = re.compile(r"^\s*\d+\.\s*")
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")

#: Kinds that need an EOG or a chin EMG channel (a value for them on a recording without
#: that channel is a statement about something that is not there).
EOG_KINDS = ("rems_count", "eog_power", "eog_statement")
EMG_KINDS = ("emg_rms", "emg_relative", "emg_tone", "emg_statement")
#: Every kind a claim can have, for reports (band percentages are one kind).
CLAIM_KINDS: tuple[str, ...] = (
    "band_percent", "band_sum", "dominant_band", "eeg_rms", "spindles_count",
    "spindle_density", "k_complexes_count", "slow_waves_count", "slow_wave_percent",
    "rems_count", "eog_power", "emg_rms", "emg_relative", "emg_tone", "eog_absent",
    "emg_absent", "eog_statement", "emg_statement", "rule", "rule_stage")


@dataclass(frozen=True)
class Claim:
    """One statement of a step and how it compares with the measurement.

    Attributes
    ----------
    kind : str
        One of ``CLAIM_KINDS`` (``band_percent`` claims carry the band in ``label``).
    stated : float or str
        The value or word the text states.
    measured : float, str or None
        The measured value (or the word it gives); None when the channel is absent.
    within : bool
        Within the tolerance of its kind (words: equal).
    exact : bool
        Equal to the measured value as the text would state it (same rounding).
    label : str
        The band of a band percentage; empty otherwise.
    """

    kind: str
    stated: float | str
    measured: float | str | None
    within: bool
    exact: bool
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    def describe(self) -> str:
        """Why it failed, in words, e.g. ``'theta 55 % stated, 33 % measured'``."""
        name = self.label if self.kind == "band_percent" else _KIND_WORDS.get(self.kind,
                                                                              self.kind)
        unit = _UNITS.get(self.kind, "")
        if self.measured is None:
            channel = "EOG" if self.kind in EOG_KINDS else "chin EMG"
            said = (f"'{self.stated}'" if isinstance(self.stated, str)
                    else f"{_fmt(self.stated)}{unit}")
            return f"{name} {said} stated, but the recording has no {channel} channel"
        return (f"{name} {_fmt(self.stated)}{unit} stated, {_fmt(self.measured)}{unit} "
                "measured")


_UNITS = {"band_percent": " %", "band_sum": " %", "slow_wave_percent": " %", "eeg_rms": " µV",
          "emg_rms": " µV", "eog_power": " µV²", "emg_relative": "×"}
_KIND_WORDS = {
    "band_sum": "band powers in total", "dominant_band": "dominant band",
    "eeg_rms": "EEG RMS", "spindles_count": "spindles", "spindle_density":
    "spindles per minute", "k_complexes_count": "K-complexes", "slow_waves_count":
    "slow waves", "slow_wave_percent": "slow-wave coverage", "rems_count":
    "rapid eye movements", "eog_power": "EOG power", "emg_rms": "chin EMG RMS",
    "emg_relative": "chin EMG relative to the night's median", "emg_tone": "chin tone",
    "eog_absent": "EOG channel", "emg_absent": "chin EMG channel",
    "eog_statement": "eye movements", "emg_statement": "chin tone", "rule": "step 4",
    "rule_stage": "stage of the rule"}


def _fmt(v: float | str | None) -> str:
    """A number as a reader wants it: 2070, 10.7, 1.24 (not 10.6962 or 2.07e+03)."""
    if not isinstance(v, float):
        return str(v)
    if abs(v) >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


@dataclass(frozen=True)
class StepCheck:
    """The verification of one step (one line of the reasoning).

    Attributes
    ----------
    step : int
        Index of the line in the reasoning's steps.
    source : str
        ``'measured'`` (the app's measurement, given to the model) or ``'model'``.
    verified : bool
        Every statement holds, and there is at least one to check.
    reasons : tuple of str
        Why it is not verified (empty when it is).
    claims : tuple of Claim
        The statements found in it.
    """

    step: int
    source: str
    verified: bool
    reasons: tuple[str, ...]
    claims: tuple[Claim, ...]

    @property
    def status(self) -> str:
        """``'measured'``, ``'verified'`` or ``'unverified'`` (what the panel shows)."""
        if not self.verified:
            return "unverified"
        return MEASURED if self.source == MEASURED else "verified"

    @property
    def note(self) -> str:
        """One line for the reader, e.g. ``'unverified: theta 55 % stated, 33 % measured'``."""
        if self.status == "unverified":
            return "unverified: " + "; ".join(self.reasons)
        if self.status == MEASURED:
            return "measured: the app's detectors on this epoch"
        kinds = {c.kind for c in self.claims}
        if kinds == {"rule_stage"}:
            return "verified: the stage whose rule step 4 applies"
        if "rule" in kinds:
            return "verified: the rule and the verdict the measured numbers give"
        return "verified against the measured evidence"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (exports)."""
        return {"step": self.step, "source": self.source, "status": self.status,
                "verified": self.verified, "note": self.note, "reasons": list(self.reasons),
                "claims": [c.to_dict() for c in self.claims]}


def _rel_ok(stated: float, measured: float) -> bool:
    return abs(stated - measured) <= RELATIVE * abs(measured) + 1e-9


def compare_claim(kind: str, stated: float, ev: EpochEvidence) -> Claim:
    """Compare one numeric statement of ``kind`` (a key of the text's patterns) with ``ev``."""
    if kind == "eeg_rms":
        m = ev.eeg_rms_uv
        return Claim(kind, stated, m, _rel_ok(stated, m), stated == round(m))
    if kind == "spindle_density":
        m = ev.spindle_density
        per_count = 60.0 / 30.0  # one spindle in a 30-s epoch is 2 per minute
        return Claim(kind, stated, m, abs(stated - m) <= COUNT * per_count + 1e-9,
                     f"{stated:.1f}" == f"{m:.1f}")
    if kind == "slow_wave_percent":
        m = ev.slow_wave_percent
        return Claim(kind, stated, m, abs(stated - m) <= PERCENT_POINTS + 1e-9,
                     stated == round(m))
    if kind.endswith("_count"):
        m = {"spindles_count": ev.n_spindles, "k_complexes_count": ev.n_k_complexes,
             "slow_waves_count": ev.n_slow_waves, "rems_count": ev.n_rems}[kind]
        if m is None:
            return Claim(kind, stated, None, False, False)
        return Claim(kind, stated, float(m), abs(stated - m) <= COUNT, stated == m)
    if kind == "eog_power":
        m = ev.eog_slow_power
        if m is None:
            return Claim(kind, stated, None, False, False)
        # A power is a squared amplitude: the amplitude tolerance applies to its root.
        return Claim(kind, stated, m, _rel_ok(math.sqrt(stated), math.sqrt(max(m, 0.0))),
                     stated == round(m))
    if kind in ("emg_rms", "emg_relative"):
        m = ev.emg_rms_uv if kind == "emg_rms" else ev.emg_relative
        if m is None:
            return Claim(kind, stated, None, False, False)
        return Claim(kind, stated, m, _rel_ok(stated, m), f"{stated:.2f}" == f"{m:.2f}")
    raise ValueError(f"Invalid value for the 'kind' parameter: it must be one of "
                     f"{[k for k, _ in _PATTERNS]}, but got {kind!r} instead.")


def step_claims(text: str, ev: EpochEvidence) -> list[Claim]:
    """Every checkable statement of one step's ``text``, compared with ``ev``.

    The rule of step 4 is not among them (it needs the final stage: :func:`verify_reasoning`).
    """
    claims: list[Claim] = []
    bands = _BAND.findall(text)
    for band, value in bands:
        b = band.lower()
        m = 100.0 * ev.band_powers[b]
        claims.append(Claim("band_percent", float(value), m,
                            abs(float(value) - m) <= PERCENT_POINTS + 1e-9,
                            float(value) == round(m), label=b))
    if len({b.lower() for b, _ in bands}) == len(BANDS):
        total = sum(float(v) for _, v in bands[:len(BANDS)])
        claims.append(Claim("band_sum", total, 100.0,
                            abs(total - 100.0) <= BAND_SUM_POINTS, abs(total - 100.0) <= 2.5))
    dom = _DOMINANT.search(text)
    if dom:
        # Any band tied for the top at the text's 1 % rounding is a true "dominant band".
        pct = {b: round(100.0 * v) for b, v in ev.band_powers.items()}
        top = [b for b in BANDS if pct[b] == max(pct.values())]
        said = dom.group(1).lower()
        claims.append(Claim("dominant_band", said, "/".join(top), said in top, said in top))
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            claims.append(compare_claim(kind, float(match.group(1)), ev))
    tone = _TONE.search(text)
    if tone:
        m = ev.emg_relative
        word = None if m is None else tone_word(round(m, 2))
        claims.append(Claim("emg_tone", tone.group(1).lower(), word,
                            word == tone.group(1).lower(), word == tone.group(1).lower()))
    # Worded statements about eye movements or chin tone are only checked here when the
    # channel is absent (then they are false); otherwise the rule check judges them.
    if ev.n_rems is None:
        claims += [Claim("eog_statement", m.group(0), None, False, False)
                   for m in _EOG_WORDS.finditer(text)]
    if ev.emg_relative is None:
        claims += [Claim("emg_statement", m.group(0), None, False, False)
                   for m in _EMG_WORDS.finditer(text)]
    # "No EOG channel" is itself a statement: false when the recording has one.
    if _NO_EOG.search(text):
        has = ev.n_rems is not None
        claims.append(Claim("eog_absent", "absent", "present" if has else "absent",
                            not has, not has))
    if _NO_EMG.search(text):
        has = ev.emg_relative is not None
        claims.append(Claim("emg_absent", "absent", "present" if has else "absent",
                            not has, not has))
    return claims


def _mask(text: str) -> str:
    """The text with every number replaced by '#' and spaces normalised (for wording)."""
    return " ".join(_NUMBERS.sub("#", _STEP_NO.sub("", text)).split())


def _split_rule(step: str) -> tuple[str, str]:
    """``rule_step``'s text cut into the rule sentence and the verdict."""
    head, _, tail = step.partition(": ")
    cut = tail.index(". ") + 1 if ". " in tail else len(tail)
    return f"{head}: {tail[:cut]}", tail[cut:].strip()


def _rule_claims(text: str, ev: EpochEvidence, final: str | None) -> tuple[list[Claim],
                                                                             list[str]]:
    """Claims and reasons of a step that states an AASM rule."""
    claims: list[Claim] = []
    reasons: list[str] = []
    named = _RULE.findall(text)
    stage = named[0]
    expected = rule_step(ev, stage)
    ok = _mask(text) == _mask(expected)
    claims.append(Claim("rule", _STEP_NO.sub("", text).strip(), expected, ok, ok))
    if not ok:
        rule, verdict = _split_rule(expected)
        if not _mask(text).startswith(_mask(rule)):
            reasons.append(f"this is not the AASM rule for {stage} (\"{rule}\")")
        else:
            reasons.append(f"for {stage} the measured numbers give \"{verdict}\"")
    if len(set(named)) > 1:
        reasons.append(f"it names the rules of several stages ({', '.join(named)})")
    same = final == stage
    claims.append(Claim("rule_stage", stage, final or "none", same, same))
    if not same:
        reasons.append(f"it applies the rule for {stage} but the answer is "
                       f"{final or 'no stage'}")
    return claims, reasons


def verify_reasoning(steps: list[str], ev: EpochEvidence, *,
                     measured: int = 0) -> list[StepCheck]:
    """Verify each step of a reasoning text against the evidence of its epoch.

    Parameters
    ----------
    steps : list of str
        The reasoning's non-empty lines in order (numbered steps, then ``Stage: X``).
    ev : EpochEvidence
        The epoch's measured evidence (:func:`.evidence.measure_night`).
    measured : int
        How many leading steps are the app's measurement rather than the model's words
        (``>= 0``); they are checked like the others and reported as ``'measured'``.

    Returns
    -------
    list of StepCheck, one per step.
    """
    if not isinstance(measured, int) or measured < 0:
        raise ValueError("Invalid value for the 'measured' parameter: it must be an integer "
                         f">= 0 (leading steps that are the app's measurement), but got "
                         f"{measured!r} instead.")
    final = parse_answer(next((s for s in reversed(steps) if _STAGE_LINE.match(s)), ""))
    rule_stages = [m for s in steps for m in _RULE.findall(s)]
    out = []
    for k, text in enumerate(steps):
        source = MEASURED if k < measured else MODEL
        if _STAGE_LINE.match(text):
            said = parse_answer(text)
            rule = rule_stages[-1] if rule_stages else None
            ok = said is not None and said == rule
            claim = Claim("rule_stage", said or "none", rule or "none", ok, ok)
            reason = () if ok else (
                ("it names no stage",) if said is None else
                (f"the answer {said} is not the stage whose rule step 4 applies "
                 f"({rule or 'none stated'})",))
            out.append(StepCheck(k, source, ok, reason, (claim,)))
            continue
        claims = step_claims(text, ev)
        reasons = [c.describe() for c in claims if not c.within]
        if _RULE.search(text):
            extra, why = _rule_claims(text, ev, final)
            claims += extra
            reasons += why
        if not claims:
            reasons.append("it states nothing that can be checked against the measurement")
        out.append(StepCheck(k, source, not reasons, tuple(reasons), tuple(claims)))
    return out


def stated_evidence(steps: list[str]) -> EpochEvidence | None:
    """The evidence a text states in its own numbers, or None when it leaves some out.

    Used to ask whether a text's step 4 follows from *its own* numbers (the benchmark's
    rule consistency), whatever the truth of those numbers.
    """
    text = "\n".join(s for s in steps if not _RULE.search(s))
    bands = {b.lower(): float(v) / 100.0 for b, v in _BAND.findall(text)}
    found: dict[str, float] = {}
    for kind, pattern in _PATTERNS:
        m = pattern.search(text)
        if m and kind not in found:
            found[kind] = float(m.group(1))
    need = ("spindles_count", "k_complexes_count", "slow_wave_percent")
    if len(bands) != len(BANDS) or any(k not in found for k in need):
        return None
    eog = None if _NO_EOG.search(text) else found.get("rems_count")
    rel = None if _NO_EMG.search(text) else found.get("emg_relative")
    return EpochEvidence(
        epoch=-1, eeg_channel=None, band_powers=bands, eeg_rms_uv=found.get("eeg_rms", 0.0),
        n_spindles=int(found["spindles_count"]), spindle_density=found.get("spindle_density",
                                                                           0.0),
        n_slow_waves=int(found.get("slow_waves_count", 0)),
        slow_wave_percent=found["slow_wave_percent"],
        n_k_complexes=int(found["k_complexes_count"]),
        n_rems=None if eog is None else int(eog), eog_slow_power=found.get("eog_power"),
        emg_rms_uv=found.get("emg_rms"), emg_relative=rel)


def rule_follows_from_text(steps: list[str]) -> bool:
    """True when the text's rule step names the stage it ends with and its verdict is the one
    its own stated numbers give (:func:`.cot.rule_step` on :func:`stated_evidence`)."""
    rules = [s for s in steps if _RULE.search(s)]
    final = parse_answer(next((s for s in reversed(steps) if _STAGE_LINE.match(s)), ""))
    own = stated_evidence(steps)
    if len(rules) != 1 or final is None or own is None:
        return False
    named = _RULE.findall(rules[0])
    if set(named) != {final}:
        return False
    return " ".join(_STEP_NO.sub("", rules[0]).split()) == " ".join(
        rule_step(own, final).split())
