"""``mastodon-s3-sync check``: the destination tried as Mastodon will use it, before anything is copied.

Each check is one function returning a ``CheckResult`` (pass, fail with the fix, or skip with
the reason); ``run_preflight`` runs them in order and ``env_block`` writes the
``.env.production`` lines for the cut-over. The probe objects live under the destination's key
prefix, in a directory whose leading dot no Mastodon key has, and are deleted at the end.

Anonymous requests go to the URL Mastodon will link to (``public_urls.MediaHome``): the
destination's ``S3_ALIAS_HOST`` when set, else the bucket at its endpoint, as a browser would
fetch it.
"""

from __future__ import annotations

import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import AclSupport, probe_acl_support
from mastodon_s3_sync.core.buckets import DestinationBucket
from mastodon_s3_sync.core.errors import AclProbeFailed
from mastodon_s3_sync.core.mastodon.layout import CACHE_CONTROL, with_key_prefix
from mastodon_s3_sync.core.public_urls import MediaHome
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS
from mastodon_s3_sync.core.transfer.s3 import S3Client, S3Error

PROBE_DIRECTORY = ".mastodon-s3-sync-check-"
"""No Mastodon key starts with a dot (they start with a class name or ``cache/``)."""
PROBE_TYPE = "image/png"
PROBE_BODY = b"\x89PNG\r\n\x1a\n mastodon-s3-sync check probe"
ANONYMOUS_TIMEOUT = 15.0

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}" + (f": {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Probe:
    key: str
    acl: str | None
    """The canned ACL it was written with (None: none sent)."""
    written: bool = False


@dataclass
class Preflight:
    results: list[CheckResult] = field(default_factory=list)
    required_permission: str | None = None
    """The ``S3_PERMISSION`` the instance must set: ``""`` (no ACLs) or ``public-read``; None if unknown."""

    @property
    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if result.status == FAIL]


@dataclass(frozen=True)
class Anonymous:
    """An unsigned GET as a browser sends it: the status, the headers (lower-cased) and the body,
    or the reason it got no answer."""

    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    unreachable: str | None = None

    @property
    def answered(self) -> str:
        """``403 AccessDenied at <url>``: the status and the S3 error code, if the body names one."""
        if self.unreachable:
            return self.unreachable
        code = self.body.partition(b"<Code>")[2].partition(b"</Code>")[0].decode(errors="replace")
        return f"{self.status}{f' {code}' if code else ''} at {self.url}"


