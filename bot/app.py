"""Wiring: the Application, its handlers, and the resources opened and closed around it."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, ApplicationBuilder, ContextTypes

from bot import metrics, profile, scheduler
from bot.admission import Admission
from bot.config import Settings
from bot.context import BotApplication, BotData, Runtime
from bot.db.migrate import upgrade_to_head
from bot.db.repository import UserRepository
from bot.db.session import create_engine, create_session_factory
from bot.handlers import (
    admin,
    consent,
    fallback,
    flood,
    history,
    lesion,
    private,
    questions,
    reminders,
    report,
    start,
    thumbnails,
    unsupported,
    worker,
)
from bot.handlers.errors import on_error
from bot.health import HealthServer
from bot.inbox import Inbox, InboxProcessor, InboxQueue, tend
from bot.keys import load_keys, reseal_chat_refs
from bot.replies import for_language
from bot.screening import ScreeningService
from bot.updates import SafeUpdatesRequest
from inference.pipeline import Screener

logger = logging.getLogger(__name__)

# What the bot asks Telegram for: messages and button presses (edits of old photos are not
# re-screened), and its own membership, so it leaves a group as soon as it is added.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]
# /readyz answers within this, even when the database does not.
READY_TIMEOUT_S = 3.0
# Not ready when polling has not got an answer from Telegram for this long (a long poll
# returns at least every 10 s) ...
POLL_STALE_S = 60.0
# ... or when updates wait and none has finished for this long (twice the time after
# which a photo stuck in a worker is failed: the workers are stuck, not just busy).
STUCK_AFTER_BUDGETS = 4
INBOX_JOB_NAME = "inbox"
# Old handled updates are purged from the inbox at most this often.
INBOX_PURGE_INTERVAL_S = 3600.0


class CountingRateLimiter(AIORateLimiter):
    """Telegram's flood control for messages, and every failed Bot API call counted by kind.

    Chat actions ("typing...") are not messages and pass outside the bot-wide limit of
    30 a second: counted in it they were half of every photo's calls, and capped the bot
    at 7.5 answers a second (measured: 7.7-8.1 photos/s at 100 and 200 users at once,
    with the CPUs mostly idle).
    """

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        async def counted(*call_args: Any, **call_kwargs: Any) -> Any:
            try:
                return await callback(*call_args, **call_kwargs)
            except TelegramError as error:
                # Inside the retry loop, so each 429 that is waited out counts too.
                metrics.telegram_error(error)
                raise

        if endpoint == "sendChatAction":
            return await counted(*args, **kwargs)
        return await super().process_request(counted, args, kwargs, endpoint, data, rate_limit_args)


class PollingRequest(SafeUpdatesRequest):
    """The connection getUpdates uses, noting when Telegram last answered it (for /readyz:
    a polling loop that has stopped, or cannot reach Telegram, is not ready)."""

    def __init__(self) -> None:
        super().__init__(connection_pool_size=1)
        self.last_answer = time.monotonic()

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        answer = await super().do_request(*args, **kwargs)
        self.last_answer = time.monotonic()
        return answer


def build_application(settings: Settings, *, handle_signals: bool = False) -> BotApplication:
    """Build the bot: Telegram client, handlers, and start-up/shutdown hooks.

    With ``handle_signals`` (the real process), SIGTERM and SIGINT begin a graceful stop
    (:func:`_begin_stop`); run it with ``stop_signals=None`` then.
    """
    token = settings.telegram_bot_token.get_secret_value()
    # Every update is kept before Telegram is told it arrived, and settled once handled.
    queue = InboxQueue()
    # A webhook request whose update cannot be kept is answered 503: Telegram sends it again.
    queue.webhook = settings.webhook_url is not None
    processor = InboxProcessor(settings.concurrent_updates)
    polling = PollingRequest()

    async def ready() -> str | None:
        return await _readiness(application, queue, processor, polling)

    async def post_init(application: BotApplication) -> None:
        resources = AsyncExitStack()
        try:
            # First, so the orchestrator sees a live process while the model loads.
            health = HealthServer(settings.health_listen, settings.health_port, ready)
            await health.start()
            resources.push_async_callback(health.stop)
            application.bot_data.health_port = health.port
            runtime = await _open_runtime(settings, resources)
            # Descriptions and command menus, in each user's Telegram language.
            await profile.publish(application.bot, await _admins(settings, runtime))
        except BaseException:
            await resources.aclose()
            raise
        application.bot_data.attach(runtime, resources)
        queue.inbox = processor.inbox = runtime.inbox
        queue.turns, queue.max_backlog = processor.turns, settings.max_waiting_updates
        processor.queue = queue
        runtime.inbox.on_given_up = _tell_given_up
        # Last in, first out: updates not handled are given back before the database closes.
        resources.push_async_callback(_give_back, runtime.inbox, queue, processor)
        if application.job_queue is not None:
            scheduler.schedule(application.job_queue, settings)
            _schedule_inbox(application, queue, processor)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for stop_signal in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(stop_signal, _begin_stop, application, processor)
        logger.info("Bot started (model %s)", runtime.screening.metadata.version)

    async def post_shutdown(application: BotApplication) -> None:
        await application.bot_data.close()
        logger.info("Bot stopped")

    application: BotApplication = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{settings.telegram_api_url}/bot{{token}}")
        .base_file_url(f"{settings.telegram_api_url}/file/bot{{token}}")
        .context_types(ContextTypes(bot_data=BotData))
        # Retry after Telegram's flood control rather than lose a reply.
        .rate_limiter(CountingRateLimiter(max_retries=3))
        # Each update of a getUpdates batch checked on its own: one that PTB cannot parse
        # is skipped once, not logged and retried for ever (bot.updates).
        .get_updates_request(polling)
        .update_queue(queue)
        .concurrent_updates(processor)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    # Before everything else: private chats only, then no more pictures than a user's rate
    # (before any database work), then no picture is looked at or logged without consent.
    application.add_handlers(private.gate_handlers(), group=-3)
    application.add_handlers(flood.gate_handlers(), group=-2)
    application.add_handlers(consent.gate_handlers(), group=-1)
    # Order matters: the first matching handler wins, and an animation also has a document.
    modules = (
        start,
        consent,
        history,
        reminders,
        thumbnails,
        report,
        questions,
        admin,
        worker,
        unsupported,
        lesion,
        fallback,
    )
    for module in modules:
        application.add_handlers(module.handlers(settings))
    application.add_error_handler(on_error)
    return application


def _begin_stop(application: BotApplication, processor: InboxProcessor) -> None:
    """SIGTERM/SIGINT: photos being screened finish and are answered; updates not started
    yet are given back to the inbox for the next process (or another replica), so the stop
    takes about as long as one photo, not the whole queue."""
    logger.info("Stopping: finishing the photos being screened, handing the rest over")
    processor.drain()
    if application.bot_data.attached:
        application.bot_data.runtime.screening.drain()
    application.stop_running()


def _schedule_inbox(
    application: BotApplication, queue: InboxQueue, processor: InboxProcessor
) -> None:
    """Renew this process's leases and take over free updates, every third of a lease."""
    last_purge = [float("-inf")]

    async def run(context: Any) -> None:
        del context
        if not application.bot_data.attached:
            return
        now = time.monotonic()
        purge = now - last_purge[0] >= INBOX_PURGE_INTERVAL_S
        if purge:
            last_purge[0] = now
        try:
            # While draining the leases are still renewed (the last photos may take longer
            # than a lease), but nothing new is claimed: it is left for the next process.
            await tend(
                application.bot_data.runtime.inbox,
                queue,
                application.bot,
                purge=purge and not processor.draining,
                claim=not processor.draining,
            )
        except Exception as error:  # the next run tries again; the leases allow for it
            logger.warning("Inbox upkeep failed (%s)", type(error).__name__)

    assert application.job_queue is not None
    interval = application.bot_data.runtime.settings.inbox_lease_s / 3
    application.job_queue.run_repeating(run, interval=interval, first=0.1, name=INBOX_JOB_NAME)


