"""The one table of configuration variables: typed values, one-line errors, EnvVar binding, and the
README's reference generated from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import EnvVar

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.planning import PlanRates
from mastodon_s3_sync.core.settings import BY_NAME, VARIABLES, reference_markdown, value
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.tuning import MiB, Tuning
from mastodon_s3_sync.definitions.resources import RESOURCE_CLASSES, build_resources

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_is_the_table() -> None:
    text = README.read_text()
    begin = text.index("<!-- configuration reference: begin -->\n") + len("<!-- configuration reference: begin -->\n")
    end = text.index("<!-- configuration reference: end -->")
    assert text[begin:end] == reference_markdown()


def test_every_bound_variable_has_its_resource_field() -> None:
    for key, resource_class in RESOURCE_CLASSES.items():
        bound = {v.field for v in VARIABLES if v.resource == key}
        assert bound <= set(resource_class.model_fields), key


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("DB_PORT", "6432", 6432),
        ("SYNC_REQUESTS_PER_SECOND", "2.5", 2.5),
        ("SYNC_ACCEPT_MISSING", "TRUE", True),
        ("SYNC_ACCEPT_MISSING", "no", False),
        ("SYNC_SCHEDULE_CRON", "*/5 * * * *", "*/5 * * * *"),
    ],
)
def test_typed_values(name: str, raw: str, expected) -> None:
    assert value(name, {name: raw}) == expected


def test_defaults_when_unset_or_empty() -> None:
    assert value("SYNC_PARTITION_ROWS", {}) == 20_000
    assert value("SYNC_PARTITION_ROWS", {"SYNC_PARTITION_ROWS": ""}) == 20_000
    assert value("SYNC_SCHEDULE_CRON", {}) == "0 * * * *"


def test_the_knobs_defaults_are_written_once() -> None:
    """Unset ``SYNC_*`` variables give the engine its own defaults, both taken from ``Tuning``."""
    unset = configured({}, only=("sync_tuning",))["sync_tuning"]
    assert unset == Tuning()
    assert TransferSettings.tuned(unset, None) == TransferSettings()
    assert (TransferSettings().concurrency, TransferSettings().part_size) == (64, 8 * MiB)
    assert PlanRates.tuned(unset) == PlanRates(500.0, 50.0)
    tuned = TransferSettings.tuned(
        Tuning(concurrency=8, max_in_flight_per_endpoint=100, part_size_megabytes=16), "STANDARD_IA"
    )
    assert (tuned.concurrency, tuned.max_in_flight_per_endpoint, tuned.part_size) == (8, 100, 16 * MiB)
    assert tuned.storage_class == "STANDARD_IA"


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("DB_PORT", "five", "DB_PORT must be a whole number, not 'five'"),
        ("SYNC_REQUESTS_PER_SECOND", "fast", "SYNC_REQUESTS_PER_SECOND must be a number, not 'fast'"),
        ("SYNC_ACCEPT_MISSING", "maybe", "SYNC_ACCEPT_MISSING must be true or false, not 'maybe'"),
    ],
)
def test_bad_values_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        value(name, {name: raw})
    assert str(error.value) == message


def test_empty_permission_is_kept_and_means_no_acl() -> None:
    environ = {"SOURCE_S3_BUCKET": "a", "DESTINATION_S3_BUCKET": "b", "DESTINATION_S3_PERMISSION": ""}
    destination = configured(environ, only=("destination_s3",))["destination_s3"]
    assert destination.permission == "" and destination.acl_permission() is None


def test_missing_bucket_names_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        configured({"DESTINATION_S3_BUCKET": "b"}, only=("source_s3",))
    assert str(error.value) == (
        "SOURCE_S3_BUCKET is not set: it names the source bucket (or set SOURCE_PAPERCLIP_ROOT_PATH for a directory)"
    )


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        (
            {"SOURCE_S3_BUCKET": "a", "SOURCE_PAPERCLIP_ROOT_PATH": "/srv/media"},
            "SOURCE_S3_BUCKET and SOURCE_PAPERCLIP_ROOT_PATH are both set: the source is a bucket or a directory, "
            "unset one",
        ),
        (
            {"DESTINATION_S3_BUCKET": "a", "DESTINATION_PAPERCLIP_ROOT_PATH": "/srv/media"},
            "DESTINATION_S3_BUCKET and DESTINATION_PAPERCLIP_ROOT_PATH are both set: the destination is a bucket or "
            "a directory, unset one",
        ),
        (
            {"SOURCE_PAPERCLIP_ROOT_PATH": "/srv/media", "SOURCE_S3_KEY_PREFIX": "media"},
            "SOURCE_S3_KEY_PREFIX: there is no key prefix on disk; unset it",
        ),
        (
            {"DESTINATION_S3_ENDPOINT": "http://x"},
            "DESTINATION_S3_BUCKET is not set: it names the destination bucket (or set "
            "DESTINATION_PAPERCLIP_ROOT_PATH for a directory)",
        ),
    ],
)
def test_bucket_or_directory_errors(environ, error) -> None:
    side = "source_s3" if any(name.startswith("SOURCE_") for name in environ) else "destination_s3"
    with pytest.raises(ConfigError) as raised:
        configured(environ, only=(side,))
    assert str(raised.value) == error


def test_a_root_path_selects_a_directory(tmp_path) -> None:
    environ = {"SOURCE_PAPERCLIP_ROOT_PATH": str(tmp_path / "a"), "DESTINATION_PAPERCLIP_ROOT_PATH": str(tmp_path)}
    resources = configured(environ, only=("source_s3", "destination_s3"))
    source, destination = resources["source_s3"], resources["destination_s3"]
    assert (source.root, destination.root) == (tmp_path / "a", tmp_path)
    assert destination.acl_permission() == "public-read", "file modes: private media 0600, the rest 0666 less the umask"
    assert source.full_key("accounts/avatars/x.png") == "accounts/avatars/x.png", "no key prefix on disk"


def test_directory_access_errors(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "read-only").mkdir(mode=0o555)
    cases = [
        (
            {"SOURCE_PAPERCLIP_ROOT_PATH": str(tmp_path / "nope")},
            f"SOURCE_PAPERCLIP_ROOT_PATH: {tmp_path}/nope does not exist",
        ),
        (
            {"SOURCE_PAPERCLIP_ROOT_PATH": str(tmp_path / "file")},
            f"SOURCE_PAPERCLIP_ROOT_PATH: {tmp_path}/file is not a directory",
        ),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append(
            (
                {"DESTINATION_PAPERCLIP_ROOT_PATH": str(tmp_path / "read-only")},
                f"DESTINATION_PAPERCLIP_ROOT_PATH: {tmp_path}/read-only is not writable by this user",
            )
        )
    for environ, error in cases:
        side = "source_s3" if "SOURCE_PAPERCLIP_ROOT_PATH" in environ else "destination_s3"
        with pytest.raises(ConfigError) as raised:
            configured(environ, only=(side,))[side].check_access()
        assert str(raised.value) == error


def test_dagster_resources_bind_no_bucket_for_a_directory() -> None:
    resources = build_resources({"SOURCE_PAPERCLIP_ROOT_PATH": "/srv/media", "DESTINATION_S3_BUCKET": "b"})
    assert resources["source_s3"].paperclip_root_path == EnvVar("SOURCE_PAPERCLIP_ROOT_PATH")
    assert resources["source_s3"].bucket is None
    assert resources["destination_s3"].bucket == EnvVar("DESTINATION_S3_BUCKET")


def test_dagster_resources_hold_env_var_names_for_every_set_variable() -> None:
    environ = {
        "DATABASE_URL": "postgresql://u:secret@h/db",
        "DB_PORT": "6432",
        "SOURCE_S3_BUCKET": "a",
        "SOURCE_AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "DESTINATION_S3_BUCKET": "b",
        "DESTINATION_S3_PERMISSION": "",
        "SYNC_CONCURRENCY": "8",
    }
    resources = build_resources(environ)
    assert resources["mastodon_db"].database_url == EnvVar("DATABASE_URL")
    assert resources["mastodon_db"].db_port == EnvVar.int("DB_PORT")
    assert resources["source_s3"].aws_secret_access_key == EnvVar("SOURCE_AWS_SECRET_ACCESS_KEY")
    assert resources["destination_s3"].permission == EnvVar("DESTINATION_S3_PERMISSION")
    assert resources["sync_tuning"].concurrency == 8, "tuning is not secret: bound to its value"
    assert resources["mastodon_db"].db_pass is None, "unset variables keep the field's default"
    assert all(BY_NAME[name].secret for name in ("DATABASE_URL", "SOURCE_AWS_SECRET_ACCESS_KEY"))
