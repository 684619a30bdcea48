"""Lesion tracking and patient codes: parsing captions and comparing photos (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.db.models import Consultation
from inference.types import Risk

LABEL_MAX = 64
PATIENT_CODE_MAX = 32
# "#P123", "#p-17": a worker's code for a patient, never a name.
_PATIENT_CODE = re.compile(rf"#([0-9A-Za-z][0-9A-Za-z_-]{{0,{PATIENT_CODE_MAX - 1}}})\b")
_RISK_RANK = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}
# How far back an earlier, higher result of the same spot still holds the advice.
RECENT = timedelta(days=180)
# The follow-up answer with which a doctor's word overrules earlier results.
BENIGN = "benign"


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
    the advice follows it (see inference.advice) until a doctor's answer says otherwise."""

    label: str
    risk: Risk
    at: datetime


class Direction(StrEnum):
    """How a named spot's malignant estimate moved between two photos."""

    WORSE = "worse"  # up by more than two photos of one spot differ by chance
    LOWER = "lower"  # down by more than that: still no reassurance on its own
    SAME = "same"  # within the chance variation: no change to report
    UNMEASURED = "unmeasured"  # the model has no measured variation: no claim either way


@dataclass(frozen=True)
class Change:
    """How a named spot changed between two assessed photos."""

    label: str
    before_at: datetime
    risk_before: Risk
    risk_after: Risk
    probability_before: float | None
    probability_after: float | None
    # The model's measured same-spot variation (ModelMetadata.same_spot_delta): the
    # largest difference in malignant probability two photos of one unchanged spot show.
    same_spot_delta: float | None = None

    @property
    def direction(self) -> Direction:
        """Only a difference beyond the same-spot variation counts as a change.

        A mirrored copy of a held-out photo changes its risk level 12.6% of the time, so
        most "changes" between two photos are noise. A model without a measured variation
        gets no claim at all (the conservative fallback): neither "worse" nor "lower" is
        said, and the advice follows the higher of the results (inference.advice).
        """
        before, after = self.probability_before, self.probability_after
        if self.same_spot_delta is None or before is None or after is None:
            return Direction.UNMEASURED
        if after - before > self.same_spot_delta:
            return Direction.WORSE
        if before - after > self.same_spot_delta:
            return Direction.LOWER
        return Direction.SAME

    @property
    def worse(self) -> bool:
        return self.direction is Direction.WORSE


def change_between(
    previous: Consultation | None, current: Consultation, same_spot_delta: float | None = None
) -> Change | None:
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
        same_spot_delta=same_spot_delta,
    )


def standing_earlier(
    label: str, current: Risk, earlier: Iterable[tuple[Consultation, str | None]]
) -> Earlier | None:
    """The highest earlier result of a spot that still stands over ``current``.

    ``earlier``: the spot's recent assessed photos, oldest first, each with the doctor's
    answer to its follow-up ("benign", "cancer", ...; None without one). A doctor's
    "benign" overrules every result up to that photo; a lower result never does.
    """
    highest: tuple[Risk, datetime] | None = None
    for row, diagnosis in earlier:
        if diagnosis == BENIGN:
            highest = None  # a doctor looked at the spot: what came before is settled
            continue
        if row.risk is None or Risk(row.risk) not in _RISK_RANK:
            continue
        risk = Risk(row.risk)
        if highest is None or _RISK_RANK[risk] >= _RISK_RANK[highest[0]]:
            highest = (risk, row.created_at)  # the latest photo at the highest level
    if highest is None or current not in _RISK_RANK:
        return None
    if _RISK_RANK[highest[0]] <= _RISK_RANK[current]:
        return None
    return Earlier(label=label, risk=highest[0], at=highest[1])