async def _tell_given_up(update: Update) -> None:
    """Tell the sender of a picture given up on (it kept failing) to send it again: every
    photo gets an answer, this one too."""
    message = update.message
    if message is None or not (message.photo or message.document):
        return
    user = update.effective_user
    replies = for_language(user.language_code if user else None)
    await message.reply_text(replies.text("inbox.gave_up"))


async def _give_back(inbox: Inbox, queue: InboxQueue, processor: InboxProcessor) -> None:
    queue.inbox = processor.inbox = None
    if count := await inbox.release():
        logger.info("%d updates given back for the next process", count)


async def _open_runtime(settings: Settings, resources: AsyncExitStack) -> Runtime:
    engine = create_engine(settings.database_url)
    resources.push_async_callback(engine.dispose)
    if settings.migrate_on_start:
        await upgrade_to_head(engine)
        logger.info("Database schema is up to date")
    sessions = create_session_factory(engine)
    keys = await load_keys(settings, sessions)
    await reseal_chat_refs(sessions, keys)

    screener = await asyncio.to_thread(
        functools.partial(
            Screener,
            settings.model_path,
            settings.inference_threads,
            max_decode_bytes=settings.max_decode_mb * 2**20,
            time_budget_s=settings.screening_time_budget_s,
            on_stage=metrics.observe_stage,
        )
    )
    executor = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="screening")
    resources.push_async_callback(
        asyncio.to_thread, executor.shutdown, wait=True, cancel_futures=True
    )
    admission = Admission(burst=settings.user_photo_burst, per_hour=settings.user_photos_per_hour)
    screening = ScreeningService(
        screener,
        executor,
        sessions,
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_pending=settings.max_pending_screenings,
        follow_up_after=timedelta(days=settings.follow_up_after_days),
        # Past its budget the pipeline refuses a photo itself, between stages; a photo
        # that has not come back by twice the budget is stuck inside one.
        hung_after_s=2 * settings.screening_time_budget_s,
        thumbnails=keys.thumbnail_sealer,
    )
    inbox = Inbox(sessions, keys.update_sealer, lease=timedelta(seconds=settings.inbox_lease_s))
    return Runtime(
        settings=settings,
        screening=screening,
        sessions=sessions,
        keys=keys,
        admission=admission,
        inbox=inbox,
    )


