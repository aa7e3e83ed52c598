"""The local development stack: build, start, reuse and stop the real servers Quorum talks to.

This module owns three local servers and the tools they need:

* a Temporal dev server (the ``temporal`` CLI, state in one SQLite file),
* PostgreSQL (the distribution's server binaries, a private cluster in a data directory),
* MinIO (an S3-compatible object store in a data directory).

Each server is a :class:`ManagedServer`: it binds 127.0.0.1 only, writes its log and pidfile
into its own data directory, and can be attached to by a later process (the CLI's ``up`` is
idempotent, ``down`` stops what an earlier ``up`` started). The test suite starts throwaway
instances on free ports (see ``tests/conftest.py``); developers run the long-lived stack with::

    python -m infra.devstack build     # build/install the binaries (first run only)
    python -m infra.devstack up        # start everything, print QUORUM_* variables
    python -m infra.devstack status
    python -m infra.devstack down

None of this is used in production, where Quorum talks to managed services.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

from infra.settings import StoreSettings, default_home

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TEMPORAL_CLI_MODULE = "github.com/temporalio/cli/cmd/temporal@v1.5.1"
MINIO_MODULE = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

LOCALHOST = "127.0.0.1"
LOG_TAIL_LINES = 40
DEFAULT_STARTUP_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 20.0
_POLL_INTERVAL = 0.2


class DevStackError(RuntimeError):
    """A local tool or server could not be built, started or stopped.

    The message says what failed, why, and what to do, followed by the tail of the relevant
    log or command output.
    """


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _say(message: str) -> None:
    """Progress for humans; stderr so that ``up``'s stdout stays machine-readable."""
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


