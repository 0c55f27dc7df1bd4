"""Fixtures shared by the whole suite."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "NURTURE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture
def shared_data() -> Path:
    """The folder of real exports the project is tested against."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder missing: {SHARED_DATA}")
    return SHARED_DATA
