"""The source and destination buckets as the sync sees them: where they are, the
credentials, the key prefix (joined literally, as Mastodon joins it) and, for the
destination, the ACL and storage class. Field names follow dagster-aws's ``S3Resource``.

Either end may be a directory instead (``MediaDirectory``: Mastodon's ``PAPERCLIP_ROOT_PATH``,
set as ``*_PAPERCLIP_ROOT_PATH``), which offers the same calls: no key prefix, no multipart
uploads left behind, and ACLs kept as file modes, as Mastodon's filesystem storage keeps them
(``layout.file_mode``: private media ``0600 & ~umask``, the rest ``0666 & ~umask``).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.mastodon.layout import with_key_prefix
from mastodon_s3_sync.core.public_urls import DISK, MediaHome
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.disk import DiskRoot
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS
from mastodon_s3_sync.core.transfer.s3 import Bucket, PendingUpload, S3Error
from mastodon_s3_sync.core.transfer.uploads import abort_uploads, list_stale_uploads

STALE_UPLOAD_AGE = timedelta(days=1)
"""Multipart uploads unfinished for longer are abandoned copies: most buckets keep (and bill) them forever."""


@dataclass(frozen=True)
class MediaBucket:
    """A bucket holding Mastodon media under an optional key prefix."""

    bucket: str
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    profile_name: str | None = None
    key_prefix: str | None = None
    """Mastodon's ``S3_KEY_PREFIX`` as written: None when unset (``layout.with_key_prefix``)."""
    side: str = "SOURCE"
    """Whose variables these are (``SOURCE`` or ``DESTINATION``), for error messages."""
    verify: bool | str | None = None
    """``*_S3_CA_BUNDLE``: a PEM file of CA certificates for the endpoint's TLS certificate (a
    private CA, a self-signed endpoint). None or True: the system's CAs. As dagster-aws's field
    of the same name, but verification cannot be turned off."""

    def ca_bundle(self) -> str | None:
        """The CA bundle's path, checked to hold certificates; None for the system's CAs."""
        if self.verify is None or self.verify is True:
            return None
        variable = f"{self.side}_S3_CA_BUNDLE"
        if self.verify is False or not str(self.verify).strip():
            raise ConfigError(f"{variable}: TLS certificates are always verified; give a CA bundle (PEM file)")
        path = Path(str(self.verify)).expanduser()
        if not path.is_file():
            raise ConfigError(f"{variable}: {path} is not a readable file")
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, ValueError, OSError) as error:
            raise ConfigError(f"{variable}: {path} holds no usable PEM certificates ({error})") from None
        return str(path)

    def engine_bucket(self) -> Bucket:
        """The bucket as the transfer engine sees it, with credentials resolved.

        Without explicit keys, boto3's credential chain (instance role,
        ~/.aws, AWS_* variables) supplies them.
        """
        access_key, secret_key, token = self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token
        if not (access_key and secret_key):
            import boto3

            credentials = boto3.Session(profile_name=self.profile_name).get_credentials()
            if credentials is None:
                raise ConfigError(
                    f"{self.side}_AWS_ACCESS_KEY_ID and {self.side}_AWS_SECRET_ACCESS_KEY "
                    "are not set and no other AWS credentials were found"
                )
            frozen = credentials.get_frozen_credentials()
            access_key, secret_key, token = frozen.access_key, frozen.secret_key, frozen.token
        return Bucket(
            name=self.bucket,
            endpoint_url=self.endpoint_url or None,
            region=self.region_name or providers.DEFAULT_REGION,
            access_key_id=access_key,
            secret_access_key=secret_key,
            session_token=token,
            ca_bundle=self.ca_bundle(),
        )

    def explain(self, error: BaseException) -> str:
        """One line naming the variable behind a failed bucket request."""
        side, where = self.side, f"{self.endpoint_url or 'AWS S3'}"
        credentials = f"{side}_AWS_ACCESS_KEY_ID / {side}_AWS_SECRET_ACCESS_KEY"
        if isinstance(error, S3Error) and error.code in providers.CLOCK_SKEW_CODES:
            return (
                f"{credentials}: {where} refuses the request signatures because the clock of this machine differs "
                f"from the server's by more than 15 minutes ({error.code}); set this machine's clock right (NTP)"
            )
        if isinstance(error, S3Error) and (
            error.code in providers.EXPIRED_CREDENTIAL_CODES
            or (error.code == "InvalidToken" and (self.aws_session_token or not self.aws_access_key_id))
        ):
            return (
                f"{credentials}: the credentials for bucket {self.bucket!r} at {where} have expired or their "
                f"session token is no longer valid ({error.code}); renew the temporary credentials "
                "(session token) or set long-lived keys"
            )
        if isinstance(error, ssl.SSLCertVerificationError):
            return (
                f"{side}_S3_ENDPOINT: the TLS certificate of {where} is not trusted ({error.verify_message}); "
                f"for a private CA or a self-signed certificate set {side}_S3_CA_BUNDLE to its PEM file"
            )
        if isinstance(error, S3Error):
            if error.status in (401, 403) or error.code in providers.ACCESS_ERROR_CODES:
                return f"{credentials}: bucket {self.bucket!r} at {where} refuses these credentials ({error.code})"
            if error.status == 404 or error.code == "NoSuchBucket":
                return f"{side}_S3_BUCKET: there is no bucket {self.bucket!r} at {where}"
            return f"{side}_S3_ENDPOINT: {where} answered {error}"
        return f"{side}_S3_ENDPOINT: cannot reach {where} ({type(error).__name__}: {error})"

    def check_access(self) -> None:
        """List one key under the prefix; a ``ConfigError`` says what is wrong."""

        async def list_one() -> None:
            settings = TransferSettings(max_in_flight_per_endpoint=1)
            bucket = self.engine_bucket()
            async with open_clients(bucket, bucket, settings) as (client, _):
                await client.list_page(self.listing_prefix, None, None, max_keys=1)

        try:
            run_async(list_one())
        except (S3Error, *NETWORK_ERRORS) as error:
            raise ConfigError(self.explain(error)) from None

    def stale_uploads(self) -> list[PendingUpload]:
        """Unfinished multipart uploads under the prefix older than ``STALE_UPLOAD_AGE``."""
        try:
            return list_stale_uploads(self.engine_bucket(), self.listing_prefix, STALE_UPLOAD_AGE)
        except (S3Error, *NETWORK_ERRORS) as error:
            raise ConfigError(self.explain(error)) from None

    def abort_stale_uploads(self) -> int:
        stale = self.stale_uploads()
        return abort_uploads(self.engine_bucket(), stale) if stale else 0

    def full_key(self, key: str) -> str:
        return with_key_prefix(self.key_prefix, key)

    def media_home(self, alias_host: str | None, web_domain: str | None = None) -> MediaHome:
        """Where its media is served (for ``public_urls.url_change``)."""
        return MediaHome.of_bucket(self, alias_host)

    @property
    def listing_prefix(self) -> str:
        """What every key of this bucket's media starts with."""
        return with_key_prefix(self.key_prefix, "")


