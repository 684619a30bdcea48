"""A pipeline result built by hand, for tests of what the bot and the CLI say about it."""

from __future__ import annotations

import numpy as np

from inference.types import Prediction, QualityIssue, QualityReport, Risk, ScreeningResult


def screening_result(
    risk: Risk, top: str, malignant: float, issues: tuple[QualityIssue, ...] = ()
) -> ScreeningResult:
    """As the Screener gives it: the classifier judges refused photos too."""
    prediction = Prediction(
        probabilities={top: 1.0},
        malignant_probability=malignant,
        top_class=top,
        ood_score=0.0,
        heatmap=np.zeros((4, 4), np.float32),
    )
    return ScreeningResult(
        width=100,
        height=100,
        quality=QualityReport(issues),
        lesion_box=None,
        prediction=prediction,
        risk=risk,
        model_version="test",
    )
