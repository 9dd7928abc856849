"""Fault matrix, S3 side: a server that dies mid-run and comes back, clock skew and expired
credentials, TLS with a private CA. Against real servers (rclone, moto) behind ``S3Proxy``.

The dying server is the proxy in front of the real one (``S3Proxy.outage``): its listening
socket closes, so new connections are refused, and every open connection is aborted mid-request,
as when the process is killed; 3 s later it listens again on the same port. The real server
behind it keeps its objects and their metadata, which a restarted rclone (metadata in memory)
or moto (everything in memory) would not, so the destination can still be verified header by
header and ACL by ACL. 3 s instead of 10 s keeps the test to seconds: the engine's own
request retries (5 tries, backoff up to ~6 s) cannot ride out either, and the copy op's
RetryPolicy (10 s) comes after both, so the outcome does not change.
"""

from __future__ import annotations

import dataclasses
import ssl

import pytest
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk

from mastodon_s3_sync.core.buckets import SourceBucket
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.transfer import sigv4
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.faults import assert_destination_exact, expected_media
from mastodon_s3_sync_tests.support.migration import make_migration, unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy, self_signed_certificate

pytestmark = pytest.mark.integration

BULK_ROWS = 200
KILL_AFTER = 60
OUTAGE_SECONDS = 3.0


@pytest.mark.parametrize("dying", ["destination", "source"])
def test_s3_server_dying_mid_run(dying, database_url, rclone_source, moto, sync_once, environment):
    """Destination (moto) or source (rclone) gone for 3 s after KILL_AFTER objects: the run retries
    or fails cleanly; the next sync completes, copying nothing twice and counting nothing it did
    not copy; the destination ends exact, ACLs included."""
    died = []

    def watch(exchange) -> None:
        watched = source_proxy if dying == "source" else destination_proxy
        method = "GET" if dying == "source" else "PUT"
        if died or exchange.method != method or exchange.status != 200 or exchange.query:
            return
        if sum(1 for e in watched.exchanges if e.method == method and e.status == 200 and not e.query) >= KILL_AFTER:
            died.append(True)
            watched.outage(OUTAGE_SECONDS)

    with (
        S3Proxy(rclone_source.endpoint_url, on_response=watch) as source_proxy,
        S3Proxy(moto.endpoint_url, on_response=watch) as destination_proxy,
    ):
        migration = make_migration(database_url, rclone_source, moto)
        bulk = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=BULK_ROWS)
        variables = migration.environment()
        variables.update(
            SOURCE_S3_ENDPOINT=source_proxy.endpoint_url,
            DESTINATION_S3_ENDPOINT=destination_proxy.endpoint_url,
            SYNC_PARTITION_ROWS="100000",
            SYNC_BATCH_OBJECTS="150",
            SYNC_CONCURRENCY="4",
        )
        environment(variables)
        expected = expected_media(migration, "media_attachments", bulk)

        [first] = sync_once("media_attachments")
        assert died and (source_proxy.outages or destination_proxy.outages), "the server never went down"
        assert first.failed or first.succeeded
        finished = migration.destination_keys()
        before_second = len(destination_proxy.exchanges)
        [second] = sync_once("media_attachments")

        assert not second.failed
        put_second = destination_proxy.completed_puts(before_second)
        assert not finished & set(put_second), "objects finished before the second sync are not copied again"
        every_put = destination_proxy.completed_puts()
        assert set(every_put) == set(expected)
        assert first.copied + second.copied <= len(set(every_put)), "nothing counted copied that was not"
        assert second.copied == len(set(put_second))
        assert first.copied + first.skipped == (len(expected) if first.succeeded else 0)
        assert second.copied + second.skipped == (len(expected) if not first.succeeded else 0)
        assert_destination_exact(dataclasses.replace(migration, destination=moto), expected, acls=True)


