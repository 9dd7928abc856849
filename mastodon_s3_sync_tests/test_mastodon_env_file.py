"""MASTODON_ENV_FILE: the database and source bucket from the instance's own .env.production."""

from __future__ import annotations

import pytest

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.settings import load_environment, source_settings_from_mastodon_env

ENV_PRODUCTION = """\
# Generated with mastodon:setup on 2023-02-11

LOCAL_DOMAIN=social.example.org
SINGLE_USER_MODE=false
SECRET_KEY_BASE=0f2b8d1c
OTP_SECRET=9d8c7b6a

# Database
DB_HOST=/var/run/postgresql
DB_PORT=5432
DB_NAME=mastodon_production
DB_USER=mastodon
DB_PASS="p@ss word#1"

REDIS_HOST=localhost
REDIS_PORT=6379

# File storage (optional)
S3_ENABLED=true
S3_PROTOCOL=https
S3_BUCKET='files-social-example'
S3_REGION=eu-central-003
S3_HOSTNAME=s3.eu-central-003.backblazeb2.com
S3_ENDPOINT=https://s3.eu-central-003.backblazeb2.com
S3_ALIAS_HOST=files.social.example.org
AWS_ACCESS_KEY_ID=003abcdef0123450000000001
AWS_SECRET_ACCESS_KEY=K003secretsecretsecret  # the application key
S3_KEY_PREFIX=
S3_PERMISSION=
"""


def write(tmp_path, text):
    path = tmp_path / ".env.production"
    path.write_text(text)
    return path


def test_realistic_file_maps_to_database_and_source(tmp_path):
    settings = source_settings_from_mastodon_env(write(tmp_path, ENV_PRODUCTION))
    assert settings == {
        "DB_HOST": "/var/run/postgresql",
        "DB_PORT": "5432",
        "DB_NAME": "mastodon_production",
        "DB_USER": "mastodon",
        "DB_PASS": "p@ss word#1",
        "SOURCE_S3_BUCKET": "files-social-example",
        "SOURCE_S3_ENDPOINT": "https://s3.eu-central-003.backblazeb2.com",
        "SOURCE_S3_REGION": "eu-central-003",
        "SOURCE_S3_ALIAS_HOST": "files.social.example.org",
        "SOURCE_AWS_ACCESS_KEY_ID": "003abcdef0123450000000001",
        "SOURCE_AWS_SECRET_ACCESS_KEY": "K003secretsecretsecret",
    }


def test_explicit_variables_win_and_resources_see_the_file(tmp_path):
    environ = {"MASTODON_ENV_FILE": str(write(tmp_path, ENV_PRODUCTION)), "DB_HOST": "10.0.0.5"}
    load_environment(environ)
    assert environ["DB_HOST"] == "10.0.0.5"
    resources = configured({**environ, "DESTINATION_S3_BUCKET": "new"})
    assert resources["source_s3"].bucket == "files-social-example"
    assert resources["mastodon_db"].db_pass == "p@ss word#1"


def test_local_storage_instance_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="S3_ENABLED is not true"):
        source_settings_from_mastodon_env(
            write(tmp_path, ENV_PRODUCTION.replace("S3_ENABLED=true", "S3_ENABLED=false"))
        )


def test_missing_bucket_is_named(tmp_path):
    text = "\n".join(line for line in ENV_PRODUCTION.splitlines() if not line.startswith("S3_BUCKET"))
    with pytest.raises(ConfigError, match="S3_BUCKET is missing"):
        source_settings_from_mastodon_env(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="MASTODON_ENV_FILE"):
        source_settings_from_mastodon_env(tmp_path / "nope")
