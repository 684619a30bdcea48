"""Settings for the bot, read once from the environment and ``.env`` (see ``.env.example``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

# Secrets must hold at least this many bytes of randomness (USER_KEY_SECRET,
# CHAT_SEAL_KEYS, a kept key file): 64 hex digits, 43 base64 characters, 40 of any kind.
MIN_SECRET_BYTES = 32
# Telegram's webhook secret_token has 6 bits a character (A-Z, a-z, 0-9, _, -): 32 give
# 192 bits, far beyond guessing over HTTP.
MIN_WEBHOOK_SECRET_LENGTH = 32
_HEX = frozenset("0123456789abcdefABCDEF")
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
# Fewer distinct characters than this is a pattern ("aaaa...", "abab..."), not randomness;
# 64 random hex digits have 15-16, 43 random base64 characters about 31.
_MIN_DISTINCT = 10


def weak_secret(value: str) -> str | None:
    """Why ``value`` cannot be a secret of MIN_SECRET_BYTES random bytes (None if it can).

    The randomness is estimated from the characters used: 4 bits each for hex digits, 6 for
    base64, 6.5 for anything else; a value of few distinct characters is refused outright.
    """
    if not value.strip():
        return "is empty"
    chars = set(value)
    bits = 4.0 if chars <= _HEX else 6.0 if chars <= _BASE64 else 6.5
    if len(chars) < _MIN_DISTINCT or len(value) * bits < MIN_SECRET_BYTES * 8:
        return (
            f"is too short or too regular: it needs {MIN_SECRET_BYTES} random bytes, such as "
            f'64 hex digits (python -c "import secrets; print(secrets.token_hex(32))")'
        )
    return None


# Empty values (as in a copied .env.example) count as unset, so defaults apply.
_ENV = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
)


class DatabaseSettings(BaseSettings):
    """The part of the settings that Alembic's command line needs (no token required)."""

    model_config = _ENV

    # SQLite needs no server, so a fresh machine just works; point it at
    # postgresql+asyncpg://... for production.
    database_url: str = "sqlite+aiosqlite:///./data/bot.db"


