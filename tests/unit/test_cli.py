"""The offline CLI (python -m inference) on folders: every valid file screened whatever
else is wrong, an exit code that says so, a progress bar and a summary on stderr, and the
bot's advice in English, Russian or Kazakh."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.__main__ import EXIT_INCOMPLETE, EXIT_OK, main
from inference.texts import Texts
from tests.conftest import DATA_DIR
from tests.model_copy import shipped_with_gate

PAD_PHOTOS = sorted((DATA_DIR / "pad").glob("*.jpg"))[:2]
EN, KK = Texts("en"), Texts("kk")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two real phone photos of lesions, one in a subfolder."""
    photos = tmp_path / "photos"
    (photos / "visit2").mkdir(parents=True)
    shutil.copy(PAD_PHOTOS[0], photos / PAD_PHOTOS[0].name)
    shutil.copy(PAD_PHOTOS[1], photos / "visit2" / PAD_PHOTOS[1].name)
    return photos


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["--workers", "1", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_missing_path_does_not_stop_the_others(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every image in the folder is screened; the missing path is named; the exit code
    says the run was incomplete."""
    missing = tmp_path / "no-such-folder"
    code, out, err = run(capsys, "--json", missing, folder)
    assert code == EXIT_INCOMPLETE
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(Path(r["image"]).name for r in records) == sorted(p.name for p in PAD_PHOTOS)
    assert all(r["risk"] in ("low", "medium", "high", "unassessable") for r in records)
    assert EN.text("cli.not_found", path=missing) in err
    assert "Screened 2 of 2 images." in err


def test_an_empty_folder_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, empty)
    assert code == EXIT_INCOMPLETE
    assert out == ""
    assert EN.text("cli.no_images", path=empty) in err
    assert "Screened 0 of 0 images." in err


def test_a_complete_run_exits_zero_with_a_summary(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, folder)
    assert code == EXIT_OK
    assert out.count(EN.text("disclaimer")) + out.count(EN.text("unassessable")) == 2
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("Screened 2 of 2 images. Low risk: ")


def test_a_file_that_is_not_an_image_is_named_and_the_rest_screened(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    code, out, err = run(capsys, folder)
    assert code == EXIT_INCOMPLETE
    assert f"{folder / 'broken.jpg'}\n  {EN.text('rejected.not_an_image')}" in out
    assert "Screened 2 of 3 images." in err
    assert EN.text("cli.not_screened", count=1) in err


def test_plain_output_in_kazakh_gives_the_advice_and_the_disclaimer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "--lang", "kk", PAD_PHOTOS[0])
    assert code == EXIT_OK
    record = json.loads(run(capsys, "--json", PAD_PHOTOS[0])[1])
    risk = record["risk"]
    assert risk != "unassessable"  # a clean clinic photo (tests/unit/test_real_photos.py)
    for key in (f"risk.{risk}", f"advice.{risk}", "disclaimer", f"lesion.{record['top_class']}"):
        assert KK.text(key) in out, key
    assert "диагноз емес" in out
    assert err.startswith("Тексерілген суреттер: 1 / 1.")


def test_progress_bar_for_folders(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bar = io.StringIO()
    assert main(["--workers", "1", "--json", str(folder)], progress_to=bar) == EXIT_OK
    assert "2/2" in bar.getvalue()
    assert "2/2" not in capsys.readouterr().out  # results only on stdout


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_ = capsys.readouterr().out
    assert "``" not in help_
    assert "--lang {en,ru,kk}" in help_
    assert "exit status:" in help_


def test_an_advisory_rule_answers_with_its_retake_tip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blurred phone photo: refused by the gate as the shipped model's metadata has it
    when ``blurry`` refuses; answered with the blur tip when calibration made it advisory."""
    rgb = np.asarray(Image.open(DATA_DIR / "pad" / "PAT_1364_1246_447.jpg").convert("RGB"))
    blurred = tmp_path / "blurred.png"
    Image.fromarray(np.asarray(cv2.GaussianBlur(rgb, (0, 0), 3), np.uint8)).save(blurred)
    refusing = shipped_with_gate(tmp_path / "refusing.onnx", advisory_rules=())
    advising = shipped_with_gate(tmp_path / "advising.onnx", advisory_rules=("blurry",))

    _, out, _ = run(capsys, "--json", "--model", refusing, blurred)
    record = json.loads(out)
    assert record["risk"] == "unassessable"
    assert record["quality"] == {"ok": False, "issues": ["blurry"], "tips": []}

    _, out, _ = run(capsys, "--json", "--model", advising, blurred)
    record = json.loads(out)
    assert record["risk"] in ("low", "medium", "high")
    assert record["quality"] == {"ok": True, "issues": [], "tips": ["blurry"]}

    _, out, _ = run(capsys, "--model", advising, blurred)
    tip = EN.text("result.tip", tip=EN.text("issue.blurry"))
    assert tip in out
    # The tip goes with the answer, before the disclaimer that ends it.
    assert out.index(EN.text(f"risk.{record['risk']}")) < out.index(tip)
    assert out.index(tip) < out.index(EN.text("disclaimer"))
