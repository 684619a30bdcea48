"""/report and the button under each result: a report image for the doctor, in the
person's language, drawn from the stored results (photos are never kept)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.db.models import utc_now
from bot.doctor_report import render_png
from bot.handlers.report import latest_per_spot
from bot.replies import for_language
from tests.e2e.chat import last_text, send_photo
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAD_DIR = Path(__file__).resolve().parents[1] / "data" / "pad"
KK = for_language("kk")


@pytest.fixture
def carcinoma() -> bytes:
    """A real phone photo of a basal cell carcinoma, which the model rates high."""
    return (PAD_DIR / "PAT_145_216_110.jpg").read_bytes()


def photos(api: FakeTelegramApi, chat_id: int) -> list[SentMessage]:
    return [m for m in api.replies_to(chat_id) if m.method == "sendPhoto"]


async def test_report_in_kazakh_has_the_result_and_the_disclaimer(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int, carcinoma: bytes
) -> None:
    """A Kazakh user's high result, then /report: one PNG in Kazakh whose lines are the
    result, the likely type, the advice and the "not a diagnosis" line."""
    user = new_user_id
    await running_bot.agree(user, language="kk")
    send_photo(fake_api, user, carcinoma, caption="сол иық")
    result = await last_text(fake_api, user, 1)
    assert KK.text("risk.high") in (result.text or ""), "the carcinoma is no longer high risk"
    [row] = await running_bot.consultations(user)
    assert result.buttons[0] == (KK.text("report.button"), f"report:{row.id}")

    fake_api.push_text(user, "/report")
    await fake_api.wait_for(lambda: len(photos(fake_api, user)) == 2)  # heatmap, then report
    report = photos(fake_api, user)[-1]
    assert report.text == KK.text("report.caption")
    names = running_bot.application.bot_data.runtime.screening.metadata.class_names
    lines = KK.report([row], made_at=utc_now(), type_names=names)
    texts = [line.text for line in lines]
    assert KK.text("risk.high") in texts
    assert KK.text("disclaimer") in texts
    assert KK.text("report.check_named", date=KK.date(row.created_at), label="сол иық") in texts
    assert report.photo == render_png(lines)  # the image is exactly these lines, drawn
    with Image.open(io.BytesIO(report.photo)) as image:
        assert image.format == "PNG" and image.width == 1080 and image.height > 800


async def test_the_button_under_a_result_sends_that_result_and_only_its_owner_can(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int, carcinoma: bytes
) -> None:
    user = new_user_id
    await running_bot.agree(user)
    send_photo(fake_api, user, carcinoma)
    result = await last_text(fake_api, user, 1)
    [row] = await running_bot.consultations(user)
    intruder = user + 1_000_000
    await running_bot.agree(intruder)
    forged = SentMessage("sendMessage", intruder, result.text, None, 1, result.reply_markup)
    answered = len(fake_api.answered_callbacks)
    fake_api.push_callback(intruder, forged, f"report:{row.id}")
    # A press is answered once its report, if any, has been sent.
    await fake_api.wait_for(lambda: len(fake_api.answered_callbacks) > answered)
    assert photos(fake_api, intruder) == []  # someone else's result: nothing sent

    fake_api.push_callback(user, result, f"report:{row.id}")
    await fake_api.wait_for(lambda: len(photos(fake_api, user)) == 2)
    en = for_language("en")
    names = running_bot.application.bot_data.runtime.screening.metadata.class_names
    expected = render_png(en.report([row], made_at=utc_now(), type_names=names))
    assert photos(fake_api, user)[-1].photo == expected


async def test_health_workers_get_one_report_per_patient(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int, carcinoma: bytes
) -> None:
    worker = new_user_id
    await running_bot.agree(worker, worker=True)
    fake_api.push_text(worker, "/report")
    usage = await last_text(fake_api, worker, 1)
    assert usage.text == for_language("en").text("report.usage_worker")
    send_photo(fake_api, worker, carcinoma, caption="#P7 back")
    send_photo(fake_api, worker, carcinoma, caption="#P8 back")
    await last_text(fake_api, worker, 3)
    fake_api.push_text(worker, "/report p7")
    await fake_api.wait_for(lambda: len(photos(fake_api, worker)) == 3)
    rows = [row for row in await running_bot.consultations(worker) if row.patient_code == "P7"]
    en = for_language("en")
    names = running_bot.application.bot_data.runtime.screening.metadata.class_names
    lines = en.report(rows, made_at=utc_now(), type_names=names, patient_code="P7")
    assert "Patient P7" in [line.text for line in lines]
    assert photos(fake_api, worker)[-1].photo == render_png(lines)


async def test_report_without_results_says_so(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    fake_api.push_text(user_id, "/report")
    reply = await last_text(fake_api, user_id, 1)
    assert reply.text == for_language("en").text("report.none")
    assert latest_per_spot([]) == []
