"""The architecture's one-way dependencies, and the linters CI relies on."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package (or module) -> top-level imports it must never make
FORBIDDEN = {
    "inference": {"telegram", "torch", "bot", "training", "sqlalchemy"},
    "bot": {"torch", "training"},
    "bot/db": {"telegram"},
    "bot/screening.py": {"telegram"},
    "bot/replies.py": {"telegram"},
    # Keys, sealing and admission are decided without Telegram; sealing without a database.
    "bot/privacy.py": {"telegram", "sqlalchemy"},
    "bot/keys.py": {"telegram"},
    "bot/admission.py": {"telegram", "sqlalchemy"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_dependencies_point_one_way(where: str) -> None:
    """handlers -> screening -> inference and db; inference never sees Telegram or torch."""
    target = ROOT / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, f"nothing found at {where}"
    offending = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[where]) for f in files
    }
    assert not {k: v for k, v in offending.items() if v}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = run(hadolint, "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
