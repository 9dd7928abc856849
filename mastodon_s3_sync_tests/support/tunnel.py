"""The database reached through an SSH tunnel: the variables that say so."""

from __future__ import annotations

import psycopg2
from mastodon_s3_sync_demo.servers import SshServer


def tunnel_variables(sshd: SshServer, database_url: str) -> dict[str, str]:
    parameters = psycopg2.extensions.parse_dsn(database_url)
    # postgres_server() listens on 127.0.0.1, the machine's or an embedded one: sshd forwards to it.
    assert parameters.get("host", "").startswith("127."), f"the tunnel needs PostgreSQL on TCP loopback: {parameters}"
    return {
        "DB_HOST": parameters["host"],
        "DB_PORT": parameters.get("port", "5432"),
        "DB_NAME": parameters["dbname"],
        "DB_USER": parameters.get("user", "postgres"),
        "DB_SSH_HOST": sshd.host,
        "DB_SSH_PORT": str(sshd.port),
        "DB_SSH_USER": sshd.user,
        "DB_SSH_KEY_FILE": str(sshd.client_key_file),
        "DB_SSH_KNOWN_HOSTS": str(sshd.known_hosts_file),
    }
