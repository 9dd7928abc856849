"""Runs' stdout and stderr in a bucket, so that the UI shows the logs of runs that ran on other hosts.

dagster-aws's ``S3ComputeLogManager`` does the work (each host stages a run's output in a local
directory and uploads it, every ``upload_interval`` seconds while the run goes on and at its end;
the webserver reads it back from the bucket). Used as is, it would take its credentials from boto3's
chain only (``AWS_*`` variables, ~/.aws, an instance role), and an empty endpoint variable would be
an endpoint: this subclass takes the bucket from DAGSTER_COMPUTE_LOGS_BUCKET and the endpoint,
region, CA bundle and credentials from the destination's variables (``DESTINATION_*``), which every
host of this tool has anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, IntSource, Noneable, StringSource
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from mastodon_s3_sync.core import settings
from mastodon_s3_sync.core.buckets import MediaDirectory
from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.dagster_internals import use_s3_client


class SharedComputeLogManager(S3ComputeLogManager):
    """``S3ComputeLogManager`` on DAGSTER_COMPUTE_LOGS_BUCKET at the destination's endpoint."""

    def __init__(
        self,
        inst_data=None,
        local_dir: str | None = None,
        upload_interval: int | None = None,
        skip_empty_files: bool = True,
    ):
        bucket_name = settings.required("DAGSTER_COMPUTE_LOGS_BUCKET", "the bucket for the runs' compute logs")
        destination = configured(only=("destination_s3",))["destination_s3"]
        if isinstance(destination, MediaDirectory):
            raise ConfigError(
                "DAGSTER_COMPUTE_LOGS_BUCKET is kept at the destination's endpoint, and the destination is a "
                "directory (DESTINATION_PAPERCLIP_ROOT_PATH), on one host: copy to a directory without CELERY_BROKER_URL"
            )
        engine = destination.engine_bucket()  # credentials resolved, CA bundle checked
        super().__init__(
            bucket=bucket_name,
            local_dir=local_dir,
            inst_data=inst_data,
            prefix=settings.value("DAGSTER_COMPUTE_LOGS_PREFIX"),
            endpoint_url=engine.endpoint_url,
            skip_empty_files=skip_empty_files,
            upload_interval=upload_interval,
            region=engine.region,
        )
        import boto3
        import botocore.config

        client = boto3.session.Session(
            aws_access_key_id=engine.access_key_id,
            aws_secret_access_key=engine.secret_access_key,
            aws_session_token=engine.session_token,
            region_name=engine.region,
        ).client(
            "s3",
            endpoint_url=engine.endpoint_url,
            verify=engine.ca_bundle or True,
            config=botocore.config.Config(
                s3={"addressing_style": "path" if engine.uses_path_style else "virtual"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        use_s3_client(self, client)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "local_dir": Field(StringSource, is_required=False, description="where a host stages logs"),
            "upload_interval": Field(
                Noneable(IntSource),
                is_required=False,
                default_value=None,
                description="seconds between uploads of a running run's partial logs (default: at the end only)",
            ),
            "skip_empty_files": Field(bool, is_required=False, default_value=True),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)