@dataclass(frozen=True)
class SourceBucket(MediaBucket):
    """Read only: the sync never writes to or deletes from it."""


@dataclass(frozen=True)
class DestinationBucket(MediaBucket):
    permission: str = providers.DEFAULT_PERMISSION
    """Canned ACL for public media; empty sends no ACL at all (R2, buckets with ACLs disabled)."""
    storage_class: str | None = None
    side: str = "DESTINATION"

    def acl_permission(self) -> str | None:
        permission = self.permission.strip()
        if permission and permission not in providers.CANNED_ACLS:
            raise ConfigError(
                "DESTINATION_S3_PERMISSION must be empty or a canned ACL "
                f"({', '.join(sorted(providers.CANNED_ACLS))}), not {permission!r}"
            )
        return permission or None


@dataclass(frozen=True)
class MediaDirectory:
    """A directory holding Mastodon media as Paperclip's filesystem storage writes it: the key is the
    path under the root (``PAPERCLIP_ROOT_PATH``; no key prefix on disk)."""

    root_path: str
    side: str = "SOURCE"
    key_prefix: None = None

    @property
    def variable(self) -> str:
        return f"{self.side}_PAPERCLIP_ROOT_PATH"

    @property
    def root(self) -> Path:
        return Path(self.root_path).expanduser()

    @property
    def bucket(self) -> str:
        """What names this end in messages (a bucket's name, here the directory)."""
        return str(self.root)

    @property
    def endpoint_url(self) -> str:
        return self.root.absolute().as_uri()

    def engine_bucket(self) -> DiskRoot:
        return DiskRoot(str(self.root))

    def explain(self, error: BaseException) -> str:
        """One line naming the variable behind a failed file operation."""
        return f"{self.variable}: {self.root}: {type(error).__name__}: {error}"

    def check_access(self) -> None:
        """The root is a directory this process can read (and, as a destination, write)."""
        if not self.root.exists():
            raise ConfigError(f"{self.variable}: {self.root} does not exist")
        if not self.root.is_dir():
            raise ConfigError(f"{self.variable}: {self.root} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ConfigError(f"{self.variable}: {self.root} is not readable by this user")

    def stale_uploads(self) -> list[PendingUpload]:
        return []  # a directory keeps no unfinished uploads: parts are temporary files of the copy

    def abort_stale_uploads(self) -> int:
        return 0

    def full_key(self, key: str) -> str:
        return key

    def media_home(self, alias_host: str | None, web_domain: str | None = None) -> MediaHome:
        """Served by the instance itself at ``/system/...`` (``PAPERCLIP_ROOT_URL``)."""
        return MediaHome(DISK, web_domain=web_domain)

    @property
    def listing_prefix(self) -> str:
        return ""


@dataclass(frozen=True)
class SourceDirectory(MediaDirectory):
    """Read only: the sync never writes to or deletes from it."""


@dataclass(frozen=True)
class DestinationDirectory(MediaDirectory):
    side: str = "DESTINATION"
    storage_class: None = None

    def check_access(self) -> None:
        super().check_access()
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"{self.variable}: {self.root} is not writable by this user")

    def acl_permission(self) -> str:
        """Public media are readable by the web server, and what Mastodon makes private
        (``MediaTable.acl_for``) is given its private mode (``layout.file_mode``)."""
        return providers.DEFAULT_PERMISSION


