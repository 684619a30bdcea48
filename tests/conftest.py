"""Fixtures shared by all test layers: paths, sample lesion photos, and the throwaway
PostgreSQL cluster (tests/postgres.py) the database, privacy and end-to-end tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The throwaway PostgreSQL server, for every test layer that runs on it too.
from tests.postgres import postgres_url  # noqa: F401

# As `python -m bot` does (bot/__main__.py): durations from PTB as timedelta, so its own
# RetryAfter raises no deprecation warning (an error under filterwarnings=error).
os.environ.setdefault("PTB_TIMEDELTA", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def lesion_jpegs() -> dict[str, bytes]:
    """Return the sample HAM10000 lesion photos in tests/data/, by file name without .jpg."""
    photos = {path.stem: path.read_bytes() for path in sorted(DATA_DIR.glob("*.jpg"))}
    if not photos:
        pytest.fail(f"no sample lesion photos (*.jpg) in {DATA_DIR}")
    return photos
