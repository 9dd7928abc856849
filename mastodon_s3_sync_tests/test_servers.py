"""The demo/test servers are real, reachable and behave as the rest of the suite assumes."""

import base64
from contextlib import closing
from pathlib import Path

import paramiko
import psycopg2
import pytest
from mastodon_s3_sync_demo.servers import (
    embedded_postgres_server,
    fresh_database,
    generate_client_key,
    moto_s3_server,
    postgres_server,
    rclone_s3_server,
    sshd_server,
)
from sshtunnel import SSHTunnelForwarder

pytestmark = pytest.mark.integration  # real servers or Dagster processes

CACHE_CONTROL = "public, max-age=315576000, immutable"


def test_rclone_keeps_object_and_headers(tmp_path: Path) -> None:
    with rclone_s3_server(tmp_path / "s3") as s3:
        s3.create_bucket("media")
        client = s3.client()
        client.put_object(
            Bucket="media", Key="a/b/file", Body=b"png bytes", ContentType="image/png", CacheControl=CACHE_CONTROL
        )
        got = client.get_object(Bucket="media", Key="a/b/file")
        assert got["Body"].read() == b"png bytes"
        assert (got["ContentType"], got["CacheControl"]) == ("image/png", CACHE_CONTROL)
        assert (tmp_path / "s3" / "media" / "a" / "b" / "file").read_bytes() == b"png bytes"


def test_moto_keeps_public_read_acl() -> None:
    with moto_s3_server() as s3:
        s3.create_bucket("media")
        client = s3.client()
        client.put_object(Bucket="media", Key="k", Body=b"x", ACL="public-read")
        grants = client.get_object_acl(Bucket="media", Key="k")["Grants"]
        assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [
            g["Grantee"] for g in grants if g["Permission"] == "READ"
        ]


@pytest.mark.parametrize("server", [postgres_server, embedded_postgres_server])
def test_fresh_database_is_created_used_and_dropped(server) -> None:
    with server() as admin_url:
        with fresh_database(admin_url) as url:
            name = psycopg2.extensions.parse_dsn(url)["dbname"]
            assert name.startswith("mastodon_test_")
            with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42); SELECT current_database(), x FROM t")
                assert cur.fetchone() == (name, 42)
        with closing(psycopg2.connect(admin_url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone() == (0,)


@pytest.mark.parametrize("server", [postgres_server, embedded_postgres_server])
def test_ssh_tunnel_reaches_postgres(server, tmp_path: Path) -> None:
    """Whichever PostgreSQL the suite gets (this machine's at 127.0.0.1:5432, else an embedded one),
    it is on TCP loopback, where an SSH tunnel reaches it."""
    with server() as admin_url, sshd_server(tmp_path) as ssh:
        target = psycopg2.extensions.parse_dsn(admin_url)
        assert target["host"] == "127.0.0.1", admin_url
        key_type, key_b64 = ssh.host_public_key.split()
        with SSHTunnelForwarder(
            (ssh.host, ssh.port),
            ssh_username=ssh.user,
            ssh_pkey=str(ssh.client_key_file),
            ssh_host_key=paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)),
            allow_agent=False,
            ssh_config_file=None,
            remote_bind_address=("127.0.0.1", int(target["port"])),
            local_bind_address=("127.0.0.1", 0),
        ) as tunnel:
            url = f"postgresql://postgres@127.0.0.1:{tunnel.local_bind_port}/postgres"
            with closing(psycopg2.connect(url, connect_timeout=5)) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)


def test_sshd_rejects_unauthorized_key(tmp_path: Path) -> None:
    with sshd_server(tmp_path) as ssh:
        wrong_key = generate_client_key(tmp_path, "wrong_key")
        with closing(paramiko.SSHClient()) as client, pytest.raises(paramiko.AuthenticationException):
            client.load_host_keys(str(ssh.known_hosts_file))
            client.connect(
                ssh.host,
                ssh.port,
                username=ssh.user,
                key_filename=str(wrong_key),
                look_for_keys=False,
                allow_agent=False,
            )
