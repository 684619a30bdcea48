"""Captions, spot names, the 'worse' rule, and sealed chat ids (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.db.models import Consultation
from bot.replies import for_language
from bot.tracking import (
    Change,
    Direction,
    Earlier,
    parse_caption,
    parse_patient_code,
    standing_earlier,
)
from inference.types import Risk

NOW = datetime(2026, 3, 12, tzinfo=UTC)


def change(
    before: Risk, after: Risk, p_before: float, p_after: float, delta: float | None = 0.1
) -> Change:
    return Change("mole", NOW, before, after, p_before, p_after, delta)


def test_only_a_change_beyond_the_same_spot_variation_counts() -> None:
    """Two photos of one spot differ by chance: a difference within the model's measured
    same-spot variation is no change, up or down; without a measure, no claim at all."""
    assert change(Risk.LOW, Risk.LOW, 0.10, 0.25).direction is Direction.WORSE
    assert change(Risk.LOW, Risk.MEDIUM, 0.10, 0.15).direction is Direction.SAME
    assert change(Risk.MEDIUM, Risk.LOW, 0.27, 0.02).direction is Direction.LOWER
    assert change(Risk.MEDIUM, Risk.LOW, 0.27, 0.02, delta=0.3).direction is Direction.SAME
    assert change(Risk.LOW, Risk.HIGH, 0.1, 0.9, delta=None).direction is Direction.UNMEASURED
    assert not change(Risk.LOW, Risk.HIGH, 0.1, 0.9, delta=None).worse


def test_comparison_text_names_both_levels_and_probabilities() -> None:
    """Worse: risk and probability before -> after, and the advice to see a doctor; within
    the variation or unmeasured: no levels or estimates shown as if they were news."""
    text = for_language("en").comparison(change(Risk.LOW, Risk.MEDIUM, 0.1, 0.3))
    assert text.startswith("Compared with the photo of “mole” from 12 March 2026:")
    assert "• risk: low → medium" in text
    assert "10% → 30%" in text
    assert "please see a doctor soon" in text
    ru = for_language("ru")
    same = ru.comparison(change(Risk.MEDIUM, Risk.LOW, 0.3, 0.25))
    assert same.endswith(ru.text("track.same")) and "→" not in same
    lower = ru.comparison(change(Risk.MEDIUM, Risk.LOW, 0.5, 0.02))
    assert "• риск: средний → низкий" in lower and lower.endswith(ru.text("track.lower"))
    unmeasured = ru.comparison(change(Risk.MEDIUM, Risk.LOW, 0.5, 0.02, delta=None))
    assert unmeasured.endswith(ru.text("track.unmeasured")) and "→" not in unmeasured


def _row(day: int, risk: Risk) -> Consultation:
    return Consultation(risk=risk.value, created_at=datetime(2026, 3, day, tzinfo=UTC))


def test_the_highest_recent_result_stands_until_a_doctor_says_otherwise() -> None:
    """High then low: the high one stands; a doctor's "benign" settles what came before."""
    high, low = _row(1, Risk.HIGH), _row(2, Risk.LOW)
    earlier = standing_earlier("calf", Risk.LOW, [(high, None), (low, None)])
    assert earlier == Earlier("calf", Risk.HIGH, high.created_at)
    assert standing_earlier("calf", Risk.HIGH, [(high, None)]) is None  # not higher
    assert standing_earlier("calf", Risk.LOW, [(high, "benign"), (low, None)]) is None
    # The doctor saw the spot after the high result: that answer settles it too.
    checked = _row(2, Risk.MEDIUM)
    assert standing_earlier("calf", Risk.LOW, [(high, None), (checked, "benign")]) is None
    assert standing_earlier("calf", Risk.LOW, [(high, "cancer"), (low, None)]) is not None
    medium = _row(3, Risk.MEDIUM)
    after = standing_earlier("calf", Risk.LOW, [(high, "benign"), (medium, None)])
    assert after == Earlier("calf", Risk.MEDIUM, medium.created_at)


def test_caption_gives_patient_code_and_spot_name() -> None:
    """'#P123 Left shoulder mole' -> code P123, name 'left shoulder mole'."""
    caption = parse_caption("#p123  Left Shoulder   mole")
    assert (caption.patient_code, caption.label) == ("P123", "left shoulder mole")
    assert parse_caption("родинка на плече").label == "родинка на плече"
    assert parse_caption(None).label is None
    assert parse_caption("x" * 200).label == "x" * 64
    assert parse_patient_code("p7") == parse_patient_code("#P7") == "P7"
    assert parse_patient_code("") is None
