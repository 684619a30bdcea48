"""Lesion tracking and patient codes: parsing captions and comparing photos (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from bot.db.models import Consultation
from inference.types import Risk

LABEL_MAX = 64
PATIENT_CODE_MAX = 32
# "#P123", "#p-17": a worker's code for a patient, never a name.
_PATIENT_CODE = re.compile(rf"#([0-9A-Za-z][0-9A-Za-z_-]{{0,{PATIENT_CODE_MAX - 1}}})\b")
_RISK_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}
# A rise this large in the malignant probability counts as worse even at the same risk level.
WORSE_PROBABILITY_RISE = 0.10


@dataclass(frozen=True)
class Caption:
    patient_code: str | None
    label: str | None


def normalise_label(text: str | None) -> str | None:
    """Return a spot's name as stored and compared: single spaces, case-folded, capped."""
    words = " ".join((text or "").split()).casefold()
    return words[:LABEL_MAX].strip() or None


def parse_caption(caption: str | None) -> Caption:
    """Split a caption into a patient code (``#P123``) and the spot's name (the rest)."""
    text = caption or ""
    match = _PATIENT_CODE.search(text)
    code = match.group(1).upper() if match else None
    if match:
        text = text[: match.start()] + " " + text[match.end() :]
    return Caption(patient_code=code, label=normalise_label(text))


def parse_patient_code(text: str | None) -> str | None:
    """Read a patient code typed with or without its ``#``."""
    word = (text or "").strip()
    return parse_caption(word if word.startswith("#") else f"#{word}").patient_code


@dataclass(frozen=True)
class Earlier:
    """An earlier result of a named spot, higher than the latest one, that still stands:
    the advice follows it (see bot.advice) until a doctor's answer says otherwise."""

    label: str
    risk: Risk
    at: datetime


@dataclass(frozen=True)
class Change:
    """How a named spot changed between two assessed photos."""

    label: str
    before_at: datetime
    risk_before: Risk
    risk_after: Risk
    probability_before: float | None
    probability_after: float | None

    @property
    def worse(self) -> bool:
        """A higher risk level, or a clearly higher malignant probability."""
        if _RISK_RANK[self.risk_after] > _RISK_RANK[self.risk_before]:
            return True
        if self.probability_before is None or self.probability_after is None:
            return False
        return self.probability_after - self.probability_before >= WORSE_PROBABILITY_RISE


def change_between(previous: Consultation | None, current: Consultation) -> Change | None:
    """Compare two assessed photos of one named spot (None if there is nothing to compare)."""
    if previous is None or previous.risk is None or current.risk is None:
        return None
    return Change(
        label=current.lesion_label or "",
        before_at=previous.created_at,
        risk_before=Risk(previous.risk),
        risk_after=Risk(current.risk),
        probability_before=previous.malignant_probability,
        probability_after=current.malignant_probability,
    )
