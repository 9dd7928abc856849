"""The ACL probe: only a definite answer means "no ACLs"; a 5xx is retried, then fails the run.

Against real servers behind ``S3Proxy``: moto keeps ACLs, rclone's server ignores ``?acl``
(GetBucketAcl answers a listing), and the proxy answers chosen GetBucketAcl requests with 503
SlowDown, 500 or 501 NotImplemented as a provider would.
"""

from __future__ import annotations

import dataclasses

import pytest

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import probe_acl_support
from mastodon_s3_sync.core.errors import AclProbeDenied, AclProbeFailed, AclProbeUnanswered
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync_tests.support.migration import unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy


@pytest.mark.parametrize(
    ("endpoint", "provider"),
    [
        ("https://0123abcd.r2.cloudflarestorage.com", "Cloudflare R2"),
        ("https://0123abcd.eu.r2.cloudflarestorage.com/", "Cloudflare R2"),
        ("https://s3.eu-central-003.backblazeb2.com", "Backblaze B2"),
        ("https://s3.eu-west-1.wasabisys.com", None),
        ("https://minio.example.org", None),
        ("https://r2.cloudflarestorage.com.evil.example", None),
        (None, None),
    ],
)
def test_providers_known_to_keep_no_acls(endpoint, provider):
    assert providers.provider_without_acls(endpoint) == provider


def probe(server, bucket: str, *, fail_first: int = 0, answer=(503, "SlowDown", "Please reduce your request rate.")):
    """Probe ``bucket`` through a proxy that answers the first ``fail_first`` GetBucketAcl with ``answer``;
    the probe's result (or exception) and the GetBucketAcl requests seen."""
    seen: list[str] = []

    def intercept(method: str, path: str, query: str):
        if method == "GET" and query == "acl=":
            seen.append(query)
            if len(seen) <= fail_first:
                return answer
        return None

    with S3Proxy(server.endpoint_url, intercept=intercept) as proxy:
        target = Bucket(bucket, proxy.endpoint_url, server.region, server.access_key, server.secret_key)

        async def run():
            async with open_clients(target, target, TransferSettings()) as (_, client):
                return await probe_acl_support(client, max_attempts=3, max_throttled=3)

        try:
            return run_async(run()), len(seen)
        except AclProbeFailed as error:
            return error, len(seen)


@pytest.fixture
def moto_bucket(moto):
    name = unique_bucket("acl-probe")
    moto.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def rclone_bucket(rclone_destination):
    name = unique_bucket("acl-probe")
    rclone_destination.client().create_bucket(Bucket=name)
    return name


def test_a_server_that_keeps_acls_says_so(moto, moto_bucket):
    support, requests = probe(moto, moto_bucket)
    assert support.keeps_acls and requests == 1


def test_rclone_ignoring_acl_is_a_definite_no(rclone_destination, rclone_bucket):
    support, requests = probe(rclone_destination, rclone_bucket)
    assert not support.keeps_acls and requests == 1
    assert "no AccessControlPolicy" in support.reason


def test_a_passing_503_is_retried_not_read_as_no_acls(moto, moto_bucket):
    """The bug of issue 18: one SlowDown made the refresh set nothing and record itself done."""
    support, requests = probe(moto, moto_bucket, fail_first=2)
    assert support.keeps_acls and requests == 3


@pytest.mark.parametrize(
    "answer", [(503, "SlowDown", "Please reduce your request rate."), (500, "InternalError", "We hit a snag.")]
)
def test_a_lasting_5xx_fails_instead_of_answering(moto, moto_bucket, answer):
    error, requests = probe(moto, moto_bucket, fail_first=100, answer=answer)
    assert isinstance(error, AclProbeUnanswered), "a retry may get an answer"
    assert f"GetBucketAcl answered {answer[0]} {answer[1]}" in str(error)
    assert requests == 3


def test_not_implemented_is_a_definite_no(moto, moto_bucket):
    support, requests = probe(moto, moto_bucket, fail_first=1, answer=(501, "NotImplemented", "ACLs are not supported"))
    assert not support.keeps_acls and requests == 1


def test_access_denied_is_no_answer(moto, moto_bucket):
    error, _ = probe(moto, moto_bucket, fail_first=1, answer=(403, "AccessDenied", "Access Denied"))
    assert isinstance(error, AclProbeDenied) and "s3:GetBucketAcl" in str(error), "no retry grants the permission"


def test_a_known_provider_is_not_asked(moto, moto_bucket):
    r2 = dataclasses.replace(moto, endpoint_url="https://acct.r2.cloudflarestorage.com")
    bucket = Bucket(moto_bucket, r2.endpoint_url, "auto", moto.access_key, moto.secret_key)

    async def run():
        async with open_clients(bucket, bucket, TransferSettings()) as (_, client):
            return await probe_acl_support(client)

    support = run_async(run())
    assert not support.keeps_acls and support.reason == "Cloudflare R2 keeps no object ACLs"
