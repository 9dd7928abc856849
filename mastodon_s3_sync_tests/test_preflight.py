"""``mastodon-s3-sync check`` against the servers the tests run: what each really does for Mastodon.

- moto keeps ACLs: a public-read object is readable anonymously with its headers, a private one
  is refused (403), and moto lets anyone list a bucket (200 with a ListBucketResult): that line fails.
- rclone's server keeps no ACLs (the block says ``S3_PERMISSION=``) and answers every unsigned
  request 400 UnsupportedAlgorithm: no public read, so that line fails with its fix.
- a read-only credential: see ``test_a_read_only_credential_fails_the_write_probe``.
"""

from __future__ import annotations

import re

from mastodon_s3_sync.cli.main import EXIT_CONFIG, main
from mastodon_s3_sync.core.preflight import PROBE_DIRECTORY
from mastodon_s3_sync_tests.support.migration import unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

PROBE = r"media/\.mastodon-s3-sync-check-[0-9a-f]{12}"


def run_check(environment, capsys, server, bucket: str, permission: str, **extra: str) -> tuple[int, list[str], str]:
    environment(
        {
            "DESTINATION_S3_BUCKET": bucket,
            "DESTINATION_S3_ENDPOINT": server.endpoint_url,
            "DESTINATION_S3_REGION": server.region,
            "DESTINATION_AWS_ACCESS_KEY_ID": server.access_key,
            "DESTINATION_AWS_SECRET_ACCESS_KEY": server.secret_key,
            "DESTINATION_S3_PERMISSION": permission,
            "DESTINATION_S3_KEY_PREFIX": "media",
            **extra,
        }
    )
    code = main(["check"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    return code, lines, out.partition("in the instance's .env.production:\n\n")[2]


def block(endpoint: str, bucket: str, permission: str) -> str:
    host = endpoint.removeprefix("http://")
    return (
        f"S3_ENABLED=true\nS3_BUCKET={bucket}\nS3_ENDPOINT={endpoint}\nS3_REGION=us-east-1\n"
        f"S3_PERMISSION={permission}\n"
        "# S3_ALIAS_HOST=<a CDN or proxy host>: unset, media URLs name the bucket (see `plan`)\n"
        f"S3_KEY_PREFIX=media\nS3_PROTOCOL=http\nS3_HOSTNAME={host}\n"
        "AWS_ACCESS_KEY_ID=<DESTINATION_AWS_ACCESS_KEY_ID>\nAWS_SECRET_ACCESS_KEY=<DESTINATION_AWS_SECRET_ACCESS_KEY>\n"
    )


def assert_lines(lines: list[str], expected: list[str]) -> None:
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def leftover_probes(server, bucket: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed if PROBE_DIRECTORY in item["Key"]]


def test_moto_keeps_acls_serves_public_refuses_private_but_lists(environment, capsys, moto):
    bucket = unique_bucket("check")
    moto.create_bucket(bucket)
    code, lines, env_block = run_check(environment, capsys, moto, bucket, "public-read")
    url = re.escape(f"{moto.endpoint_url}/{bucket}/")
    assert_lines(
        lines,
        [
            rf"PASS write a probe object: {PROBE}/public\.png written \(ACL public-read\)",
            r"PASS read it back: 37 bytes, as written",
            r"PASS object ACLs: the destination keeps ACLs \(GetBucketAcl answers an AccessControlPolicy\), "
            r"so S3_PERMISSION=public-read",
            rf"PASS anonymous read of a public-read object: 200 at {url}{PROBE}/public\.png",
            r"PASS Content-Type and Cache-Control served as stored: Content-Type: image/png, "
            r"Cache-Control: public, max-age=315576000, immutable",
            rf"PASS anonymous read of a private object refused: refused: 403 at {url}{PROBE}/private\.png",
            rf"FAIL anonymous listing refused: 200 with a listing at {url}\?list-type=2&max-keys=1&prefix=media/: "
            r"remove the s3:ListBucket grant to everyone .*",
            r"PASS delete the probe objects: 2 deleted",
        ],
    )
    assert env_block.startswith(block(moto.endpoint_url, bucket, "public-read"))
    assert code == EXIT_CONFIG, "moto lists the bucket to anyone"
    assert leftover_probes(moto, bucket) == []


def test_moto_with_no_acl_configured_says_which_permission(environment, capsys, moto):
    bucket = unique_bucket("check")
    moto.create_bucket(bucket)
    code, lines, env_block = run_check(environment, capsys, moto, bucket, "")
    assert lines[2] == (
        "FAIL object ACLs: the destination keeps ACLs (GetBucketAcl answers an AccessControlPolicy), so "
        "S3_PERMISSION=public-read, but DESTINATION_S3_PERMISSION=: set DESTINATION_S3_PERMISSION=public-read: "
        "with no ACL sent, every object would be private and no media would show"
    )
    assert "\nS3_PERMISSION=public-read\n" in env_block, "the block says what the instance needs"
    assert code == EXIT_CONFIG


def test_rclone_keeps_no_acls_and_serves_nothing_anonymously(environment, capsys, rclone_destination):
    server = rclone_destination
    bucket = unique_bucket("check")
    server.create_bucket(bucket)
    code, lines, env_block = run_check(environment, capsys, server, bucket, "")
    url = re.escape(f"{server.endpoint_url}/{bucket}/")
    assert_lines(
        lines,
        [
            rf"PASS write a probe object: {PROBE}/public\.png written \(no ACL sent\)",
            r"PASS read it back: 37 bytes, as written",
            r"PASS object ACLs: the destination keeps no ACLs \(GetBucketAcl answers no AccessControlPolicy "
            r"\(the server ignores ACLs\)\), so S3_PERMISSION=",
            rf"FAIL anonymous read of a public-read object: 400 UnsupportedAlgorithm at {url}{PROBE}/public\.png: "
            r"make the bucket's objects public \(B2: bucket type allPublic; R2: public access or a custom domain\) "
            r"or put a CDN that can read the bucket in front and set S3_ALIAS_HOST \(here DESTINATION_S3_ALIAS_HOST\) "
            r"to it",
            r"SKIP Content-Type and Cache-Control served as stored: the public probe could not be read anonymously",
            r"SKIP anonymous read of a private object refused: the destination keeps no ACLs: every object is as "
            r"public as the bucket \(media of suspended accounts and backups included\)",
            rf"PASS anonymous listing refused: refused: 400 UnsupportedAlgorithm at {url}\?list-type=2&max-keys=1"
            r"&prefix=media/",
            r"PASS delete the probe objects: 1 deleted",
        ],
    )
    assert env_block.startswith(block(server.endpoint_url, bucket, ""))
    assert code == EXIT_CONFIG
    assert leftover_probes(server, bucket) == []


def test_an_alias_host_is_where_the_anonymous_reads_go(environment, capsys, moto):
    """A proxy stands for the CDN: the public probe is read through it, and the block names it."""
    bucket = unique_bucket("check")
    moto.create_bucket(bucket)
    with S3Proxy(f"{moto.endpoint_url}/{bucket}") as cdn:
        code, lines, env_block = run_check(
            environment, capsys, moto, bucket, "public-read", DESTINATION_S3_ALIAS_HOST=cdn.endpoint_url
        )
        fetched = [(e.method, e.path, e.status) for e in cdn.exchanges]
    host = cdn.endpoint_url.removeprefix("http://")
    assert re.fullmatch(
        rf"PASS anonymous read of a public-read object: 200 at http://{host}/{PROBE}/public\.png", lines[3]
    )
    assert [(method, status) for method, _, status in fetched] == [("GET", 200), ("GET", 403), ("GET", 200)]
    assert f"\nS3_ALIAS_HOST={host}\n" in env_block and "\nS3_PROTOCOL=http\n" in env_block
    assert code == EXIT_CONFIG, "moto still lists the bucket through the alias"


def test_a_read_only_credential_fails_the_write_probe(environment, capsys, moto):
    """A read-only key, as a proxy answers for it: every PUT and DELETE gets 403 AccessDenied, reads
    are forwarded to moto. (moto's server enforces IAM policies only with INITIAL_NO_AUTH_ACTION_COUNT
    set when it starts, which counts every request from then on, readiness probes included: the
    shared server cannot have it, so the proxy plays the policy.)"""
    bucket = unique_bucket("check")
    moto.create_bucket(bucket)

    def read_only(method: str, path: str, query: str):
        return (403, "AccessDenied", "Access Denied") if method in ("PUT", "DELETE", "POST") else None

    with S3Proxy(moto.endpoint_url, intercept=read_only) as proxy:
        code, lines, _ = run_check(
            environment, capsys, moto, bucket, "public-read", DESTINATION_S3_ENDPOINT=proxy.endpoint_url
        )
    assert lines[0].startswith("FAIL write a probe object: PUT media/.mastodon-s3-sync-check-")
    assert lines[0].endswith(
        "/public.png answered 403 AccessDenied: give DESTINATION_AWS_ACCESS_KEY_ID write access to bucket "
        f"'{bucket}' (s3:PutObject, s3:PutObjectAcl, s3:DeleteObject): the sync and Mastodon write there"
    )
    assert lines[1] == "SKIP read it back: no probe object was written"
    assert lines[2].startswith("PASS object ACLs: the destination keeps ACLs")
    assert lines[3] == "SKIP anonymous read of a public-read object: no probe object was written"
    assert lines[-1] == "SKIP delete the probe objects: no probe object was written"
    assert code == EXIT_CONFIG
    assert leftover_probes(moto, bucket) == []
