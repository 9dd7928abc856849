"""The source and destination buckets: endpoint, credentials, bucket, key prefix, ACL.

The fields are named as in dagster-aws's ``S3Resource``, but the class is not
one: importing dagster-aws costs every Dagster process about 0.8 s (its
package imports all its components), and ``S3Resource`` builds a boto3 client
for every step that has the resource, about 0.2 s each, which copy steps
never use (they run the transfer engine). boto3 is imported only where a
check needs it.
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from mastodon_s3_sync.config import ConfigError
from mastodon_s3_sync.mastodon.layout import normalize_key_prefix, with_key_prefix
from mastodon_s3_sync.transfer.engine import NETWORK_ERRORS, TransferSettings, open_clients, run_async
from mastodon_s3_sync.transfer.s3 import Bucket, S3Error

ACCESS_ERROR_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})

DEFAULT_PERMISSION = "public-read"
CANNED_ACLS = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
    }
)


class MediaBucket(ConfigurableResource):
    """A bucket holding Mastodon media under an optional key prefix."""

    bucket: str = Field(description="<SIDE>_S3_BUCKET")
    endpoint_url: str | None = Field(default=None, description="<SIDE>_S3_ENDPOINT; empty for AWS S3")
    region_name: str | None = Field(default=None, description="<SIDE>_S3_REGION (default us-east-1)")
    aws_access_key_id: str | None = Field(default=None, description="<SIDE>_AWS_ACCESS_KEY_ID")
    aws_secret_access_key: str | None = Field(default=None, description="<SIDE>_AWS_SECRET_ACCESS_KEY")
    aws_session_token: str | None = Field(default=None, description="Temporary credentials' session token")
    profile_name: str | None = Field(
        default=None, description="An AWS profile, used when no keys are given (else boto3's credential chain)"
    )
    max_attempts: int = Field(default=5, description="Tries per request of the boto3 client used by checks")
    key_prefix: str = Field(default="", description="<SIDE>_S3_KEY_PREFIX (Mastodon's S3_KEY_PREFIX)")
    path_style: bool | None = Field(
        default=None, description="Path-style addressing; defaults to on for custom endpoints"
    )
    variable_prefix: str = Field(default="SOURCE", description="Whose variables these are, for error messages")

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
                    f"{self.variable_prefix}_AWS_ACCESS_KEY_ID and {self.variable_prefix}_AWS_SECRET_ACCESS_KEY "
                    "are not set and no other AWS credentials were found"
                )
            frozen = credentials.get_frozen_credentials()
            access_key, secret_key, token = frozen.access_key, frozen.secret_key, frozen.token
        return Bucket(
            name=self.bucket,
            endpoint_url=self.endpoint_url or None,
            region=self.region_name or "us-east-1",
            access_key_id=access_key,
            secret_access_key=secret_key,
            session_token=token,
            path_style=self.path_style,
        )

    def explain(self, error: BaseException) -> str:
        """One line naming the variable behind a failed bucket request."""
        side, where = self.variable_prefix, f"{self.endpoint_url or 'AWS S3'}"
        if isinstance(error, S3Error):
            if error.status in (401, 403) or error.code in ACCESS_ERROR_CODES:
                return (
                    f"{side}_AWS_ACCESS_KEY_ID / {side}_AWS_SECRET_ACCESS_KEY: bucket {self.bucket!r} at {where} "
                    f"refuses these credentials ({error.code})"
                )
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
                await client.list_page(self.normalized_prefix, None, None, max_keys=1)

        try:
            run_async(list_one())
        except (S3Error, *NETWORK_ERRORS) as error:
            raise ConfigError(self.explain(error)) from None

    def full_key(self, key: str) -> str:
        return with_key_prefix(self.key_prefix, key)

    @property
    def normalized_prefix(self) -> str:
        return normalize_key_prefix(self.key_prefix)

    def boto_client(self):
        """A boto3 client with checksums only where required, which non-AWS providers need."""
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.client(
            "s3",
            region_name=self.region_name or "us-east-1",
            endpoint_url=self.endpoint_url or None,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=BotoConfig(
                s3={"addressing_style": "path" if self.engine_bucket().uses_path_style else "virtual"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": self.max_attempts, "mode": "adaptive"},
            ),
        )


class SourceBucket(MediaBucket):
    """Read only: the sync never writes to or deletes from it."""


class DestinationBucket(MediaBucket):
    permission: str = Field(
        default=DEFAULT_PERMISSION,
        description="DESTINATION_S3_PERMISSION: canned ACL for public media; empty sends no ACL (R2, ACLs disabled)",
    )
    storage_class: str | None = Field(default=None, description="DESTINATION_S3_STORAGE_CLASS")
    variable_prefix: str = "DESTINATION"

    def acl_permission(self) -> str | None:
        permission = self.permission.strip()
        if permission and permission not in CANNED_ACLS:
            raise ConfigError(
                f"DESTINATION_S3_PERMISSION must be empty or a canned ACL ({', '.join(sorted(CANNED_ACLS))}), "
                f"not {permission!r}"
            )
        return permission or None


def check_distinct(source: SourceBucket, destination: DestinationBucket) -> None:
    """Refuse a destination that is the source itself: copying onto it would overwrite source objects."""
    same_place = (source.endpoint_url or "", source.bucket) == (destination.endpoint_url or "", destination.bucket)
    if same_place and source.normalized_prefix == destination.normalized_prefix:
        raise ConfigError(
            "DESTINATION_S3_BUCKET: the destination is the source bucket with the same key prefix; "
            "set a different bucket or DESTINATION_S3_KEY_PREFIX"
        )
