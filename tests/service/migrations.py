"""What the migration tests share: a database URL on SQLite and on the real PostgreSQL, and Alembic up or down."""
from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from voce.service.db import MIGRATIONS, make_engine


@pytest.fixture(name="url", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'voce.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


def alembic(url: str, target: str, up: bool) -> None:
    """Upgrade (``up``) or downgrade the database at ``url`` to the revision ``target``."""
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, target)
    engine.dispose()
