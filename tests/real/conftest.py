"""The real-model tier's fixtures: two converted checkpoints (SmolLM2, Gemma 3) and one text corpus per session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .assets import GEMMA3, real_model, write_text_domains

RESULTS: dict[str, dict] = {}  # per test: what it measured, printed at the end of the session


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    return real_model()


@pytest.fixture(scope="session")
def gemma_model_dir() -> Path:
    return real_model(GEMMA3)


@pytest.fixture(scope="session")
def real_text(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_text_domains(tmp_path_factory.mktemp("real-text"))


@pytest.fixture
def record() -> Callable[[str, dict], None]:
    """A dict the test fills with what it measured; printed under 'real-model tier' at the end."""
    def store(name: str, values: dict) -> None:
        RESULTS[name] = values
    return store


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("real-model tier")
        for name, values in RESULTS.items():
            terminalreporter.write_line(f"{name}: {json.dumps(values, sort_keys=True)}")
