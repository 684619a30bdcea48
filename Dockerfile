# Skin-lesion screening bot: `docker build -t skin-bot .`
# Run: `docker run --env-file .env -v skin-bot-data:/app/data skin-bot`
# Several replicas with PostgreSQL: compose.yaml.
# A fixed Python release and Debian release: a rebuild gets the same interpreter and system
# libraries. Add the digest (docker buildx imagetools inspect python:3.11.14-slim-bookworm)
# as python:3.11.14-slim-bookworm@sha256:... to pin it byte for byte.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies only (no torch, no test tools), read from pyproject.toml so the
# list lives in one place, at the versions requirements.lock fixes (the ones the tests
# passed against); this layer is rebuilt only when either file changes.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-compile -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The bot runs from the source tree: it finds alembic.ini and migrations/ beside bot/.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY inference/ inference/
COPY bot/ bot/

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown bot /app/data
USER 10001

# SQLite lives here by default; mount a volume to keep the consultation log.
VOLUME ["/app/data"]

# /readyz: the model is loaded and the database answers, on HEALTH_PORT (default 8080).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]

# 8443: the webhook (WEBHOOK_URL set, WEBHOOK_LISTEN=0.0.0.0); polling opens no port for it.
# 8080: /healthz, /readyz, /metrics (HEALTH_LISTEN=0.0.0.0 to reach them from outside).
EXPOSE 8443 8080

# Migrates first (under a PostgreSQL advisory lock: replicas starting together migrate
# once), then runs. A deploy may instead run `python -m bot migrate` once and set
# MIGRATE_ON_START=false, as compose.yaml does.
CMD ["python", "-m", "bot"]