async def _admins(settings: Settings, runtime: Runtime) -> dict[int, bool]:
    """Each administrator's id, and whether they hold the health-worker role too."""
    async with runtime.sessions() as session:
        users = UserRepository(session)
        return {
            admin_id: bool((user := await users.get(runtime.user_key(admin_id))) and user.is_worker)
            for admin_id in sorted(settings.admin_ids)
        }


async def _readiness(
    application: BotApplication,
    queue: InboxQueue,
    processor: InboxProcessor,
    polling: PollingRequest,
) -> str | None:
    """Return None when the bot can serve, else why not: starting (model not loaded yet),
    database unreachable, updates that cannot be kept, polling that gets no answer, or
    updates waiting while none has finished for a long time (stuck workers)."""
    if not application.bot_data.attached:
        return "starting"  # the runtime is attached only once the model has loaded
    runtime = application.bot_data.runtime
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), runtime.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the kind is enough to say
        logger.warning("Readiness: database unreachable (%s)", type(error).__name__)
        return "database unreachable"
    now = time.monotonic()
    if queue.failing_since is not None:
        return f"updates cannot be kept (for {now - queue.failing_since:.0f} s)"
    if not queue.webhook and now - polling.last_answer > POLL_STALE_S:
        return f"no answer to polling for {now - polling.last_answer:.0f} s"
    stuck_after = STUCK_AFTER_BUDGETS * runtime.settings.screening_time_budget_s
    turns = processor.turns
    if turns.waiting + turns.running > 0 and now - processor.last_finished > stuck_after:
        return (
            f"{turns.waiting + turns.running} updates wait, none finished for {stuck_after:.0f} s"
        )
    return None
