"""Where the world fetches an instance's media, before and after a move: pure functions, no I/O.

Mastodon writes a media file's URL into every post it federates; other servers keep that URL
forever. So a move keeps links working only where the URL stays the same, or where the old
URL redirects to the new place. Mastodon builds URLs as (``config/initializers/paperclip.rb``
and kt-paperclip's ``lib/paperclip/storage/s3.rb``, see docs/mastodon-storage.md):

- on disk: ``PAPERCLIP_ROOT_URL`` (default ``/system``) + ``/[cache/]<class>/...``, on the
  instance's own host (``LOCAL_DOMAIN``, or ``WEB_DOMAIN``);
- with ``S3_ALIAS_HOST``: ``<S3_PROTOCOL>://<S3_ALIAS_HOST>/<key>``;
- otherwise: ``<S3_PROTOCOL>://<S3_HOSTNAME>/<S3_BUCKET>/<key>`` (``:s3_path_url``; with a
  custom ``S3_ENDPOINT``, ``S3_HOSTNAME`` must name that endpoint's host);

where ``<key>`` carries ``S3_KEY_PREFIX`` (``layout.with_key_prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.mastodon.layout import with_key_prefix

DISK = "disk"
S3 = "s3"
DEFAULT_ROOT_URL = "/system"
"""Mastodon's ``PAPERCLIP_ROOT_URL`` default: disk media is served at ``https://<domain>/system/...``."""


@dataclass(frozen=True)
class MediaHome:
    """Where one side keeps its media, as far as URLs are concerned."""

    kind: str
    """``DISK`` or ``S3``."""
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    key_prefix: str | None = None
    alias_host: str | None = None
    """``S3_ALIAS_HOST``: a host name (Mastodon's form) or a URL whose scheme gives ``S3_PROTOCOL``."""
    web_domain: str | None = None
    """Disk only: the instance's host (``WEB_DOMAIN`` or ``LOCAL_DOMAIN``); None when not known."""
    root_url: str = DEFAULT_ROOT_URL
    """Disk only: ``PAPERCLIP_ROOT_URL``."""

    @classmethod
    def of_bucket(cls, bucket, alias_host: str | None) -> MediaHome:
        """A ``core.buckets.MediaBucket``'s home, served at ``alias_host`` when one is given."""
        return cls(S3, bucket.bucket, bucket.endpoint_url, bucket.region_name, bucket.key_prefix, alias_host or None)

    @property
    def protocol(self) -> str:
        """``S3_PROTOCOL``: the alias URL's scheme if it has one, else the endpoint's, else https."""
        for url in (self.alias_host, self.endpoint_url):
            if url and "://" in url:
                return urlsplit(url).scheme
        return "https"

    @property
    def alias(self) -> str | None:
        """``S3_ALIAS_HOST`` as Mastodon wants it: host (and any path), without a scheme."""
        if not self.alias_host:
            return None
        return self.alias_host.split("://", 1)[-1].rstrip("/")

    @property
    def hostname(self) -> str:
        """``S3_HOSTNAME``: the endpoint's host (and port), or AWS's regional host."""
        if self.endpoint_url:
            return urlsplit(self.endpoint_url).netloc
        return urlsplit(providers.aws_endpoint(self.region or providers.DEFAULT_REGION)).netloc

    def url_base(self) -> str:
        """What every media URL of this side starts with; the layout key follows (``media_url``)."""
        if self.kind == DISK:
            host = f"https://{self.web_domain}" if self.web_domain else "https://<your instance>"
            return f"{host}{self.root_url.rstrip('/')}/"
        if self.alias:
            return f"{self.protocol}://{self.alias}/{with_key_prefix(self.key_prefix, '')}"
        return f"{self.protocol}://{self.hostname}/{self.bucket}/{with_key_prefix(self.key_prefix, '')}"

    def media_url(self, key: str) -> str:
        """The URL Mastodon gives the object at layout ``key`` (``[cache/]<class>/...``)."""
        return self.url_base() + key


@dataclass(frozen=True)
class UrlChange:
    changes: bool
    reason: str
    old_base: str
    new_base: str
    nginx_rule: str | None = None
    """Disk to bucket: the nginx block that sends the old ``/system/...`` URLs to the new place."""


def url_change(source: MediaHome, destination: MediaHome) -> UrlChange:
    """Whether the media URLs change with this move, why, and (disk to bucket) the redirect."""
    old, new = source.url_base(), destination.url_base()
    if source.kind == DISK and destination.kind == S3:
        return UrlChange(
            True,
            "media on disk is served by the instance itself at /system/...; after the move Mastodon links "
            f"to {new}... Posts already federated keep the old URLs: keep them working with the nginx rule below",
            old,
            new,
            nginx_rule(source, destination),
        )
    if source.kind == S3 and destination.kind == DISK:
        return UrlChange(
            True,
            f"after the move the instance serves its media itself at {new}...; posts already federated keep "
            f"{old}... URLs: keep that host answering (a redirect to the instance's /system/) or they break",
            old,
            new,
        )
    if old == new:
        return UrlChange(
            False,
            f"both sides are served at {old}... (the same S3_ALIAS_HOST and key prefix): point that host at "
            "the new bucket at the cut-over and every URL keeps working",
            old,
            new,
        )
    if not source.alias and not destination.alias:
        why = "no S3_ALIAS_HOST on either side: Mastodon's URLs name the bucket's host and the bucket itself"
    elif source.alias != destination.alias:
        why = "the S3_ALIAS_HOST differs between the two sides (or only one side has one)"
    else:
        why = "the key prefix differs between the two sides"
    return UrlChange(
        True,
        f"{why}; posts already federated keep {old}... URLs: keep the old bucket (or that host) serving them, "
        "or serve both through one S3_ALIAS_HOST",
        old,
        new,
    )


def nginx_rule(source: MediaHome, destination: MediaHome) -> str:
    """The block that replaces ``location /system/ { ... try_files $uri =404; }`` in Mastodon's
    dist/nginx.conf (inside ``location / { ... }``): a permanent redirect of every old disk URL to
    the same key at the new place, and, commented out, a proxy that serves them without a redirect."""
    root = source.root_url.rstrip("/")
    target = destination.url_base()
    origin = f"{destination.protocol}://{destination.alias or destination.hostname}"
    proxied = target.removeprefix(origin)
    return "\n".join(
        [
            f"location {root}/ {{",
            f"  rewrite ^{root}/(.*)$ {target}$1 permanent;",
            "}",
            "# or, to serve the old URLs without a redirect (nginx fetches each file from the bucket):",
            f"# location {root}/ {{",
            f"#   proxy_pass {origin}{proxied};",
            f"#   proxy_set_header Host {urlsplit(origin).netloc};",
            "# }",
        ]
    )