def anonymous_get(url: str, ca_bundle: str | None = None) -> Anonymous:
    context = ssl.create_default_context(cafile=ca_bundle) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=ANONYMOUS_TIMEOUT, context=context) as response:
            return Anonymous(url, response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Anonymous(url, error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Anonymous(url, unreachable=f"{url} cannot be reached from here ({reason})")


# The checks -------------------------------------------------------------------------------------


async def check_write(client: S3Client, bucket: DestinationBucket, probe: Probe) -> tuple[CheckResult, Probe]:
    name = "write a probe object"
    headers = {"Content-Type": PROBE_TYPE, "Cache-Control": CACHE_CONTROL}
    if probe.acl:
        headers["x-amz-acl"] = probe.acl
    try:
        await client.put(probe.key, PROBE_BODY, headers)
    except (S3Error, *NETWORK_ERRORS) as error:
        fix = (
            f"give DESTINATION_AWS_ACCESS_KEY_ID write access to bucket {bucket.bucket!r} (s3:PutObject, "
            "s3:PutObjectAcl, s3:DeleteObject): the sync and Mastodon write there"
            if isinstance(error, S3Error) and error.status in (401, 403)
            else bucket.explain(error)
        )
        return CheckResult(name, FAIL, f"PUT {probe.key} answered {_said(error)}", fix), probe
    return CheckResult(name, PASS, f"{probe.key} written ({_acl_words(probe.acl)})"), Probe(probe.key, probe.acl, True)


async def check_read(client: S3Client, probe: Probe) -> CheckResult:
    name = "read it back"
    if not probe.written:
        return CheckResult(name, SKIP, "no probe object was written")
    try:
        async with client.get(probe.key) as response:
            body = await response.read() if response is not None else None
    except (S3Error, *NETWORK_ERRORS) as error:
        return CheckResult(name, FAIL, f"GET {probe.key} answered {_said(error)}", "allow s3:GetObject")
    if body is None:
        return CheckResult(name, FAIL, f"{probe.key} is not there after its PUT", "the server lost a written object")
    if body != PROBE_BODY:
        return CheckResult(name, FAIL, f"{probe.key} came back with other bytes", "the server altered the object")
    return CheckResult(name, PASS, f"{len(body)} bytes, as written")


async def check_acls(client: S3Client, configured: str | None) -> tuple[CheckResult, AclSupport | None]:
    """Whether the destination keeps ACLs (``probe_acl_support``, the one place that decides it),
    so which ``S3_PERMISSION`` the instance needs, against ``DESTINATION_S3_PERMISSION``."""
    name = "object ACLs"
    try:
        support = await probe_acl_support(client)
    except AclProbeFailed as error:
        return CheckResult(name, FAIL, str(error), "S3_PERMISSION cannot be chosen until this answers"), None
    needed = providers.DEFAULT_PERMISSION if support.keeps_acls else ""
    kept = "keeps ACLs" if support.keeps_acls else "keeps no ACLs"
    detail = f"the destination {kept} ({support.reason}), so S3_PERMISSION={needed}"
    if (configured or "") == needed:
        return CheckResult(name, PASS, detail), support
    if support.keeps_acls:
        fix = (
            "set DESTINATION_S3_PERMISSION=public-read: with no ACL sent, every object would be private "
            "and no media would show"
        )
    else:
        fix = "set DESTINATION_S3_PERMISSION= (empty): this server takes no ACLs (Mastodon's docs say so for R2 and B2)"
    return CheckResult(name, FAIL, f"{detail}, but DESTINATION_S3_PERMISSION={configured or ''}", fix), support


def check_public_read(probe: Probe, home: MediaHome, ca_bundle: str | None) -> tuple[CheckResult, Anonymous | None]:
    name = "anonymous read of a public-read object"
    if not probe.written:
        return CheckResult(name, SKIP, "no probe object was written"), None
    answer = anonymous_get(_url(home, probe.key), ca_bundle)
    if answer.unreachable:
        return CheckResult(
            name, SKIP, answer.unreachable, "check that URL from a browser once its DNS and TLS are set up"
        ), None
    if answer.status == 200 and answer.body == PROBE_BODY:
        return CheckResult(name, PASS, f"200 at {answer.url}"), answer
    if answer.status == 200:
        return CheckResult(
            name, FAIL, f"200 at {answer.url} but other bytes", "S3_ALIAS_HOST serves another bucket or prefix"
        ), None
    fix = (
        "make the bucket's objects public (B2: bucket type allPublic; R2: public access or a custom domain) "
        "or put a CDN that can read the bucket in front and set S3_ALIAS_HOST (here DESTINATION_S3_ALIAS_HOST) to it"
    )
    return CheckResult(name, FAIL, answer.answered, fix), None


def check_served_headers(answer: Anonymous | None) -> CheckResult:
    name = "Content-Type and Cache-Control served as stored"
    if answer is None:
        return CheckResult(name, SKIP, "the public probe could not be read anonymously")
    served = (answer.headers.get("content-type"), answer.headers.get("cache-control"))
    if served == (PROBE_TYPE, CACHE_CONTROL):
        return CheckResult(name, PASS, f"Content-Type: {PROBE_TYPE}, Cache-Control: {CACHE_CONTROL}")
    return CheckResult(
        name,
        FAIL,
        f"stored {PROBE_TYPE!r} and {CACHE_CONTROL!r}, served {served[0]!r} and {served[1]!r}",
        "make the CDN or proxy in front pass the bucket's Content-Type and Cache-Control through "
        "(browsers refuse media served with the wrong type)",
    )


def check_private_refused(probe: Probe, support: AclSupport | None, home: MediaHome, ca_bundle) -> CheckResult:
    name = "anonymous read of a private object refused"
    if support is None or not support.keeps_acls:
        why = "the ACL check failed" if support is None else "the destination keeps no ACLs"
        return CheckResult(
            name,
            SKIP,
            f"{why}: every object is as public as the bucket (media of suspended accounts and backups included)",
        )
    if not probe.written:
        return CheckResult(name, SKIP, "no private probe object was written")
    answer = anonymous_get(_url(home, probe.key), ca_bundle)
    if answer.unreachable:
        return CheckResult(name, SKIP, answer.unreachable)
    if answer.status == 200:
        return CheckResult(
            name,
            FAIL,
            f"200 at {answer.url}",
            "a bucket policy (or the CDN) makes every object public: remove the public-read grant on the bucket's "
            "objects, so that ACLs decide (media of suspended accounts, backups)",
        )
    return CheckResult(name, PASS, f"refused: {answer.answered}")


def check_listing_refused(home: MediaHome, listing_prefix: str, ca_bundle: str | None) -> CheckResult:
    name = "anonymous listing refused"
    url = home.url_base().removesuffix(listing_prefix) + f"?list-type=2&max-keys=1&prefix={quote(listing_prefix)}"
    answer = anonymous_get(url, ca_bundle)
    if answer.unreachable:
        return CheckResult(name, SKIP, answer.unreachable)
    if answer.status == 200 and b"<ListBucketResult" in answer.body:
        return CheckResult(
            name,
            FAIL,
            f"200 with a listing at {url}",
            "remove the s3:ListBucket grant to everyone (bucket policy or bucket ACL): anyone could enumerate "
            "every file, private ones included",
        )
    return CheckResult(name, PASS, f"refused: {answer.answered}")


async def check_delete(client: S3Client, probes: list[Probe]) -> CheckResult:
    name = "delete the probe objects"
    written = [probe for probe in probes if probe.written]
    if not written:
        return CheckResult(name, SKIP, "no probe object was written")
    try:
        for probe in written:
            await client.delete(probe.key)
        left = [probe.key for probe in written if await client.head(probe.key) is not None]
    except (S3Error, *NETWORK_ERRORS) as error:
        keys = ", ".join(probe.key for probe in written)
        return CheckResult(name, FAIL, f"DELETE answered {_said(error)}; left {keys}", "allow s3:DeleteObject")
    if left:
        return CheckResult(name, FAIL, f"still there after DELETE: {', '.join(left)}", "allow s3:DeleteObject")
    return CheckResult(name, PASS, f"{len(written)} deleted")


# Running them -----------------------------------------------------------------------------------


def run_preflight(bucket: DestinationBucket, home: MediaHome, on_result: Callable[[CheckResult], None]) -> Preflight:
    """Every check in order, each result handed to ``on_result`` as soon as it is known."""
    preflight = Preflight()

    def report(result: CheckResult) -> None:
        preflight.results.append(result)
        on_result(result)

    engine_bucket = bucket.engine_bucket()
    ca_bundle = engine_bucket.ca_bundle
    directory = f"{PROBE_DIRECTORY}{secrets.token_hex(6)}"
    public = Probe(with_key_prefix(bucket.key_prefix, f"{directory}/public.png"), None)
    private = Probe(with_key_prefix(bucket.key_prefix, f"{directory}/private.png"), providers.PRIVATE)

    async def with_client(work):
        async with open_clients(engine_bucket, engine_bucket, TransferSettings(max_in_flight_per_endpoint=2)) as (
            _,
            client,
        ):
            return await work(client)

    async def write_and_read(client: S3Client):
        nonlocal public, private
        acls, support = await check_acls(client, bucket.acl_permission())
        keeps = support is not None and support.keeps_acls
        public = Probe(public.key, providers.DEFAULT_PERMISSION if keeps else None)
        written, public = await check_write(client, bucket, public)
        report(written)
        report(await check_read(client, public))
        report(acls)
        if keeps and public.written:
            _, private = await check_write(client, bucket, private)
        return support

    support = run_async(with_client(write_and_read))
    if support is not None:
        preflight.required_permission = providers.DEFAULT_PERMISSION if support.keeps_acls else ""
    public_read, answer = check_public_read(public, home, ca_bundle)
    report(public_read)
    report(check_served_headers(answer))
    report(check_private_refused(private, support, home, ca_bundle))
    report(check_listing_refused(home, bucket.listing_prefix, ca_bundle))

    async def delete(client: S3Client) -> CheckResult:
        return await check_delete(client, [public, private])

    report(run_async(with_client(delete)))
    return preflight


def env_block(bucket: DestinationBucket, home: MediaHome, permission: str | None) -> str:
    """The ``.env.production`` lines that point Mastodon at the destination (see
    docs/mastodon-storage.md for each variable's meaning and default)."""
    shown = permission if permission is not None else (bucket.acl_permission() or "")
    lines = [
        "S3_ENABLED=true",
        f"S3_BUCKET={bucket.bucket}",
        f"S3_ENDPOINT={bucket.endpoint_url}" if bucket.endpoint_url else "# S3_ENDPOINT: not needed for AWS S3",
        f"S3_REGION={bucket.region_name or providers.DEFAULT_REGION}",
        f"S3_PERMISSION={shown}",
        f"S3_ALIAS_HOST={home.alias}"
        if home.alias
        else "# S3_ALIAS_HOST=<a CDN or proxy host>: unset, media URLs name the bucket (see `plan`)",
        f"S3_KEY_PREFIX={bucket.key_prefix}" if bucket.key_prefix is not None else "# S3_KEY_PREFIX: none",
        f"S3_PROTOCOL={home.protocol}",
        f"S3_HOSTNAME={home.hostname}",
        "AWS_ACCESS_KEY_ID=<DESTINATION_AWS_ACCESS_KEY_ID>",
        "AWS_SECRET_ACCESS_KEY=<DESTINATION_AWS_SECRET_ACCESS_KEY>",
    ]
    if permission is None:
        lines.insert(4, "# S3_PERMISSION: the ACL check did not answer; this is DESTINATION_S3_PERMISSION")
    return "\n".join(lines)


def _url(home: MediaHome, full_key: str) -> str:
    """The anonymous URL of a full bucket key (the key prefix is part of ``home.url_base()``)."""
    base = home.url_base().removesuffix(with_key_prefix(home.key_prefix, ""))
    return base + quote(full_key)


def _said(error: BaseException) -> str:
    return f"{error.status} {error.code}" if isinstance(error, S3Error) else f"{type(error).__name__}: {error}"


def _acl_words(acl: str | None) -> str:
    return f"ACL {acl}" if acl else "no ACL sent"
