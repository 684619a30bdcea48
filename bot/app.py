"""Wiring: the Application, its handlers, and the resources opened and closed around it."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta

from telegram.ext import AIORateLimiter, ApplicationBuilder, ContextTypes

from bot.admission import Admission
from bot.config import Settings
from bot.context import BotApplication, BotData, Runtime
from bot.db.migrate import upgrade_to_head
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
from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES
from bot.keys import load_keys, reseal_chat_refs
from bot.replies import for_language
from bot.screening import ScreeningService
from inference.pipeline import Screener

logger = logging.getLogger(__name__)


def build_application(settings: Settings) -> BotApplication:
    """Build the bot: Telegram client, handlers, and start-up/shutdown hooks."""
    token = settings.telegram_bot_token.get_secret_value()

    async def post_init(application: BotApplication) -> None:
        resources = AsyncExitStack()
        try:
            runtime = await _open_runtime(settings, resources)
            # The menu in each user's Telegram language; English for all others.
            for language in LANGUAGES:
                await application.bot.set_my_commands(
                    for_language(language).commands(),
                    language_code=None if language == DEFAULT_LANGUAGE else language,
                )
        except BaseException:
            await resources.aclose()
            raise
        application.bot_data.attach(runtime, resources)
        if application.job_queue is not None:
            reminders.schedule(application.job_queue, settings)
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
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(settings.concurrent_updates)
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


async def _open_runtime(settings: Settings, resources: AsyncExitStack) -> Runtime:
    engine = create_engine(settings.database_url)
    resources.push_async_callback(engine.dispose)
    await upgrade_to_head(engine)
    logger.info("Database schema is up to date")
    sessions = create_session_factory(engine)
    keys = await load_keys(settings, sessions)
    await reseal_chat_refs(sessions, keys)

    screener = await asyncio.to_thread(Screener, settings.model_path, settings.inference_threads)
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
    return Runtime(
        settings=settings, screening=screening, sessions=sessions, keys=keys, admission=admission
    )
