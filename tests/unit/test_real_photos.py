"""Real smartphone photos through the whole pipeline, and the offline CLI's contract.

The gate was rebuilt against real photos (PAD-UFES-20): clean clinic photos of lesions
must be answered, and every photo that decodes must carry the classifier's figures even
when refused, so that refusal and ranking can be judged apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.__main__ import main
from inference.decode import decode_image
from inference.pipeline import Screener
from inference.types import DecodeRejected, QualityIssue, Risk, ScreeningResult
from tests.conftest import DATA_DIR
from tests.e2e.chat import KNOWN_RISK_PHOTOS
from tests.shipped import shipped_metadata

PAD_PHOTOS = sorted((DATA_DIR / "pad").glob("*.jpg"))


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener()  # the shipped model


def test_the_real_sample_photos_are_committed() -> None:
    assert len(PAD_PHOTOS) >= 3


@pytest.mark.parametrize("risk", list(KNOWN_RISK_PHOTOS))
def test_the_photos_known_high_and_low_still_are(screener: Screener, risk: str) -> None:
    """The follow-up and worker tests rely on these two; a new model that moves either
    must get another sample photo (tests/data/README.md), not a test that skips a branch."""
    data = KNOWN_RISK_PHOTOS[risk].read_bytes()
    result = screener.screen_bytes(data, max_bytes=10_000_000, max_pixels=50_000_000)
    assert isinstance(result, ScreeningResult)
    assert result.risk is Risk(risk), result.prediction


@pytest.mark.parametrize("path", PAD_PHOTOS, ids=lambda p: p.stem)
def test_clean_real_phone_photo_passes_the_gate_and_gets_a_risk_level(
    screener: Screener, path: Path
) -> None:
    """A clinic's phone photo of a lesion, hair, sheen and all, gets an answer."""
    decoded = decode_image(path.read_bytes(), max_bytes=10_000_000, max_pixels=50_000_000)
    assert not isinstance(decoded, DecodeRejected)
    result = screener.screen(decoded.rgb, with_overlay=False)
    assert result.quality.issues == (), result.quality.measurements
    assert result.risk is not Risk.UNASSESSABLE
    assert result.lesion_box is not None


def _cli_records(capsys: pytest.CaptureFixture[str], *paths: Path) -> list[dict[str, object]]:
    assert main(["--json", "--workers", "1", *map(str, paths)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_classifies_a_photo_with_no_lesion_found_and_keeps_it_unassessable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No lesion found: the centre square is classified, the risk stays unassessable."""
    path = tmp_path / "wall.jpg"
    wall = np.full((600, 800, 3), (128, 128, 128), np.uint8)
    assert cv2.imwrite(str(path), wall)
    (record,) = _cli_records(capsys, path)
    assert record["risk"] == "unassessable"
    assert record["lesion_box"] is None
    assert "not_a_lesion" in record["quality"]["issues"]  # type: ignore[index]
    probabilities = record["probabilities"]
    assert isinstance(probabilities, dict) and len(probabilities) == len(shipped_metadata().classes)
    assert abs(sum(probabilities.values()) - 1.0) < 1e-3
    assert isinstance(record["malignant_probability"], float)


def test_cli_classifies_a_refused_lesion_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blurred real lesion photo is refused, and still carries the classifier's figures."""
    rgb = cv2.imread(str(PAD_PHOTOS[0]))
    path = tmp_path / "blurred.jpg"
    assert cv2.imwrite(str(path), cv2.GaussianBlur(rgb, (0, 0), 6.0))
    (record,) = _cli_records(capsys, path)
    assert record["risk"] == "unassessable"
    assert QualityIssue.BLURRY.value in record["quality"]["issues"]  # type: ignore[operator]
    assert isinstance(record["probabilities"], dict)
    assert isinstance(record["malignant_probability"], float)


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (40, 33)])
def test_cli_classifies_a_tiny_image_and_refuses_it_as_low_resolution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: tuple[int, int]
) -> None:
    """Every image that decodes gets probabilities, thumbnails included; the gate refuses it."""
    w, h = size
    rgb = cv2.resize(cv2.imread(str(PAD_PHOTOS[0])), (w, h), interpolation=cv2.INTER_AREA)
    path = tmp_path / "thumb.png"
    assert cv2.imwrite(str(path), rgb)
    (record,) = _cli_records(capsys, path)
    assert record["risk"] == "unassessable"
    assert QualityIssue.LOW_RESOLUTION.value in record["quality"]["issues"]  # type: ignore[operator]
    probabilities = record["probabilities"]
    assert isinstance(probabilities, dict) and len(probabilities) == len(shipped_metadata().classes)
    assert abs(sum(probabilities.values()) - 1.0) < 1e-3
