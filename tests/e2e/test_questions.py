"""The optional questions about a spot: asked once per spot with buttons and a Skip,
stored with the consultation, shown in /report and /export, deleted by /forget; a
"changed" or "bled" answer adds its warning to the advice."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from bot.db.models import utc_now
from bot.doctor_report import render_png
from bot.replies import for_language
from tests.e2e.chat import last_text, press, send_photo
from tests.e2e.conftest import ADMIN_ID, RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAD_DIR = Path(__file__).resolve().parents[1] / "data" / "pad"
EN = for_language("en")


@pytest.fixture
def naevus() -> bytes:
    return (PAD_DIR / "PAT_1364_1246_447.jpg").read_bytes()


async def test_questions_are_stored_shown_exported_and_forgotten(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, naevus: bytes
) -> None:
    send_photo(fake_api, user_id, naevus, caption="back")
    result = await last_text(fake_api, user_id, 1)
    [row] = await running_bot.consultations(user_id)
    start = (EN.text("questions.button"), f"qa:{row.id}:start:go")
    assert result.buttons == [(EN.text("report.button"), f"report:{row.id}"), start]

    site = await press(fake_api, user_id, result, start[1])
    assert site.text == EN.text("questions.site")
    assert (EN.text("questions.skip"), f"qa:{row.id}:site:skip") in site.buttons
    age = await press(fake_api, user_id, site, f"qa:{row.id}:site:arm")
    assert age.text == EN.text("questions.age")
    signs = await press(fake_api, user_id, age, f"qa:{row.id}:age:skip")
    assert signs.text == EN.text("questions.signs")
    ticked = await press(fake_api, user_id, signs, f"qa:{row.id}:sign:changed")
    assert ("✓ " + EN.text("questions.sign.changed"), f"qa:{row.id}:sign:changed") in (
        ticked.buttons
    )
    ticked = await press(fake_api, user_id, ticked, f"qa:{row.id}:sign:bled")
    done = await press(fake_api, user_id, ticked, f"qa:{row.id}:signs:done")
    # The matching warnings, whatever the result was.
    assert done.text == "\n\n".join(
        [
            EN.text("questions.thanks"),
            EN.text("advice.note.sign_changed"),
            EN.text("advice.note.sign_bled"),
        ]
    )
    [row] = await running_bot.consultations(user_id)
    assert row.answers == {"site": "arm", "age": None, "signs": ["changed", "bled"], "done": True}

    # In the report for the doctor.
    fake_api.push_text(user_id, "/report")
    await fake_api.wait_for(
        lambda: len([m for m in fake_api.replies_to(user_id) if m.method == "sendPhoto"]) == 2
    )
    report = [m for m in fake_api.replies_to(user_id) if m.method == "sendPhoto"][-1]
    names = running_bot.application.bot_data.runtime.screening.metadata.class_names
    lines = EN.report([row], made_at=utc_now(), type_names=names)
    texts = [line.text for line in lines]
    assert "Where: Arm" in texts and "Noticed: It has changed, It has bled" in texts
    assert EN.text("advice.note.sign_bled") in texts
    assert report.photo == render_png(lines)

    # Once per spot: the next photo of "back" does not ask again.
    send_photo(fake_api, user_id, naevus, caption="back")
    second = await last_text(fake_api, user_id, 3)
    assert second.buttons == [(EN.text("report.button"), f"report:{row.id + 1}")]

    # In the admin's export, as codes.
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/export 1")
    await fake_api.wait_for(
        lambda: any(m.method == "sendDocument" for m in fake_api.replies_to(ADMIN_ID)[before:])
    )
    document = [m for m in fake_api.replies_to(ADMIN_ID) if m.method == "sendDocument"][-1]
    rows = list(csv.DictReader(io.StringIO((document.document or b"").decode("utf-8-sig"))))
    mine = [r for r in rows if r["id"] == str(row.id)]
    assert mine[0]["answers"] == "site=arm;signs=changed+bled"

    # /forget deletes the consultations, answers included.
    fake_api.push_text(user_id, "/forget")
    confirm = await last_text(fake_api, user_id, 4)
    await press(fake_api, user_id, confirm, "forget:yes")
    assert await running_bot.consultations(user_id) == []


async def test_someone_else_cannot_answer_for_a_spot(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, naevus: bytes
) -> None:
    send_photo(fake_api, user_id, naevus)
    result = await last_text(fake_api, user_id, 1)
    [row] = await running_bot.consultations(user_id)
    site = await press(fake_api, user_id, result, f"qa:{row.id}:start:go")
    intruder = user_id + 1_000_000
    await running_bot.agree(intruder)
    for message, data in ((site, f"qa:{row.id}:site:arm"), (result, f"qa:{row.id}:start:go")):
        forged = type(message)(**{**message.__dict__, "chat_id": intruder})
        answered = len(fake_api.answered_callbacks)
        fake_api.push_callback(intruder, forged, data)
        # A press is answered once its answer is stored.
        await fake_api.wait_for(lambda n=answered: len(fake_api.answered_callbacks) > n)
    [row] = await running_bot.consultations(user_id)
    assert row.answers is None
    assert fake_api.replies_to(intruder) == []
