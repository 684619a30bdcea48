"""Admin commands (ids in ADMIN_IDS): /stats, /export, /setreferral, /grantworker, /revokeworker.

Anyone else sending them gets a polite refusal and nothing else.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta

from telegram import Message, Update
from telegram.ext import CommandHandler, filters

from bot import metrics, profile
from bot.config import Settings
from bot.context import BotContext
from bot.db.models import utc_now
from bot.db.repository import (
    ConsultationRepository,
    ReferralRepository,
    StatsRepository,
    UserRepository,
)
from bot.handlers.common import Handler, person, reply_long
from bot.i18n import LANGUAGE_NAMES, LANGUAGES
from bot.replies import Replies
from bot.reports import ADMIN_COLUMNS, consultations_csv, stats_chart, stats_chart_png

ADMIN_COMMANDS = ("stats", "export", "setreferral", "grantworker", "revokeworker")
DEFAULT_DAYS = 30
MAX_DAYS = 3650
# Shown under every high-risk result: long enough for several clinics with addresses and
# hours, short enough that the result, the advice and the contacts fit one message.
REFERRAL_MAX_CHARS = 1000
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
_DAYS = re.compile(r"[0-9]{1,4}")
_USER_ID = re.compile(r"[0-9]{1,15}")


async def _days_request(update: Update, context: BotContext) -> tuple[Message, Replies, int] | None:
    """The message, the sender's replies and the [days] argument; usage help if it is bad."""
    message = update.message
    if message is None:
        return None
    replies = (await person(update, context)).replies
    days = _days(context.args)
    if days is None:
        await message.reply_text(replies.text("admin.usage"))
        return None
    return message, replies, days


async def on_stats(update: Update, context: BotContext) -> None:
    """Reply with the summary for the last N days, then the chart."""
    request = await _days_request(update, context)
    if request is None:
        return
    message, replies, days = request
    now = utc_now()
    async with context.bot_data.runtime.sessions() as session:
        summary = await StatsRepository(session).summary(now, days)
    # Refused unscreened, so never stored: this process's own count, for the same days.
    first_day = summary.outcomes_per_day[0][0]
    busy = {key: n for key, n in metrics.not_admitted_by_day().items() if key[0] >= first_day}
    busy_reasons: Counter[str] = Counter()
    for (_, reason), count in busy.items():
        busy_reasons[reason] += count
    await reply_long(message, replies.stats(summary, dict(busy_reasons.most_common())))
    chart = await asyncio.to_thread(stats_chart_png, stats_chart(summary, replies, busy))
    await message.reply_photo(chart, caption=replies.text("stats.chart_caption", days=days))


async def on_export(update: Update, context: BotContext) -> None:
    """Send the last N days of consultations as CSV, pseudonymous keys only."""
    request = await _days_request(update, context)
    if request is None:
        return
    message, replies, days = request
    async with context.bot_data.runtime.sessions() as session:
        rows = await ConsultationRepository(session).since(utc_now() - timedelta(days=days))
    data = await asyncio.to_thread(consultations_csv, rows, ADMIN_COLUMNS)
    await message.reply_document(
        data,
        filename=f"consultations-{days}d.csv",
        caption=replies.text("export.caption", days=days),
    )


async def on_set_referral(update: Update, context: BotContext) -> None:
    """Store the referral contacts shown on high-risk results in one language."""
    message = update.message
    if message is None or message.text is None:
        return
    replies = (await person(update, context)).replies
    parts = message.text.split(maxsplit=2)
    if len(parts) < 3 or parts[1].lower() not in LANGUAGES:
        await message.reply_text(replies.text("referral.usage"))
        return
    language, contacts = parts[1].lower(), parts[2].strip()
    if len(contacts) > REFERRAL_MAX_CHARS:
        await message.reply_text(replies.text("referral.too_long", limit=REFERRAL_MAX_CHARS))
        return
    async with context.bot_data.runtime.sessions.begin() as session:
        referrals = ReferralRepository(session)
        await referrals.set(language, contacts)
        missing = [code for code in LANGUAGES if code not in await referrals.languages()]
    reply = replies.text("referral.set", language=language)
    if missing:
        # Readers of these languages get another language's contacts (REFERRAL_FALLBACK).
        names = ", ".join(LANGUAGE_NAMES[code] for code in missing)
        reply = f"{reply}\n{replies.text('referral.missing', languages=names)}"
    await message.reply_text(reply)


async def on_worker_role(update: Update, context: BotContext) -> None:
    """Grant or revoke the health-worker role; only the pseudonymous key is stored."""
    message = update.message
    if message is None or message.text is None:
        return
    replies = (await person(update, context)).replies
    args = context.args or []
    if len(args) != 1 or not _USER_ID.fullmatch(args[0]):
        await message.reply_text(replies.text("worker.usage_grant"))
        return
    runtime = context.bot_data.runtime
    key = runtime.user_key(int(args[0]))
    grant = message.text.lstrip("/").lower().startswith("grantworker")
    async with runtime.sessions.begin() as session:
        users = UserRepository(session)
        if grant:
            (await users.get_or_add(key)).is_worker = True
            reply = "worker.granted"
        else:
            user = await users.get(key)
            reply = "worker.revoked" if user is not None and user.is_worker else "worker.not_worker"
            if user is not None:
                user.is_worker = False
    # The worker's commands in their chat's menu (or taken out of it), before saying done.
    user_id = int(args[0])
    admin = user_id in runtime.settings.admin_ids
    await profile.set_chat_menu(context.bot, user_id, worker=grant, admin=admin)
    await message.reply_text(replies.text(reply))


async def on_refused(update: Update, context: BotContext) -> None:
    """Refuse a staff-only command without saying anything about the data behind it."""
    if update.message is not None:
        await update.message.reply_text((await person(update, context)).replies.text("refused"))


def handlers(settings: Settings) -> list[Handler]:
    """Return this flow's handlers: admins first, then the refusal for everyone else."""
    only_messages = filters.UpdateType.MESSAGE
    admins = only_messages & filters.User(user_id=settings.admin_ids)
    return [
        CommandHandler("stats", on_stats, filters=admins),
        CommandHandler("export", on_export, filters=admins),
        CommandHandler("setreferral", on_set_referral, filters=admins),
        CommandHandler(["grantworker", "revokeworker"], on_worker_role, filters=admins),
        CommandHandler(list(ADMIN_COMMANDS), on_refused, filters=only_messages),
    ]


def _days(args: list[str] | None) -> int | None:
    """Parse the optional [days] argument; None if it is not a number in range."""
    if not args:
        return DEFAULT_DAYS
    if len(args) == 1 and _DAYS.fullmatch(args[0]) and 1 <= int(args[0]) <= MAX_DAYS:
        return int(args[0])
    return None
