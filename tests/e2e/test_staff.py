"""Health workers (patient codes, compact replies, exports) and admins (stats, export,
referral contacts, roles); everyone else is refused politely and sees nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, text

from bot.db.models import FollowUp, User, utc_now
from bot.db.repository import ReferralRepository
from bot.replies import for_language
from bot.reports import ADMIN_COLUMNS, WORKER_COLUMNS
from bot.screening import Assessed, Consulted, Subject
from inference.types import Risk
from tests.e2e import images
from tests.e2e.chat import last_text, phone_photo, photo_known, send_photo
from tests.e2e.conftest import ADMIN_ID, RunningBot
from tests.fakes.telegram_api import FakeTelegramApi, SentMessage

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
PAD_DIR = Path(__file__).resolve().parents[1] / "data" / "pad"
REFUSED = "Sorry, this command is only for authorised staff."


def sent(api: FakeTelegramApi, chat_id: int, method: str) -> list[SentMessage]:
    return [m for m in api.replies_to(chat_id) if m.method == method]


def read_csv(document: SentMessage) -> list[dict[str, str]]:
    assert document.document is not None
    return list(csv.DictReader(io.StringIO(document.document.decode("utf-8-sig"))))


@pytest.mark.parametrize(
    "command",
    [
        "/stats",
        "/stats 7",
        "/export",
        "/setreferral en Call 103",
        "/grantworker 10001",
        "/revokeworker 10001",
        "/patients",
        "/patient P1",
        "/myexport",
    ],
)
async def test_staff_commands_are_refused_politely_to_everyone_else(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, command: str
) -> None:
    """A plain user gets one polite refusal: no counts, no chart, no file, no role change."""
    fake_api.push_text(user_id, command)
    reply = await last_text(fake_api, user_id, 1)
    assert reply.text == REFUSED
    assert [m.method for m in fake_api.replies_to(user_id)] == ["sendMessage"]
    user = await running_bot.user(user_id)
    assert user is not None and not user.is_worker


async def test_refusal_is_in_the_users_language(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """A Kazakh user is refused in Kazakh."""
    fake_api.push_text(new_user_id, "/export", language_code="kk")
    reply = await last_text(fake_api, new_user_id, 1)
    assert reply.text == for_language("kk").text("refused")


async def test_admin_stats_give_counts_and_a_chart(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """/stats 7: users, per day, risks, reasons in words, photos not admitted, languages,
    timings, model, follow-ups + PNG."""
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    await last_text(fake_api, user_id, 1)
    send_photo(fake_api, user_id, images.flat_photo())  # a wall: no skin spot in it
    await last_text(fake_api, user_id, 2)
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/stats 7")
    await fake_api.wait_for(
        lambda: any(m.method == "sendPhoto" for m in fake_api.replies_to(ADMIN_ID)[before:])
    )
    [summary, chart] = fake_api.replies_to(ADMIN_ID)[before:]
    text_ = summary.text or ""
    metadata = running_bot.application.bot_data.runtime.screening.metadata
    for expected in (
        "Last 7 days:",
        "Users: ",
        "Checks: ",
        f"Checks per day:\n  {EN.date(utc_now())}: ",
        "Risk levels:",
        "Refused or unassessable, by reason:",
        f"  {EN.reason('not_a_lesion')}: ",
        "Photos not admitted because the bot was busy",
        "Languages:\n",
        "  en: ",
        "Processing time: p50 ",
        f"Model versions:\n  {metadata.version}: ",
        "Follow-up answers:",
    ):
        assert expected in text_, expected
    assert str(user_id) not in text_
    assert "not_a_lesion" not in text_  # words, not internal codes
    assert chart.method == "sendPhoto"
    assert chart.text == EN.plural("stats.chart_caption", 7, days=7)
    assert chart.photo is not None
    with Image.open(io.BytesIO(chart.photo)) as picture:
        assert picture.format == "PNG"
        assert picture.width >= 600


async def test_admin_stats_refuse_a_bad_number_of_days(
    fake_api: FakeTelegramApi, running_bot: RunningBot
) -> None:
    """/stats soon: the usage, nothing else."""
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/stats soon")
    await fake_api.wait_for(lambda: len(fake_api.replies_to(ADMIN_ID)) > before)
    [reply] = fake_api.replies_to(ADMIN_ID)[before:]
    assert reply.text == EN.text("admin.usage")


async def test_admin_export_is_a_csv_with_pseudonymous_keys_only(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """/export 7: a CSV document; the user appears by key, never by id or by what they typed."""
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs), caption="secret name of my mole")
    await last_text(fake_api, user_id, 1)
    # Marked delivered once the reply is sent (bot.handlers.delivery).
    for _ in range(100):
        if (await running_bot.consultations(user_id))[0].delivered_at is not None:
            break
        await asyncio.sleep(0.05)
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/export 7")
    await fake_api.wait_for(
        lambda: any(m.method == "sendDocument" for m in fake_api.replies_to(ADMIN_ID)[before:])
    )
    [document] = sent(fake_api, ADMIN_ID, "sendDocument")[-1:]
    assert document.filename == "consultations-7d.csv"
    assert document.text == EN.plural("export.caption", 7, days=7)
    rows = read_csv(document)
    assert rows and tuple(rows[0]) == ADMIN_COLUMNS
    mine = [row for row in rows if row["user_key"] == running_bot.key(user_id)]
    assert len(mine) == 1 and mine[0]["status"] in ("assessed", "unassessable")
    # Both timestamps in the same ISO 8601 form, with their UTC offset.
    created = datetime.fromisoformat(mine[0]["created_at"])
    delivered = datetime.fromisoformat(mine[0]["delivered_at"])
    assert created.utcoffset() == delivered.utcoffset() == timedelta(0)
    assert created <= delivered
    assert mine[0]["delivered_at"][10] == mine[0]["created_at"][10] == "T"
    raw = (document.document or b"").decode("utf-8-sig")
    assert str(user_id) not in raw
    assert "secret name" not in raw


async def test_admin_sets_referral_contacts_shown_on_high_risk_results(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """/setreferral ru <text>: stored per language and added to a Russian high-risk result."""
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/setreferral ru Онкодиспансер: +7 727 000 00 00")
    await fake_api.wait_for(lambda: len(fake_api.replies_to(ADMIN_ID)) > before)
    confirmation = fake_api.replies_to(ADMIN_ID)[-1].text or ""
    assert confirmation.startswith(EN.text("referral.set", language="ru"))

    # The real model decides the risk of a real photo, so the rendering of a high result is
    # driven directly, with the contacts as the running bot stored them.
    async with running_bot.application.bot_data.runtime.sessions() as session:
        contacts = await ReferralRepository(session).get("ru")
    assert contacts == "Онкодиспансер: +7 727 000 00 00"
    ru = for_language("ru")
    high = Assessed(Risk.HIGH, "mel", "melanoma", None)
    reply = ru.consulted(Consulted("ru", high, Subject(lesion_label="spot"), False, None, contacts))
    assert reply.startswith(ru.outcome(high))
    assert "Где можно провериться:\nОнкодиспансер: +7 727 000 00 00" in reply
    assert "Где можно" not in ru.consulted(Consulted("ru", high, Subject(), False))


@pytest.mark.parametrize("risk", ["high", "low"])
async def test_worker_flow_with_patient_codes(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
    risk: str,
) -> None:
    """Granted by an admin; photos need #codes; short replies; /patients, /patient, /myexport.

    Run with a patient's photo known to come out high and with one known low: a high result
    would ask a user for a follow-up, a worker is never asked (about their patients)."""
    worker = user_id
    admin_before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, f"/grantworker {worker}")
    await fake_api.wait_for(lambda: len(fake_api.replies_to(ADMIN_ID)) > admin_before)
    assert fake_api.replies_to(ADMIN_ID)[-1].text == EN.text("worker.granted")
    stored = await running_bot.user(worker)
    assert stored is not None and stored.is_worker
    async with running_bot.application.bot_data.runtime.sessions() as session:
        keys = (await session.scalars(select(User.user_key))).all()
        dump = "\n".join(str(r) for r in (await session.execute(text("SELECT * FROM users"))))
    assert running_bot.key(worker) in keys
    assert str(worker) not in dump  # only the pseudonymous key

    # Without a code: a prompt, and the photo is neither fetched nor logged.
    file_id = send_photo(fake_api, worker, phone_photo(lesion_jpegs))
    prompt = await last_text(fake_api, worker, 1)
    assert prompt.text == EN.text("worker.need_code")
    assert file_id not in fake_api.downloads
    assert await running_bot.consultations(worker) == []

    send_photo(fake_api, worker, photo_known(risk), caption="#p123 left arm")
    result = await last_text(fake_api, worker, 2)
    [row] = await running_bot.consultations(worker)
    assert (row.patient_code, row.lesion_label) == ("P123", "left arm")
    assert (row.status, row.risk) == ("assessed", risk)
    reply = result.text or ""
    assert reply.startswith("Patient P123: ")
    assert len(reply) < 400  # short, for slow connections
    assert "Screening aid, not a diagnosis." in reply
    [heatmap] = sent(fake_api, worker, "sendPhoto")
    assert heatmap.text is None and heatmap.photo is not None
    with Image.open(io.BytesIO(heatmap.photo)) as picture:
        assert max(picture.size) <= 480
    # Workers are not asked for follow-ups about their patients (whatever the risk).
    async with running_bot.application.bot_data.runtime.sessions() as session:
        follow_ups = await session.scalars(
            select(FollowUp).where(FollowUp.user_key == running_bot.key(worker))
        )
        assert follow_ups.all() == []

    fake_api.push_text(worker, "/patients")
    patients = await last_text(fake_api, worker, 3)
    assert patients.text == "\n".join(
        [
            "Your patients:",
            f"P123: last check {EN.date(row.created_at)} (1 check in total)",
        ]
    )
    fake_api.push_text(worker, "/patient p123")
    history = await last_text(fake_api, worker, 4)
    assert history.text == "\n".join(["Patient P123, newest first:", EN.history_line(row)])
    # A worker's own /history is about themselves, not their patients.
    fake_api.push_text(worker, "/history")
    own = await last_text(fake_api, worker, 5)
    assert own.text == EN.text("history.empty")

    fake_api.push_text(worker, "/myexport")
    await fake_api.wait_for(lambda: bool(sent(fake_api, worker, "sendDocument")))
    [document] = sent(fake_api, worker, "sendDocument")
    rows = read_csv(document)
    assert tuple(rows[0]) == WORKER_COLUMNS
    assert [(r["user_key"], r["patient_code"]) for r in rows] == [(running_bot.key(worker), "P123")]
    assert str(worker) not in (document.document or b"").decode("utf-8-sig")

    admin_before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, f"/revokeworker {worker}")
    await fake_api.wait_for(lambda: len(fake_api.replies_to(ADMIN_ID)) > admin_before)
    assert fake_api.replies_to(ADMIN_ID)[-1].text == EN.text("worker.revoked")
    fake_api.push_text(worker, "/patients")
    refused = await last_text(fake_api, worker, 6)
    assert refused.text == REFUSED


async def test_referral_contacts_fall_back_to_another_language_the_admin_set(
    fake_api: FakeTelegramApi, running_bot: RunningBot, new_user_id: int
) -> None:
    """Contacts set in Russian only: /setreferral says which languages have none, and a
    Kazakh high-risk result still says where to get checked, with the Russian contacts."""
    async with running_bot.application.bot_data.runtime.sessions.begin() as session:
        await session.execute(text("DELETE FROM referral_contacts"))
    before = len(fake_api.replies_to(ADMIN_ID))
    fake_api.push_text(ADMIN_ID, "/setreferral ru Онкодиспансер: +7 727 000 00 00")
    await fake_api.wait_for(lambda: len(fake_api.replies_to(ADMIN_ID)) > before)
    warning = EN.text("referral.missing", languages="English, Қазақша")
    assert fake_api.replies_to(ADMIN_ID)[-1].text == "\n".join(
        [EN.text("referral.set", language="ru"), warning]
    )

    await running_bot.agree(new_user_id, language="kk")
    send_photo(fake_api, new_user_id, (PAD_DIR / "PAT_145_216_110.jpg").read_bytes())
    reply = (await last_text(fake_api, new_user_id, 1)).text or ""
    kk = for_language("kk")
    assert kk.text("risk.high") in reply, "this basal cell carcinoma is no longer high risk"
    assert f"{kk.text('referral.header')}\nОнкодиспансер: +7 727 000 00 00" in reply
