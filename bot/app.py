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
    reminders,
    start,
    unsupported,
    worker,
)
from bot.handlers.errors import on_error
from bot.health import HealthServer
from bot.inbox import Inbox, InboxProcessor, InboxQueue, tend
from bot.keys import load_keys, reseal_chat_refs
from bot.screening import ScreeningService
from inference.pipeline import Screener

logger = logging.getLogger(__name__)

# /readyz answers within this, even when the database does not.
READY_TIMEOUT_S = 3.0
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


def build_application(settings: Settings, *, handle_signals: bool = False) -> BotApplication:
    """Build the bot: Telegram client, handlers, and start-up/shutdown hooks.

    With ``handle_signals`` (the real process), SIGTERM and SIGINT begin a graceful stop
    (:func:`_begin_stop`); run it with ``stop_signals=None`` then.
    """
    token = settings.telegram_bot_token.get_secret_value()
    # Every update is kept before Telegram is told it arrived, and settled once handled.
    queue = InboxQueue()
    processor = InboxProcessor(settings.concurrent_updates)

    async def ready() -> str | None:
        return await _readiness(application)

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
    modules = (start, consent, history, reminders, admin, worker, unsupported, lesion, fallback)
    for module in modules:
        application.add_handlers(module.handlers(settings))
    application.add_error_handler(on_error)
    return application


def _begin_stop(application: BotApplication, processor: InboxProcessor) -> None:
    """SIGTERM/SIGINT: photos being screened finish and are answered; updates not started
    yet are given back to the inbox for the next process (or another replica), so the stop
    takes about as long as one photo, not the whole queue."""
    logger.info("Stopping: finishing the photos being screened, handing the rest over")
    processor.draining = True
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
        if processor.draining or not application.bot_data.attached:
            return
        now = time.monotonic()
        purge = now - last_purge[0] >= INBOX_PURGE_INTERVAL_S
        if purge:
            last_purge[0] = now
        try:
            await tend(application.bot_data.runtime.inbox, queue, application.bot, purge=purge)
        except Exception as error:  # the next run tries again; the leases allow for it
            logger.warning("Inbox upkeep failed (%s)", type(error).__name__)

    assert application.job_queue is not None
    interval = application.bot_data.runtime.settings.inbox_lease_s / 3
    application.job_queue.run_repeating(run, interval=interval, first=0.1, name=INBOX_JOB_NAME)


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
    admission = Admission(
        queue_limit=settings.max_queued_photos,
        burst=settings.user_photo_burst,
        per_minute=settings.user_photos_per_minute,
    )
    screening = ScreeningService(
        screener,
        executor,
        sessions,
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_pending=settings.max_pending_screenings,
        follow_up_after=timedelta(days=settings.follow_up_after_days),
        admission=admission,
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


async def _readiness(application: BotApplication) -> str | None:
    """Return None when the bot can serve (model loaded, database answering), else why not."""
    if not application.bot_data.attached:
        return "starting"  # the runtime is attached only once the model has loaded
    runtime = application.bot_data.runtime
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), runtime.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the kind is enough to say
        logger.warning("Readiness: database unreachable (%s)", type(error).__name__)
        return "database unreachable"
    return None
