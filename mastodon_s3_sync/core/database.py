"""The Mastodon database: read-only transactions, server-side cursors, optional SSH tunnel."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extras

from mastodon_s3_sync.core.errors import ConfigError, DatabaseConnectionLost, DatabaseUnavailable

if TYPE_CHECKING:
    import paramiko


_DENIED = re.compile(r"permission denied for (table|relation|schema|sequence|view) \"?([^\"\s]+)")


def _first_line(error: BaseException, default: str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else default


@dataclass(frozen=True)
class MastodonDatabase:
    """Mastodon's PostgreSQL, configured with Mastodon's own variable names (see ``settings``).

    Every transaction is read-only; rows are streamed through a named
    (server-side) cursor, so a 50-million-row table never sits in memory.
    """

    database_url: str | None = field(default=None, repr=False)
    """May carry the password: kept out of ``repr``, as the other secrets are."""
    db_host: str = "localhost"
    db_port: int = 5432
    db_name: str = "mastodon_production"
    db_user: str = "mastodon"
    db_pass: str | None = field(default=None, repr=False)
    ssh_host: str | None = None
    ssh_port: int = 22
    ssh_user: str | None = None
    ssh_key_file: str | None = None
    ssh_password: str | None = field(default=None, repr=False)
    ssh_known_hosts: str | None = None
    connect_timeout: int = 15
    fetch_rows: int = 5000

    def _connection_parameters(self) -> dict[str, Any]:
        if self.database_url:
            try:
                parameters: dict[str, Any] = psycopg2.extensions.parse_dsn(self.database_url)
            except psycopg2.ProgrammingError:
                raise ConfigError("DATABASE_URL is not a valid PostgreSQL connection URL") from None
        else:
            parameters = {
                "host": self.db_host,
                "port": self.db_port,
                "dbname": self.db_name,
                "user": self.db_user,
            }
            if self.db_pass:
                parameters["password"] = self.db_pass
        parameters["connect_timeout"] = self.connect_timeout
        parameters["application_name"] = "mastodon-s3-sync"
        # Belt and braces: the session refuses writes even outside set_session.
        parameters["options"] = "-c default_transaction_read_only=on"
        return parameters

    def describe(self) -> str:
        """Where we connect, without secrets."""
        parameters = self._connection_parameters()
        where = f"{parameters.get('host', 'localhost')}:{parameters.get('port', 5432)}/{parameters.get('dbname', '')}"
        return where + (f" through SSH {self.ssh_host}:{self.ssh_port}" if self.ssh_host else "")

    def _lost(self, error: BaseException) -> DatabaseConnectionLost:
        where = f" to {self.describe()}"
        if self.ssh_host:
            where = (
                f" to {self.describe().split(' through ')[0]} through the SSH tunnel to "
                f"{self.ssh_user or ''}@{self.ssh_host}:{self.ssh_port} (DB_SSH_HOST)"
            )
        return DatabaseConnectionLost(where, _first_line(error, "the server closed the connection"))

    def _denied(self, error: psycopg2.errors.InsufficientPrivilege, role: str) -> ConfigError:
        """One line naming the role and what it may not read, with the GRANT that fixes it."""
        found = _DENIED.search(str(error))
        kind, name = found.groups() if found else ("table", "?")
        if kind == "schema":
            return ConfigError(
                f"the database role {role} may not use schema {name} at {self.describe()}: "
                f"GRANT USAGE ON SCHEMA {name} TO {role}"
            )
        return ConfigError(
            f"the database role {role} may not read table {name} at {self.describe()} (permission denied): "
            f"GRANT SELECT ON {name} TO {role}"
        )

    def _host_key(self) -> paramiko.PKey:
        """The SSH host's key from known_hosts, checked against what the host presents.

        sshtunnel reports a mismatch only as "error while opening tunnels", so
        a bare handshake (no login) checks the key first and says what is wrong.
        """
        import paramiko  # only with a tunnel: 0.1 s of every process's start-up otherwise

        known_hosts = Path(self.ssh_known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
        if not known_hosts.is_file():
            raise ConfigError(f"DB_SSH_KNOWN_HOSTS: {known_hosts} does not exist; the SSH host key cannot be checked")
        name = self.ssh_host if self.ssh_port == 22 else f"[{self.ssh_host}]:{self.ssh_port}"
        entry = paramiko.HostKeys(str(known_hosts)).lookup(name) or {}
        if not entry:
            raise DatabaseUnavailable(
                f"DB_SSH_HOST: {name} is not in {known_hosts}; add its host key (ssh-keyscan) to DB_SSH_KNOWN_HOSTS"
            )
        try:
            with paramiko.Transport((self.ssh_host, self.ssh_port)) as transport:
                transport.get_security_options().key_types = list(entry.keys())
                transport.start_client(timeout=self.connect_timeout)
                presented = transport.get_remote_server_key()
        except (paramiko.SSHException, OSError) as error:
            raise DatabaseUnavailable(f"DB_SSH_HOST: cannot reach {name}: {error}") from None
        expected = entry.get(presented.get_name())
        if expected is None or expected.asbytes() != presented.asbytes():
            raise DatabaseUnavailable(
                f"DB_SSH_KNOWN_HOSTS: the host key of {name} does not match {known_hosts} "
                f"(presented {presented.get_name()} {presented.get_fingerprint().hex()})"
            )
        return expected

    @contextmanager
    def _tunnel(self) -> Iterator[tuple[str, int] | None]:
        if not self.ssh_host:
            yield None
            return
        import paramiko
        from sshtunnel import BaseSSHTunnelForwarderError, SSHTunnelForwarder

        parameters = self._connection_parameters()
        host_key = self._host_key()
        forwarder = SSHTunnelForwarder(
            (self.ssh_host, self.ssh_port),
            ssh_username=self.ssh_user,
            ssh_pkey=self.ssh_key_file,
            ssh_password=self.ssh_password,
            ssh_host_key=host_key,
            ssh_config_file=None,
            allow_agent=False,
            host_pkey_directories=[],
            remote_bind_address=(parameters.get("host", "localhost"), int(parameters.get("port", 5432))),
            local_bind_address=("127.0.0.1", 0),
            set_keepalive=30.0,
        )
        try:
            forwarder.start()
        except (BaseSSHTunnelForwarderError, paramiko.SSHException, OSError, ValueError) as error:
            raise DatabaseUnavailable(self._tunnel_failure(error)) from None
        try:
            yield ("127.0.0.1", forwarder.local_bind_port)
        finally:
            forwarder.stop()

    def _tunnel_failure(self, error: Exception) -> str:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "host key" in reason.lower():
            reason = "its host key does not match DB_SSH_KNOWN_HOSTS"
        elif "could not establish session" in reason.lower():
            reason = "authentication failed (check DB_SSH_USER, DB_SSH_KEY_FILE, DB_SSH_PASSWORD) or host key mismatch"
        return f"cannot open the SSH tunnel to {self.ssh_user or ''}@{self.ssh_host}:{self.ssh_port}: {reason}"

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A connection inside a read-only transaction, closed (and tunnel stopped) on exit."""
        parameters = self._connection_parameters()
        with self._tunnel() as forwarded:
            if forwarded:
                parameters["host"], parameters["port"] = forwarded
            try:
                connection = psycopg2.connect(**parameters)
            except psycopg2.OperationalError as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else "connection refused"
                raise DatabaseUnavailable(
                    f"cannot connect to the Mastodon database at {self.describe()}: {first_line}"
                ) from None
            role = connection.info.user
            try:
                connection.set_session(readonly=True, autocommit=False)
                yield connection
            except psycopg2.errors.InsufficientPrivilege as error:
                raise self._denied(error, role) from None
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
                if not connection.closed:
                    raise  # e.g. a statement timeout: the connection itself is fine
                raise self._lost(error) from None
            finally:
                if not connection.closed:
                    try:
                        connection.rollback()
                    except psycopg2.Error:
                        pass  # broken just now: closing is all that is left
                connection.close()

    def stream(
        self, sql: str, parameters: tuple | dict = (), connection: psycopg2.extensions.connection | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows as dicts through a server-side cursor, ``fetch_rows`` at a time."""
        with nullcontext(connection) if connection is not None else self.connection() as open_connection:
            cursor = open_connection.cursor(name="mastodon_s3_sync_rows", cursor_factory=psycopg2.extras.RealDictCursor)
            try:
                cursor.itersize = self.fetch_rows
                cursor.execute(sql, parameters)
                yield from cursor
            finally:
                if not open_connection.closed:  # a broken connection has no cursor left to close
                    try:
                        cursor.close()
                    except psycopg2.Error:
                        pass  # the transaction failed: the error that failed it is on its way

    def query(
        self, sql: str, parameters: tuple | dict = (), connection: psycopg2.extensions.connection | None = None
    ) -> list[tuple]:
        """A small result (a few rows of figures), fetched at once."""
        with nullcontext(connection) if connection is not None else self.connection() as open_connection:
            with open_connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall()

    def clock(self, connection: psycopg2.extensions.connection) -> datetime:
        """The database's now() in UTC, as Mastodon's ``*_updated_at`` columns hold it: what row
        changes are compared with, so no other machine's clock can skew the comparison."""
        [(now,)] = self.query("SELECT now() AT TIME ZONE 'UTC'", connection=connection)
        return now