def _tail_file(path: Path, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(since)
            data = fh.read()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return _tail_text(data.decode(errors="replace"), lines)


def _error(
    what: str,
    why: str,
    todo: str,
    *,
    log: Path | None = None,
    log_offset: int = 0,
    output: str | None = None,
) -> DevStackError:
    parts = [f"{what}: {why}", f"What to do: {todo}"]
    if output is not None:
        parts.append(f"--- command output (last lines) ---\n{_tail_text(output)}")
    if log is not None:
        parts.append(f"--- {log} (last lines) ---\n{_tail_file(log, log_offset)}")
    return DevStackError("\n".join(parts))


def _run(
    cmd: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing stdout and stderr together (never raises on failure)."""
    try:
        return subprocess.run(
            [str(c) for c in cmd],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode()
        return subprocess.CompletedProcess(exc.cmd, 124, out + f"\n(timed out after {timeout}s)")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent processes don't build or start the same thing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR so that sockets lingering in TIME_WAIT don't count: the servers set it too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return True
        return False


def _port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0) but is gone for every purpose that matters here.
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def _pid_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def bin_dir() -> Path:
    """Where the Go-built tools are installed: ~/.cache/quorum/bin, shared by every clone and
    every QUORUM_HOME (a demo or test home must not trigger a multi-minute rebuild).
    QUORUM_BIN_DIR overrides it."""
    override = os.environ.get("QUORUM_BIN_DIR")
    return Path(override) if override else Path.home() / ".cache" / "quorum" / "bin"


def stack_dir() -> Path:
    """Where the long-lived local stack started by ``up`` keeps its state and logs."""
    return default_home() / "stack"


def _find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in (Path("/usr/local/go/bin/go"), Path.home() / "go" / "bin" / "go"):
        if _is_executable(candidate):
            return str(candidate)
    raise _error(
        "cannot build the local servers",
        "the Go toolchain (`go`) is not on PATH",
        "install Go 1.25 or newer (https://go.dev/dl/) and make sure `go version` works, "
        "or put prebuilt `temporal` and `minio` binaries on PATH",
    )


def _go_install(name: str, module: str, label: str) -> Path:
    target = bin_dir() / name
    go = _find_go()
    with _file_lock(bin_dir() / f".{name}.build.lock"):
        # Another process may have finished the build while we waited for the lock.
        if _is_current_build(target, module):
            return target
        version = module.rpartition("@")[2]
        _say(f"building {label} {version} (first run only, a few minutes)...")
        env = dict(os.environ)
        env.update(
            GOBIN=str(bin_dir()),
            GOFLAGS="-buildvcs=false",
            # Build with the installed toolchain instead of silently downloading another one.
            GOTOOLCHAIN="local",
            # Always verify module checksums against the public checksum database.
            GOSUMDB="sum.golang.org",
            GONOSUMDB="",
            GOPRIVATE="",
            GOINSECURE="",
        )
        build_log = bin_dir() / f"{name}-build.log"
        started = time.monotonic()
        with build_log.open("wb") as out:
            result = subprocess.run(
                [go, "install", module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0 or not _is_executable(target):
            raise _error(
                f"building {label} failed",
                f"`go install {module}` exited with status {result.returncode}",
                "read the go error below; a network error means the Go module proxy "
                "(GOPROXY) is unreachable, a 'requires go >=' error means Go must be upgraded",
                log=build_log,
            )
        _stamp_path(target).write_text(module + "\n")
        _say(f"built {target} in {time.monotonic() - started:.0f}s")
    return target


def _stamp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.module")


def _is_current_build(target: Path, module: str) -> bool:
    """A cached binary counts only if it was built from the pinned module version, so bumping
    the pin rebuilds it instead of silently running the old one."""
    stamp = _stamp_path(target)
    return _is_executable(target) and stamp.is_file() and stamp.read_text().strip() == module


def ensure_temporal() -> Path:
    """The ``temporal`` CLI: the pinned build in :func:`bin_dir`, else one on PATH, else build it.

    The pinned build wins over PATH so that every checkout runs the same server version.
    """
    pinned = bin_dir() / "temporal"
    if _is_current_build(pinned, TEMPORAL_CLI_MODULE):
        return pinned
    on_path = shutil.which("temporal")
    if on_path:
        return Path(on_path)
    return _go_install("temporal", TEMPORAL_CLI_MODULE, "temporal CLI")


def ensure_minio() -> Path:
    """The ``minio`` server: the pinned build in :func:`bin_dir`, else PATH, else build it."""
    pinned = bin_dir() / "minio"
    if _is_current_build(pinned, MINIO_MODULE):
        return pinned
    on_path = shutil.which("minio")
    if on_path:
        return Path(on_path)
    return _go_install("minio", MINIO_MODULE, "minio")


_PG_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _find_postgres_bin() -> Path | None:
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Debian links a few tools into /usr/local/bin or wraps them; the real directory also
        # holds pg_isready and psql of the same version.
        candidates.append(Path(on_path).resolve().parent)
    versioned = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    candidates.extend(versioned)
    for directory in candidates:
        if all(_is_executable(directory / tool) for tool in _PG_SERVER_TOOLS):
            return directory
    return None


def ensure_postgres() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Searches PATH, then ``/usr/lib/postgresql/*/bin`` (highest version first). When none is
    found and we are root on a Debian-like system, installs the ``postgresql`` package.
    """
    found = _find_postgres_bin()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise _error(
            "PostgreSQL server binaries not found",
            "no initdb/pg_ctl/postgres on PATH or in /usr/lib/postgresql/*/bin",
            "install them, e.g. `sudo apt-get install -y postgresql` on Debian/Ubuntu, "
            "then run this again",
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    _say("installing Debian's postgresql package (first run only)...")
    result = _run(install, env=env)
    if result.returncode != 0:
        # A fresh machine often has no package lists yet.
        _run(["apt-get", "update"], env=env)
        result = _run(install, env=env)
    found = _find_postgres_bin()
    if result.returncode != 0 or found is None:
        raise _error(
            "installing PostgreSQL failed",
            f"`{' '.join(install)}` exited with status {result.returncode}",
            "fix the apt error below (network, package mirror) or install PostgreSQL manually",
            output=result.stdout,
        )
    return found


# --------------------------------------------------------------------------------------------
# The managed server base class
# --------------------------------------------------------------------------------------------


class ManagedServer(ABC):
    """One local server process whose state, log and pidfile live in ``data_dir``.

    ``start()`` reuses a server that an earlier process started from the same data directory
    (the pidfile names a live process of the right program and the server answers); otherwise
    it refuses ports that something else holds, launches the process in its own session (so a
    Ctrl-C in the terminal that started it does not kill it), and waits until it answers,
    failing fast with the log tail if it exits. ``stop()`` works on reused servers too.

    As a context manager it stops the server on exit only if this object launched it, so a
    ``with`` block never tears down a developer's long-lived stack it merely attached to.
    """

    name: ClassVar[str]
    #: A fragment of the server's command line, to tell our process from a recycled pid.
    process_marker: ClassVar[str]

    def __init__(self, data_dir: Path, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.startup_timeout = startup_timeout
        self.stop_timeout = DEFAULT_STOP_TIMEOUT
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._launched = False
        self.started_in: float | None = None  # seconds from launch to ready, for reports

    # -- what subclasses describe ------------------------------------------------------------

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """The TCP ports on 127.0.0.1 that the server listens on; the first is the main one."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The command line that runs the server in the foreground."""

    @abstractmethod
    def probe(self) -> bool:
        """True if the server answers requests right now (one quick check, no waiting)."""

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _prepare(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Runs before launching: resolve binaries, create directories, initialise state."""

    def _after_ready(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Runs once the server answers (also when reusing one): create databases etc."""

    # -- paths -------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def main_address(self) -> str:
        return f"{LOCALHOST}:{self.ports[0]}"

    @property
    def pid(self) -> int | None:
        """The server's pid if it is running (started here or by an earlier process)."""
        return self._current_pid()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server (or reuse a running one) and return once it answers."""
        if self._pid is not None and self._alive(self._pid):
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".devstack.lock"):
            recorded = self._recorded_pid()
            if recorded is not None:
                # Started by an earlier process (maybe still booting): reuse it.
                self._pid, self._launched = recorded, False
                if not self.probe():
                    log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
                    self._wait_until_ready(time.monotonic(), log_offset)
                _say(f"{self.name} already running on {self.main_address} (pid {recorded})")
                self._after_ready()
                return self
            for port in self.ports:
                if _port_in_use(port):
                    raise _error(
                        f"cannot start {self.name}",
                        f"port {port} on {LOCALHOST} is already in use by another process "
                        f"(not a {self.name} started from {self.data_dir})",
                        f"stop whatever listens there (`ss -ltnp 'sport = :{port}'` shows it) "
                        f"or give {type(self).__name__} a different port",
                    )
            self._prepare()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            _say(f"starting {self.name} on {self.main_address} (log: {self.log_path})")
            started = time.monotonic()
            self._launch(log_offset)
            self._wait_until_ready(started, log_offset)
            self.started_in = time.monotonic() - started
            _say(f"{self.name} ready in {self.started_in:.1f}s")
            self._after_ready()
            return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server if it runs (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        pid = self._current_pid()
        if pid is not None:
            _say(f"stopping {self.name} (pid {pid})")
            self._terminate(pid, self.stop_timeout if timeout is None else timeout)
        self._forget()

    def is_running(self) -> bool:
        """True if the server process is alive (it may still be starting up)."""
        return self._current_pid() is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._launched:
            self.stop()

    # -- process plumbing (overridable for servers with their own control tool) --------------

    def _launch(self, log_offset: int) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._pid, self._launched = self._proc.pid, True
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def _exit_status(self) -> int | None:
        """The exit status if the launched process has died, else None."""
        if self._proc is not None:
            return self._proc.poll()
        if self._pid is not None and not _pid_alive(self._pid):
            return -1
        return None

    def _wait_until_ready(self, started: float, log_offset: int) -> None:
        deadline = started + self.startup_timeout
        while True:
            status = self._exit_status()
            if status is not None:
                launched = self._launched
                self._forget()
                exited = "exited" if status < 0 else f"exited with status {status}"
                raise _error(
                    f"{self.name} failed to start",
                    f"the process {exited} before it answered on {self.main_address}",
                    f"read the log below (full log: {self.log_path})"
                    + ("" if launched else "; then run `python -m infra.devstack up` again"),
                    log=self.log_path,
                    log_offset=log_offset,
                )
            if self.probe():
                return
            if time.monotonic() > deadline:
                if self._launched:
                    self.stop()
                    todo = "the machine may be overloaded: pass a larger startup_timeout"
                else:
                    # Not ours to kill: it was started earlier, perhaps with other ports.
                    todo = (
                        f"it was started earlier from {self.data_dir} (pid {self._pid}); "
                        "stop it (`python -m infra.devstack down` or kill that pid)"
                    )
                raise _error(
                    f"{self.name} failed to start",
                    f"it did not answer on {self.main_address} within {self.startup_timeout:.0f}s",
                    f"{todo}, and read the log below (full log: {self.log_path})",
                    log=self.log_path,
                    log_offset=log_offset,
                )
            time.sleep(_POLL_INTERVAL)

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _pid_alive(pid)

    def _recorded_pid(self) -> int | None:
        """The pid in the pidfile, if that process is alive and is this kind of server."""
        try:
            first_line = self.pid_path.read_text().splitlines()[0]
            pid = int(first_line.strip())
        except (OSError, ValueError, IndexError):
            return None
        if not self._alive(pid):
            return None
        cmdline = _pid_cmdline(pid)
        if cmdline is not None and self.process_marker not in cmdline:
            return None  # the pid was recycled by an unrelated process
        return pid

    def _current_pid(self) -> int | None:
        if self._pid is not None and self._alive(self._pid):
            return self._pid
        return self._recorded_pid()

    def _terminate(self, pid: int, timeout: float) -> None:
        self._signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            self._signal(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # Servers run as session leaders: signal the whole group so helpers die with them.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _forget(self) -> None:
        self._proc, self._pid, self._launched = None, None, False
        self.pid_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Temporal
# --------------------------------------------------------------------------------------------


class TemporalDevServer(ManagedServer):
    """``temporal server start-dev`` with its state in ``data_dir/temporal.db``.

    Because the state is a file, stopping and starting the server again keeps every workflow
    (running ones resume). ``dynamic_config`` values are JSON-encoded, e.g.
    ``{"limit.historyCount.suggestContinueAsNew": 50}``.

    ``in_memory=True`` keeps the state in memory instead (lost when the server stops). The
    file store rewrites pages through a rollback journal on every transaction, tens of MB/s
    of writes under load, so the benchmarks, which never restart the server, use memory.
    """

    name = "temporal"
    process_marker = "start-dev"

    def __init__(
        self,
        data_dir: Path,
        port: int = 7233,
        ui_port: int = 8233,
        dynamic_config: Mapping[str, object] | None = None,
        namespace: str = "default",
        headless: bool = False,
        *,
        in_memory: bool = False,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        self.in_memory = in_memory
        self.port = port
        self.ui_port = ui_port
        self.dynamic_config = dict(dynamic_config or {})
        self.namespace = namespace
        self.headless = headless
        self._binary: Path | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,) if self.headless else (self.port, self.ui_port)

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ui_port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "temporal.db"

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = ensure_temporal()
        return self._binary

    def _prepare(self) -> None:
        _ = self.binary

    def _command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "server",
            "start-dev",
            "--ip",
            LOCALHOST,
            "--port",
            str(self.port),
            *(() if self.in_memory else ("--db-filename", str(self.db_path))),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        if self.headless:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port)]
        for key, value in self.dynamic_config.items():
            cmd += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        return cmd

    def probe(self) -> bool:
        # The TCP check is cheap and avoids spawning the CLI while the server boots.
        if not _port_answers(self.port):
            return False
        result = _run(
            [
                self.binary,
                "operator",
                "cluster",
                "health",
                "--address",
                self.address,
                # Ignore the user's CLI profiles and TEMPORAL_* variables (TLS, API keys...).
                "--disable-config-file",
                "--disable-config-env",
                "--command-timeout",
                "3s",
            ],
            timeout=10,
        )
        return result.returncode == 0 and "SERVING" in result.stdout


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_PG_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PG_SERVICE_USERS = ("postgres", "quorum-pg")
_ROOT_RELOCATION_BASE = Path("/var/lib/quorum/postgres")


def _as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by_others(directory: Path) -> bool:
    """True if an unrelated user may traverse every existing ancestor of ``directory``."""
    for ancestor in directory.parents:
        try:
            mode = ancestor.stat().st_mode
        except FileNotFoundError:
            continue  # we will create it with the default 0755
        if not mode & stat.S_IXOTH:
            return False
    return True


class PostgresServer(ManagedServer):
    """A private PostgreSQL cluster in ``data_dir/pgdata``, listening on 127.0.0.1 only.

    Password authentication (scram-sha-256) for the one superuser ``user``; the unix socket
    lives inside the data directory. ``durable=False`` turns off fsync and friends, which is
    fine for throwaway test instances and much faster.

    PostgreSQL refuses to run as root. As root, the cluster runs as the ``postgres`` system
    user (created by Debian's package) or a dedicated ``quorum-pg`` user, via ``runuser``. That
    user must be able to reach the cluster directory; when an ancestor of ``data_dir`` is
    private (``/root``, pytest's ``/tmp/pytest-of-root``) the cluster lives under
    ``/var/lib/quorum/postgres/<hash of data_dir>`` instead, with a ``data_dir/cluster``
    symlink pointing at it.
    """

    name = "postgres"
    process_marker = "postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int = 5433,
        user: str = "quorum",
        password: str = "quorum",
        database: str = "quorum",
        *,
        durable: bool = True,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        for identifier in (user, database):
            if not _PG_IDENTIFIER.match(identifier):
                raise ValueError(f"not a plain PostgreSQL identifier: {identifier!r}")
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.durable = durable
        self._bin: Path | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the main database (asyncpg driver)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (asyncpg driver) of ``database`` on this server."""
        return "postgresql+asyncpg" + self.dsn(database).removeprefix("postgresql")

    def dsn(self, database: str | None = None) -> str:
        """libpq/asyncpg DSN (``postgresql://...``) of ``database`` (default: the main one)."""
        password = urllib.parse.quote(self.password, safe="")
        db = database or self.database
        return f"postgresql://{self.user}:{password}@{LOCALHOST}:{self.port}/{db}"

    # -- where things live -----------------------------------------------------------------------

    @property
    def cluster_dir(self) -> Path:
        """The directory the server process owns: pgdata, its socket and its log."""
        if not _as_root():
            return self.data_dir
        link = self.data_dir / "cluster"
        if link.is_symlink():
            return link.resolve()
        if _reachable_by_others(self.data_dir):
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return _ROOT_RELOCATION_BASE / digest

    @property
    def pgdata(self) -> Path:
        return self.cluster_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.cluster_dir / "postgres.log"

    @property
    def pid_path(self) -> Path:
        # PostgreSQL's own lock file: its first line is the postmaster's pid.
        return self.pgdata / "postmaster.pid"

    @property
    def bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = ensure_postgres()
        return self._bin

    def _tool(self, name: str) -> Path:
        local = self.bin_dir / name
        if _is_executable(local):
            return local
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
        raise _error(
            f"PostgreSQL tool {name} not found",
            f"it is neither in {self.bin_dir} nor on PATH",
            "install the PostgreSQL client programs (Debian: postgresql-client)",
        )

    # -- running as the service user when root ---------------------------------------------------

    def _service_user(self) -> pwd.struct_passwd | None:
        """The account that runs the cluster when we are root (None when we are not root)."""
        if not _as_root():
            return None
        for candidate in _PG_SERVICE_USERS:
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(candidate)
        result = _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "quorum-pg",
            ]
        )
        if result.returncode != 0:
            raise _error(
                "cannot create a user to run PostgreSQL",
                "PostgreSQL refuses to run as root and `useradd --system quorum-pg` failed",
                "create a system user named quorum-pg (or install Debian's postgresql "
                "package, which creates `postgres`), or run as a non-root user",
                output=result.stdout,
            )
        return pwd.getpwnam("quorum-pg")

    def _as_service_user(self, cmd: Sequence[str | Path]) -> list[str]:
        account = self._service_user()
        if account is None:
            return [str(c) for c in cmd]
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        if not _is_executable(Path(runuser)):
            raise _error(
                "cannot run PostgreSQL as root",
                "`runuser` (util-linux) is missing, so the server cannot drop to "
                f"the {account.pw_name} user",
                "install util-linux, or run as a non-root user",
            )
        return [runuser, "-u", account.pw_name, "--", *(str(c) for c in cmd)]

    def _own(self, path: Path, mode: int) -> None:
        account = self._service_user()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(mode)

    # -- lifecycle hooks --------------------------------------------------------------------------

    def _prepare(self) -> None:
        cluster = self.cluster_dir
        if cluster != self.data_dir:
            _ROOT_RELOCATION_BASE.mkdir(parents=True, exist_ok=True, mode=0o755)
            cluster.mkdir(exist_ok=True)
            link = self.data_dir / "cluster"
            if not link.is_symlink():
                link.symlink_to(cluster, target_is_directory=True)
        self._own(cluster, 0o700)
        self.socket_dir.mkdir(exist_ok=True)
        self._own(self.socket_dir, 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        pwfile = self.cluster_dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile, 0o600)
        cmd: list[str | Path] = [
            self._tool("initdb"),
            "-D",
            self.pgdata,
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            cmd.append("--no-sync")
        _say(f"initialising a PostgreSQL cluster in {self.pgdata}")
        try:
            result = _run(self._as_service_user(cmd), cwd=self.cluster_dir, timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            # Leave no half-initialised pgdata behind, or the next start would skip initdb.
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise _error(
                "initdb failed",
                f"initdb exited with status {result.returncode}",
                "read its output below; a permissions error means the service user cannot "
                f"write {self.cluster_dir}",
                output=result.stdout,
            )

    def _server_options(self) -> str:
        options = ["-p", str(self.port), "-k", str(self.socket_dir), "-h", LOCALHOST]
        if not self.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                options += ["-c", setting]
        # pg_ctl hands this string to /bin/sh, so quote it as one.
        return shlex.join(options)

    def _command(self) -> list[str]:
        return [
            str(self._tool("pg_ctl")),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_path),
            "-o",
            self._server_options(),
            "-w",
            "-t",
            str(int(self.startup_timeout)),
            "start",
        ]

    def _launch(self, log_offset: int) -> None:
        # pg_ctl daemonises the postmaster (own session) and waits until it accepts connections.
        result = _run(
            self._as_service_user(self._command()),
            cwd=self.cluster_dir,
            timeout=self.startup_timeout + 15,
        )
        if result.returncode != 0:
            raise _error(
                "postgres failed to start",
                f"`pg_ctl start` exited with status {result.returncode}",
                f"read the server log below (full log: {self.log_path})",
                output=result.stdout,
                log=self.log_path,
                log_offset=log_offset,
            )
        self._pid, self._launched = self._recorded_pid(), True

    def _exit_status(self) -> int | None:
        if self._pid is None or not _pid_alive(self._pid):
            return -1
        return None

    def _terminate(self, pid: int, timeout: float) -> None:
        result = _run(
            self._as_service_user(
                [
                    self._tool("pg_ctl"),
                    "-D",
                    self.pgdata,
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ]
            ),
            cwd=self.cluster_dir,
            timeout=timeout + 15,
        )
        if result.returncode != 0 and _pid_alive(pid):
            super()._terminate(pid, 5.0)

    def _forget(self) -> None:
        # postmaster.pid belongs to PostgreSQL, which removes it on a clean shutdown.
        self._proc, self._pid, self._launched = None, None, False

    def probe(self) -> bool:
        if not _port_answers(self.port):
            return False
        result = _run(
            [self._tool("pg_isready"), "-q", "-h", LOCALHOST, "-p", str(self.port), "-t", "3"],
            timeout=10,
        )
        return result.returncode == 0

    def _after_ready(self) -> None:
        self.create_database(self.database)

    # -- databases ------------------------------------------------------------------------------

    def _psql(self, sql: str) -> str:
        result = _run(
            [
                self._tool("psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                LOCALHOST,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            env=dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="10"),
            timeout=60,
        )
        if result.returncode != 0:
            raise _error(
                "a PostgreSQL command failed",
                f"psql exited with status {result.returncode} running {sql!r}",
                f"read the output below and the server log {self.log_path}",
                output=result.stdout,
            )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by ``user`` if it does not exist; return its URL."""
        if not _PG_IDENTIFIER.match(name):
            raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists != "1":
            self._psql(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url_for(name)


# --------------------------------------------------------------------------------------------
# MinIO
# --------------------------------------------------------------------------------------------


class MinioServer(ManagedServer):
    """A single-drive MinIO server storing objects under ``data_dir/data``.

    The web console only runs when ``console_port`` is given. Update checks are off, so the
    server never reaches out to the internet.
    """

    name = "minio"
    process_marker = "minio"

    def __init__(
        self,
        data_dir: Path,
        port: int = 9000,
        console_port: int | None = None,
        access_key: str = "quorum",
        secret_key: str = "quorum-secret-key",
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, startup_timeout=startup_timeout)
        if len(access_key) < 3 or len(secret_key) < 8:
            raise ValueError("MinIO needs an access key of 3+ and a secret key of 8+ characters")
        self.port = port
        self.console_port = console_port
        self.access_key = access_key
        self.secret_key = secret_key
        self._binary: Path | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,) if self.console_port is None else (self.port, self.console_port)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def console_url(self) -> str | None:
        return None if self.console_port is None else f"http://{LOCALHOST}:{self.console_port}"

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = ensure_minio()
        return self._binary

    def _prepare(self) -> None:
        _ = self.binary
        (self.data_dir / "data").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "server",
            str(self.data_dir / "data"),
            "--address",
            f"{LOCALHOST}:{self.port}",
        ]
        if self.console_port is not None:
            cmd += ["--console-address", f"{LOCALHOST}:{self.console_port}"]
        return cmd

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_UPDATE="off",
            MINIO_BROWSER="on" if self.console_port is not None else "off",
        )
        return env

    def probe(self) -> bool:
        # No proxies: a developer's HTTP(S)_PROXY must not intercept 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint_url}/minio/health/live", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def boto3_client(self) -> S3Client:
        """An S3 client for this server (path-style addressing, no proxies)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                proxies={},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    def ensure_bucket(self, name: str, versioning: bool = True) -> None:
        """Create bucket ``name`` if missing, and enable versioning on it if asked."""
        client = self.boto3_client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        if versioning:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


# --------------------------------------------------------------------------------------------
# The long-lived local stack and its CLI
# --------------------------------------------------------------------------------------------

SERVICES = ("temporal", "postgres", "minio")
_ENSURE: dict[str, Callable[[], Path]] = {
    "temporal": ensure_temporal,
    "postgres": ensure_postgres,
    "minio": ensure_minio,
}


def stack_servers(services: Sequence[str] = SERVICES) -> dict[str, ManagedServer]:
    """The long-lived local stack under :func:`stack_dir`, on the default ports."""
    root = stack_dir()
    servers: dict[str, ManagedServer] = {}
    if "temporal" in services:
        servers["temporal"] = TemporalDevServer(root / "temporal", port=7233, ui_port=8233)
    if "postgres" in services:
        servers["postgres"] = PostgresServer(root / "postgres", port=5433)
    if "minio" in services:
        servers["minio"] = MinioServer(root / "minio", port=9000, console_port=9001)
    return servers


def stack_environment(servers: Mapping[str, ManagedServer]) -> dict[str, str]:
    """The QUORUM_* variables that point Quorum at ``servers``."""
    env: dict[str, str] = {}
    for server in servers.values():
        if isinstance(server, TemporalDevServer):
            env["QUORUM_TEMPORAL__ADDRESS"] = server.address
            if not server.headless:
                env["QUORUM_TEMPORAL__UI_URL"] = server.ui_url
        elif isinstance(server, PostgresServer):
            env["QUORUM_DATABASE__URL"] = server.url
        elif isinstance(server, MinioServer):
            env["QUORUM_STORE__BACKEND"] = "s3"
            env["QUORUM_STORE__BUCKET"] = _stack_bucket()
            env["QUORUM_S3__ENDPOINT_URL"] = server.endpoint_url
            env["QUORUM_S3__ACCESS_KEY_ID"] = server.access_key
            env["QUORUM_S3__SECRET_ACCESS_KEY"] = server.secret_key
    return env


def _stack_bucket() -> str:
    return os.environ.get("QUORUM_STORE__BUCKET") or StoreSettings().bucket


def _parse_services(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SERVICES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown service(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SERVICES)}"
        )
    return names


def _cmd_build(services: Sequence[str]) -> int:
    # The two Go builds take minutes each on two cores; run them side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(services) or 1) as pool:
        found = dict(zip(services, pool.map(lambda n: _ENSURE[n](), services), strict=True))
    for name in services:
        print(f"{name}: {found[name]}")
    return 0


def _cmd_up(services: Sequence[str]) -> int:
    servers = stack_servers(services)
    # Build everything first, so a slow build never leaves half a stack running meanwhile.
    for name in services:
        _ENSURE[name]()
    for server in servers.values():
        server.start()
        if isinstance(server, MinioServer):
            server.ensure_bucket(_stack_bucket())
    # Describe the whole running stack, not just this call's services, so that a partial
    # `up` never drops variables from the env file.
    running = {name: s for name, s in stack_servers().items() if s.is_running()}
    env = stack_environment(running)
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    env_file = stack_dir() / "quorum.env"
    env_file.write_text(exports)
    sys.stdout.write(exports)
    _say(f"stack is up; these variables are also in {env_file} (`. {env_file}`)")
    for server in servers.values():
        if isinstance(server, TemporalDevServer):
            _say(f"Temporal UI: {server.ui_url}")
        if isinstance(server, MinioServer) and server.console_url:
            _say(f"MinIO console: {server.console_url} ({server.access_key})")
    return 0


def _cmd_down(services: Sequence[str]) -> int:
    for server in reversed(list(stack_servers(services).values())):
        if server.is_running():
            server.stop()
        else:
            _say(f"{server.name} is not running")
    return 0


def _cmd_status(services: Sequence[str]) -> int:
    all_up = True
    for name, server in stack_servers(services).items():
        pid = server.pid
        if pid is None:
            state, all_up = "stopped", False
        elif server.probe():
            state = "running"
        else:
            state, all_up = "starting or unhealthy", False
        where = f"pid {pid}, " if pid is not None else ""
        print(f"{name:9} {state:22} {server.main_address:16} {where}data {server.data_dir}")
    # 3 is the LSB status code for "not running".
    return 0 if all_up else 3


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.devstack {build,up,down,status} [--services a,b]``; returns exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.devstack",
        description="Run Quorum's local Temporal, PostgreSQL and MinIO servers "
        f"(state under {stack_dir()}).",
    )
    parser.add_argument(
        "command",
        choices=("build", "up", "down", "status"),
        help="build: install the binaries; up: start the stack and print QUORUM_* variables; "
        "down: stop it; status: show what runs",
    )
    parser.add_argument(
        "--services",
        type=_parse_services,
        default=list(SERVICES),
        help=f"comma-separated subset of {','.join(SERVICES)} (default: all)",
    )
    args = parser.parse_args(argv)
    commands = {"build": _cmd_build, "up": _cmd_up, "down": _cmd_down, "status": _cmd_status}
    try:
        return commands[args.command](args.services)
    except DevStackError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
