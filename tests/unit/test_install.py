"""The install is reproducible: one lock file, used by the README, CI and the image."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        name, _, version = line.partition("==")
        assert version, f"not an exact pin: {line}"
        pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts += extra
    return [Requirement(text) for text in texts]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            requirement,
            pins[name],
        )


def test_torch_is_the_cpu_build() -> None:
    assert locked()["torch"] == "2.13.0+cpu"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in LOCK.read_text()


def test_readme_ci_and_image_install_from_the_lock() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv \.venv && .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2
    assert all("pip install -c requirements.lock -e " in command for command in commands)
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    # CI runs exactly the README's test command, nothing hidden.
    assert commands[1] in ci
    assert (
        "pip install --no-compile -c requirements.lock -r" in (REPO_ROOT / "Dockerfile").read_text()
    )
