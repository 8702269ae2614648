"""Test support for the review store: a throw-away PostgreSQL started by the project's own
script, a fresh database per test, and a child process that writes until it is killed."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "start-postgres.sh"
_counter = itertools.count()


def start_postgres():
    """(url, folder) of a running server, or a reason why there is none."""
    if shutil.which("bash") is None:
        return None, "bash not found"
    # Not under pytest's tmp_path: the server runs as the postgres user, which cannot enter
    # root's private pytest folders.
    folder = Path(tempfile.mkdtemp(prefix="prodcat-pg-"))
    try:
        run = subprocess.run(["bash", str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "start-postgres.sh took more than 5 minutes"
    url = run.stdout.strip()
    if run.returncode != 0 or not url:
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"PostgreSQL could not be started: {run.stderr.strip()[-300:]}"
    return (url, folder), None


def stop_postgres(folder: Path) -> None:
    subprocess.run(["bash", str(SCRIPT), "--stop", str(folder)], capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"t{next(_counter)}_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server():
    server, why = start_postgres()
    if server is None:
        pytest.skip(why)
    yield server[0]
    stop_postgres(server[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A fresh store URL: a SQLite file, then a database on the throw-away PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reviews.db'}"
    return fresh_database(request.getfixturevalue("postgres_server"))