class Settings(DatabaseSettings):
    """Everything the bot needs to run."""

    model_config = _ENV

    telegram_bot_token: SecretStr
    # A local Bot API server or the test fake can stand in for Telegram.
    telegram_api_url: str = "https://api.telegram.org"
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    # Telegram lets bots download at most 20 MB, so a larger limit would never be reached.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Header check before anything is decoded; keep it under Pillow's own limit (~89 MP).
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    # The memory budget of one photo's decoding (MB): the image Pillow holds (4 bytes a
    # pixel, 2 for 16-bit grey; JPEGs decoded already reduced) plus the decoder's own
    # buffers (a progressive JPEG's coefficients, libwebp's canvases: inference.decode).
    # Everything after decoding works on at most 2560 px a side. 200 MiB admits a 50 MP
    # PNG and a 12 MP WebP; larger ones are refused from their headers ("too complex").
    # Each worker thread holds one photo, so memory for photos is at most
    # WORKER_THREADS x (MAX_DECODE_MB + 64 MiB of working arrays, inference.pipeline).
    max_decode_mb: int = Field(default=200, gt=0)
    # A photo still being decoded or screened after this long is refused ("send a smaller
    # picture") rather than answered late; a typical photo takes well under a second.
    screening_time_budget_s: float = Field(default=30, gt=0)
    # Threads running decode + checks + inference; each holds one decoded photo in memory.
    worker_threads: int = Field(default=2, ge=1)
    # Photos downloaded and waiting for a worker; each holds at most max_image_bytes.
    max_pending_screenings: int = Field(default=8, ge=1)
    # Updates handled at once, at most one photo per user (bot.turns: each user's photos wait
    # in their own queue, users are served in turn), so one slow photo or one user's 60
    # never blocks other users' replies. With SQLite, more at once mostly wait on its one writer.
    concurrent_updates: int = Field(default=64, ge=1)
    # Backpressure: updates waiting or running in this process, all users together. At this
    # many no more are taken from Telegram (polling asks for no more; a webhook request
    # waits) until some are answered; Telegram keeps the rest meanwhile. Each waiting
    # update is a few KB of memory (no photo is downloaded before its turn).
    max_waiting_updates: int = Field(default=2000, ge=1)
    # Every update is kept in the database until handled (bot.inbox), held by its process
    # under a lease renewed every third of this. After a kill -9 the updates it held are
    # handled by the next process (or another replica) once their lease runs out; a clean
    # stop gives them back at once. Shorter: sooner after a crash, more database writes.
    inbox_lease_s: float = Field(default=30, ge=3)
    # Abuse limit per user, far above real use: photos that may arrive at once (a health
    # worker back in signal uploads a day's photos), refilled at this many an hour. Beyond
    # it each photo is refused and told so; below it nothing is refused, whatever the load.
    user_photo_burst: int = Field(default=200, ge=1)
    user_photos_per_hour: float = Field(default=200, gt=0)
    # onnxruntime intra-op threads per inference; the pool already runs photos in parallel.
    inference_threads: int = Field(default=1, ge=1)
    # None means the model shipped in inference/models/.
    model_path: Path | None = None
    # Key for the HMAC that turns Telegram ids into pseudonymous keys; it must never change.
    # Unset: generated once and kept beside the SQLite file (bot.keys); required otherwise.
    # At least MIN_SECRET_BYTES of randomness (weak_secret).
    user_key_secret: SecretStr | None = None
    # Keys sealing stored chat ids (AES-GCM), newest first: the first seals, all open, and
    # start-up re-seals older values with the first. Unset: one derived from the user-key
    # secret (which always stays last, so values sealed before rotation still open).
    chat_seal_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    log_level: str = "INFO"
    # A few weeks after a medium or high result, ask whether the user saw a doctor.
    follow_up_after_days: float = Field(default=21, gt=0)
    # Opt-in self-check reminders (/remind monthly) come this often.
    reminder_interval_days: float = Field(default=30, gt=0)
    # How often due reminders and follow-ups are looked for (and old records purged); each
    # is stored with its due time, so a restart only delays them by up to this much.
    scheduler_interval_s: float = Field(default=600, gt=0)
    # A reminder or follow-up whose send fails is tried again on a later run, first after
    # this long, then after twice as long each time (up to a day) ...
    scheduler_retry_after_s: float = Field(default=600, gt=0)
    # ... and after this many failures parked with its reason (shown in /stats).
    scheduler_max_attempts: int = Field(default=5, ge=1)
    # How long one scheduler send may wait for Telegram before it counts as failed. At most
    # 60 s, so a send always ends well within its claim (bot.scheduler.CLAIM_LEASE).
    scheduler_send_timeout_s: float = Field(default=10, gt=0, le=60)
    # Consultations older than this are deleted (users are told: 12 months).
    retention_days: int = Field(default=365, gt=0)
    # Webhook mode, for several bot replicas behind a load balancer: the public HTTPS URL
    # Telegram posts updates to. Unset: long polling (one process, no open port).
    webhook_url: str | None = None
    # Where the webhook server listens. Loopback by default: TLS and the public port belong
    # to a reverse proxy in front; in a container set 0.0.0.0.
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, gt=0, lt=65536)
    # Telegram sends this in every webhook request; requests without it are refused, so
    # nobody who guesses the URL can inject updates. Required in webhook mode.
    webhook_secret: SecretStr | None = None
    # /healthz, /readyz and /metrics, in polling and webhook mode. Loopback by default;
    # 0.0.0.0 in a container so the orchestrator and Prometheus can reach it. Port 0: any.
    health_listen: str = "127.0.0.1"
    health_port: int = Field(default=8080, ge=0, lt=65536)
    # Apply migrations at start-up (under a PostgreSQL advisory lock, so replicas starting
    # together migrate once). Off when a deploy runs `python -m bot migrate` first.
    migrate_on_start: bool = True

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("telegram_api_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("chat_seal_keys", mode="before")
    @classmethod
    def _parse_seal_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("chat_seal_keys")
    @classmethod
    def _strong_seal_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        # The first key seals and must be strong; older keys only open what they sealed,
        # under the rule of their time (32 characters), so a weak key can be rotated out.
        if value and (why := weak_secret(value[0].get_secret_value())) is not None:
            raise ValueError(f"the first key {why}")
        if any(len(key.get_secret_value()) < 32 for key in value[1:]):
            raise ValueError("each older key must be at least 32 characters")
        return value

    @field_validator("user_key_secret")
    @classmethod
    def _strong_user_key_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (why := weak_secret(value.get_secret_value())) is not None:
            raise ValueError(why)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("webhook_secret")
    @classmethod
    def _secret_token_charset(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token: 1-256 of A-Z, a-z, 0-9, _ and -.
        if value is not None:
            secret = value.get_secret_value()
            allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
            if not 1 <= len(secret) <= 256 or not set(secret) <= allowed:
                raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
            if len(secret) < MIN_WEBHOOK_SECRET_LENGTH or len(set(secret)) < _MIN_DISTINCT:
                raise ValueError(
                    f"must be at least {MIN_WEBHOOK_SECRET_LENGTH} random characters "
                    '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
                )
        return value

    @model_validator(mode="after")
    def _server_database_needs_a_user_key_secret(self) -> Settings:
        # A generated secret is kept beside a SQLite file (bot.keys); a database server has
        # no such place, and a secret lost with a container would orphan every user.
        url = make_url(self.database_url)
        if self.user_key_secret is None and url.get_backend_name() != "sqlite":
            raise ValueError("USER_KEY_SECRET is required when DATABASE_URL is not SQLite")
        return self

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> Settings:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("WEBHOOK_SECRET is required when WEBHOOK_URL is set")
        return self

    def secrets(self) -> list[str]:
        """Every secret value set, for the log formatter to redact."""
        values = [self.telegram_bot_token, self.user_key_secret, self.webhook_secret]
        values += self.chat_seal_keys
        # Every one, however short (the token is only checked for being non-blank): a short
        # value may blank out ordinary words in the log, which is the lesser harm.
        plain = [value.get_secret_value() for value in values if value is not None]
        return [value for value in plain if value]


def describe_settings_error(error: ValidationError) -> str:
    """Explain invalid settings by variable name, without echoing any value (it may be secret)."""
    lines = ["Invalid bot settings (set them in the environment or in .env; see .env.example):"]
    for item in error.errors(include_input=False, include_url=False):
        name = str(item["loc"][0]).upper() if item["loc"] else "?"
        if item["type"] == "missing":
            lines.append(f"  {name} is required but not set.")
        else:
            lines.append(f"  {name}: {item['msg']}")
    return "\n".join(lines)
