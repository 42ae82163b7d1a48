import os
from pathlib import Path

import pytest

from .helpers import TINY_CONFIGS, write_model_dir


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """tmp_path with every tiny model directory written into it."""
    for name in TINY_CONFIGS:
        write_model_dir(tmp_path, name)
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs keep prepared data in $SHEARC_CACHE (runtime/data/domains.py): the session's own, never the user's."""
    root = tmp_path_factory.mktemp("shearc-cache")
    os.environ["SHEARC_CACHE"] = str(root)
    return root / "data"