def answering(error: tuple[int, str, str]):
    return S3Proxy("http://127.0.0.1:9", error_answer=error)  # never forwards: the answer is the error


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (
            (403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."),
            "the clock of this machine differs from the server's by more than 15 minutes",
        ),
        ((400, "ExpiredToken", "The provided token has expired."), "have expired"),
    ],
    ids=["skewed-clock", "expired-token"],
)
def test_refused_signatures_are_one_line_naming_cause_and_variables(
    error, cause, database_url, rclone_source, rclone_destination, tmp_path
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    with answering(error) as proxy:
        variables = {**migration.environment(), "SOURCE_S3_ENDPOINT": proxy.endpoint_url}
        result = run_cli(
            "sync", "custom_emojis", environment=variables, cwd=tmp_path, dagster_home=tmp_path / "dagster_home"
        )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: SOURCE_AWS_ACCESS_KEY_ID / SOURCE_AWS_SECRET_ACCESS_KEY: "), line
    assert cause in line and error[1] in line, line
    assert migration.source.secret_key not in result.stderr


def test_skewed_clock_against_a_real_server(rclone_source, monkeypatch):
    """The signer's clock an hour off reaches the wire and is refused in one line naming the variables.
    rclone answers a skewed request with AccessDenied, so the cause is named only for servers
    that say RequestTimeTooSkewed (AWS, MinIO...: the proxy test above)."""
    bucket = unique_bucket("skew")
    rclone_source.create_bucket(bucket)
    source = SourceBucket(
        bucket, rclone_source.endpoint_url, rclone_source.region, rclone_source.access_key, rclone_source.secret_key
    )
    source.check_access()
    real_clock = sigv4.clock
    monkeypatch.setattr(sigv4, "clock", lambda: real_clock() - 3600)
    with pytest.raises(ConfigError) as refused:
        source.check_access()
    message = str(refused.value)
    assert message.startswith("SOURCE_AWS_ACCESS_KEY_ID / SOURCE_AWS_SECRET_ACCESS_KEY: ") and "\n" not in message
    if "RequestTimeTooSkewed" in message:
        assert "the clock of this machine differs from the server's by more than 15 minutes" in message


def test_invalid_session_token_says_the_credentials_expired(rclone_source):
    with answering((400, "InvalidToken", "The provided token is malformed or otherwise invalid.")) as proxy:
        source = SourceBucket("media", proxy.endpoint_url, "us-east-1", "AKIDEXAMPLE", "secret", "a-session-token")
        with pytest.raises(ConfigError, match=r"^SOURCE_AWS_ACCESS_KEY_ID / SOURCE_AWS_SECRET_ACCESS_KEY: .*expired"):
            source.check_access()


# TLS ------------------------------------------------------------------------------------------


def self_signed(tmp_path) -> tuple[ssl.SSLContext, str]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and the PEM file of it."""
    certificate, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context, str(certificate)


def test_self_signed_endpoint_is_refused_without_ca_bundle_and_works_with_it(
    database_url, rclone_source, moto, sync_once, environment, tmp_path
):
    server_context, ca_file = self_signed(tmp_path)
    with S3Proxy(rclone_source.endpoint_url, tls=server_context) as proxy:
        assert proxy.endpoint_url.startswith("https://")
        migration = make_migration(database_url, rclone_source, moto)
        variables = {**migration.environment(), "SOURCE_S3_ENDPOINT": proxy.endpoint_url}

        refused = run_cli(
            "sync", "custom_emojis", environment=variables, cwd=tmp_path, dagster_home=tmp_path / "dagster_home"
        )
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert "SOURCE_S3_ENDPOINT: the TLS certificate of https://127.0.0.1" in line
        assert "is not trusted" in line and "SOURCE_S3_CA_BUNDLE" in line
        assert proxy.exchanges == [], "no request went out over the untrusted connection"

        environment({**variables, "SOURCE_S3_CA_BUNDLE": ca_file})
        [result] = sync_once("custom_emojis")
        assert not result.failed
        expected = expected_media(migration, "custom_emojis")
        assert result.copied == len(expected)
        assert_destination_exact(migration, expected, acls=True)
        assert proxy.exchanges, "the copy went through the TLS endpoint"


def test_ca_bundle_that_is_not_a_file_names_the_variable(tmp_path):
    source = SourceBucket("media", "https://127.0.0.1:1", None, "AKID", "secret", verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"^SOURCE_S3_CA_BUNDLE: .*missing\.pem is not a readable file"):
        source.engine_bucket()
