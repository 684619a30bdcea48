"""The shipped model's gate thresholds, as calibration wrote them into its metadata.

Tests judge with these, not with ``GateThresholds()``: the code defaults only load model
files written before calibration wrote the gate.
"""

from __future__ import annotations

from functools import cache

from inference.classifier import SHIPPED_MODEL, load_session, read_metadata
from inference.metadata import GateThresholds, ModelMetadata


@cache
def shipped_metadata() -> ModelMetadata:
    return read_metadata(load_session(SHIPPED_MODEL, 1))


def shipped_gate() -> GateThresholds:
    return shipped_metadata().gate


def shipped_margin() -> float:
    return shipped_metadata().crop_margin
