from pathlib import Path

import pytest

from .helpers import TINY_CONFIGS, write_model_dir


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """tmp_path with every tiny model directory written into it."""
    for name in TINY_CONFIGS:
        write_model_dir(tmp_path, name)
    return tmp_path
