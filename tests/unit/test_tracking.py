"""Captions, spot names, the 'worse' rule, and sealed chat ids (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.replies import for_language
from bot.tracking import Change, parse_caption, parse_patient_code
from inference.types import Risk

NOW = datetime(2026, 3, 12, tzinfo=UTC)


def change(before: Risk, after: Risk, p_before: float, p_after: float) -> Change:
    return Change("mole", NOW, before, after, p_before, p_after)


def test_a_change_is_worse_on_a_higher_risk_or_a_clear_probability_rise() -> None:
    """The rule behind the 'see a doctor, it changed' advice."""
    assert change(Risk.LOW, Risk.MEDIUM, 0.2, 0.2).worse
    assert change(Risk.LOW, Risk.LOW, 0.10, 0.25).worse
    assert not change(Risk.LOW, Risk.LOW, 0.10, 0.15).worse
    assert not change(Risk.HIGH, Risk.MEDIUM, 0.5, 0.4).worse


def test_comparison_text_names_both_levels_and_probabilities() -> None:
    """Worse: risk and probability before -> after, and the advice to see a doctor."""
    text = for_language("en").comparison(change(Risk.LOW, Risk.MEDIUM, 0.1, 0.3))
    assert text.startswith("Compared with the photo of “mole” from Mar 12, 2026:")
    assert "• risk: low → medium" in text
    assert "10% → 30%" in text
    assert "please see a doctor soon" in text
    ru = for_language("ru").comparison(change(Risk.LOW, Risk.LOW, 0.1, 0.1))
    assert "• риск: низкий → низкий" in ru and "Хуже, чем в прошлый раз, не стало" in ru


def test_caption_gives_patient_code_and_spot_name() -> None:
    """'#P123 Left shoulder mole' -> code P123, name 'left shoulder mole'."""
    caption = parse_caption("#p123  Left Shoulder   mole")
    assert (caption.patient_code, caption.label) == ("P123", "left shoulder mole")
    assert parse_caption("родинка на плече").label == "родинка на плече"
    assert parse_caption(None).label is None
    assert parse_caption("x" * 200).label == "x" * 64
    assert parse_patient_code("p7") == parse_patient_code("#P7") == "P7"
    assert parse_patient_code("") is None