MediaEnd = MediaBucket | MediaDirectory
"""Either kind of end: ``SourceBucket`` or ``SourceDirectory``, ``DestinationBucket`` or ``DestinationDirectory``."""


def check_distinct(source: MediaEnd, destination: MediaEnd) -> None:
    """Refuse a destination that is the source itself: copying onto it would overwrite source objects."""
    if isinstance(source, MediaDirectory) or isinstance(destination, MediaDirectory):
        if isinstance(source, MediaDirectory) and isinstance(destination, MediaDirectory):
            if source.root.resolve() == destination.root.resolve():
                raise ConfigError(
                    "DESTINATION_PAPERCLIP_ROOT_PATH: the destination is the source directory; set another one"
                )
        return
    same_place = (source.endpoint_url or "", source.bucket) == (destination.endpoint_url or "", destination.bucket)
    if same_place and source.listing_prefix == destination.listing_prefix:
        raise ConfigError(
            "DESTINATION_S3_BUCKET: the destination is the source bucket with the same key prefix; "
            "set a different bucket or DESTINATION_S3_KEY_PREFIX"
        )


def media_end(side: str, fields: dict[str, Any]) -> MediaEnd:
    """The ``side``'s (``SOURCE`` or ``DESTINATION``) bucket, or its directory when
    ``*_PAPERCLIP_ROOT_PATH`` is set, from its settings by resource field; a ``ConfigError`` when
    both or neither are set."""
    fields = dict(fields)
    root = fields.pop("paperclip_root_path", None) or None
    bucket = fields.get("bucket") or None
    if root and bucket:
        raise ConfigError(
            f"{side}_S3_BUCKET and {side}_PAPERCLIP_ROOT_PATH are both set: the {side.lower()} is a bucket "
            "or a directory, unset one"
        )
    if root:
        if fields.get("key_prefix") is not None:
            raise ConfigError(f"{side}_S3_KEY_PREFIX: there is no key prefix on disk; unset it")
        return SourceDirectory(root) if side == "SOURCE" else DestinationDirectory(root)
    if not bucket:
        raise ConfigError(
            f"{side}_S3_BUCKET is not set: it names the {side.lower()} bucket "
            f"(or set {side}_PAPERCLIP_ROOT_PATH for a directory)"
        )
    return SourceBucket(**fields) if side == "SOURCE" else DestinationBucket(**fields)
