"""A rule calibration made advisory answers the photo and sends its retake tip with the
answer: the real bot, the shipped weights (with that gate in their metadata), a fake
Telegram, a real SQLite file."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bot.replies import Replies
from inference.types import QualityIssue
from tests.conftest import DATA_DIR
from tests.e2e.chat import send_photo
from tests.e2e.conftest import make_settings, start_bot
from tests.fakes.telegram_api import FakeTelegramApi
from tests.model_copy import shipped_with_gate


def blurred_phone_photo() -> bytes:
    """A real clinic phone photo of a lesion, out of focus (the gate measures ~3.9 px)."""
    rgb = np.asarray(Image.open(DATA_DIR / "pad" / "PAT_1364_1246_447.jpg").convert("RGB"))
    out = io.BytesIO()
    Image.fromarray(np.asarray(cv2.GaussianBlur(rgb, (0, 0), 3), np.uint8)).save(
        out, format="JPEG", quality=95
    )
    return out.getvalue()


async def test_an_advisory_rule_answers_with_the_retake_tip(
    fresh_api: FakeTelegramApi, tmp_path: Path
) -> None:
    model = shipped_with_gate(tmp_path / "model.onnx", advisory_rules=("blurry",))
    settings = make_settings(fresh_api.url, tmp_path / "bot.db", model_path=model)
    replies = Replies()
    async with start_bot(settings) as bot:
        user = 78_001
        await bot.agree(user)
        send_photo(fresh_api, user, blurred_phone_photo())
        sent = await fresh_api.wait_for_text(user)
        text = next(m.text for m in sent if m.has_text and m.text)
        tip = replies.text("result.tip", tip=replies.text(f"issue.{QualityIssue.BLURRY}"))
        assert tip in text
        assert replies.text("disclaimer") in text
        assert replies.text("unassessable") not in text
        (row,) = await bot.consultations(user)
        assert row.quality_ok and row.risk in ("low", "medium", "high")
