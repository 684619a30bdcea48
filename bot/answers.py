"""The optional questions about a spot: what can be answered, and reading the answers (pure).

Asked once per spot with buttons (bot.handlers.questions), stored as codes in
``Consultation.answers``; never free text. They do not change the risk (no held-out
measurement shows they help the model); a "changed", "grown" or "bled" answer adds the
matching warning to the advice (inference.advice.SIGN_NOTES).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SITES = ("head", "trunk", "arm", "leg", "hand_foot", "other")
AGES = ("under_30", "30_49", "50_69", "70_plus")
SIGNS = ("new", "changed", "grown", "bled", "itched")


def signs_of(answers: Mapping[str, Any] | None) -> frozenset[str]:
    """The signs the person reported (unknown codes ignored)."""
    raw = (answers or {}).get("signs") or []
    return frozenset(sign for sign in raw if sign in SIGNS)


def with_answer(answers: Mapping[str, Any] | None, step: str, value: str) -> dict[str, Any]:
    """A new answers dict with one step answered ("skip" leaves it unanswered); a sign
    toggles. Unknown steps or values change nothing."""
    updated = dict(answers or {})
    if step == "site" and (value in SITES or value == "skip"):
        updated["site"] = None if value == "skip" else value
    elif step == "age" and (value in AGES or value == "skip"):
        updated["age"] = None if value == "skip" else value
    elif step == "sign" and value in SIGNS:
        signs = set(signs_of(updated)) ^ {value}
        updated["signs"] = [sign for sign in SIGNS if sign in signs]
    elif step == "signs" and value in ("done", "skip"):
        updated["done"] = True
        if value == "skip":
            updated["signs"] = []
    return updated


def export_cell(answers: Mapping[str, Any] | None) -> str:
    """One CSV cell: "site=arm;age=50_69;signs=changed+bled" (codes only)."""
    if not answers:
        return ""
    parts = [f"{key}={answers[key]}" for key in ("site", "age") if answers.get(key)]
    signs = [sign for sign in SIGNS if sign in signs_of(answers)]
    if signs:
        parts.append("signs=" + "+".join(signs))
    return ";".join(parts)
