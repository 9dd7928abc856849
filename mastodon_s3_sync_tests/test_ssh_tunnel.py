"""The database through an SSH tunnel, against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import psycopg2
import pytest
from mastodon_s3_sync_demo.servers import generate_client_key, sshd_server

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.tiers import starts_server
from mastodon_s3_sync_tests.support.tunnel import tunnel_variables

pytestmark = pytest.mark.integration  # real servers or Dagster processes


@pytest.fixture
@starts_server
def sshd(tmp_path):
    with sshd_server(tmp_path / "sshd") as server:
        yield server


def test_sync_through_the_tunnel(sshd, database_url, rclone_source, rclone_destination, environment, sync_once):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    variables = {**migration.environment(), **tunnel_variables(sshd, database_url)}
    del variables["DATABASE_URL"]
    environment(variables)
    resources = configured()
    assert "through SSH" in resources["mastodon_db"].describe()
    [result] = sync_once("custom_emojis")
    assert not result.failed
    assert result.copied == len(migration.instance.expected_for("custom_emojis"))


def database_through(sshd, database_url: str, **overrides) -> MastodonDatabase:
    variables = tunnel_variables(sshd, database_url)
    fields = {
        "db_host": variables["DB_HOST"],
        "db_port": int(variables["DB_PORT"]),
        "db_name": variables["DB_NAME"],
        "db_user": variables["DB_USER"],
        "ssh_host": sshd.host,
        "ssh_port": sshd.port,
        "ssh_user": sshd.user,
        "ssh_key_file": str(sshd.client_key_file),
        "ssh_known_hosts": str(sshd.known_hosts_file),
    }
    return MastodonDatabase(**{**fields, **overrides})


def test_tunnelled_connection_is_read_only(sshd, database_url):
    with database_through(sshd, database_url).connection() as connection, connection.cursor() as cursor:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cursor.execute("CREATE TABLE written_by_sync (x int)")


def test_wrong_key_is_a_clear_error(sshd, database_url, tmp_path):
    stranger = generate_client_key(tmp_path, "not_authorized")
    with pytest.raises(ConfigError, match=r"cannot open the SSH tunnel to .*authentication failed"):
        with database_through(sshd, database_url, ssh_key_file=str(stranger)).connection():
            pass


def test_unknown_host_key_is_a_clear_error(sshd, database_url, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    with pytest.raises(ConfigError, match=r"DB_SSH_HOST: \[127\.0\.0\.1\]:\d+ is not in .*known_hosts"):
        with database_through(sshd, database_url, ssh_known_hosts=str(empty_known_hosts)).connection():
            pass


def test_changed_host_key_is_a_clear_error(sshd, database_url, tmp_path):
    impostor = generate_client_key(tmp_path, "impostor_host_key")
    public = " ".join(impostor.with_suffix(".pub").read_text().split()[:2])
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {public}\n")
    with pytest.raises(ConfigError, match=r"DB_SSH_KNOWN_HOSTS: the host key of .* does not match"):
        with database_through(sshd, database_url, ssh_known_hosts=str(known_hosts)).connection():
            pass
