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


DISK_INSTANCE = ENV_PRODUCTION.replace("S3_ENABLED=true", "S3_ENABLED=false")


@pytest.mark.parametrize(
    ("extra", "root"),
    [
        ("", "{rails_root}/public/system"),  # paperclip.rb's default, :rails_root/public/system
        ("PAPERCLIP_ROOT_PATH=/srv/mastodon-media\n", "/srv/mastodon-media"),
        ("PAPERCLIP_ROOT_PATH=media\n", "{rails_root}/media"),  # relative: where Mastodon runs
        ("PAPERCLIP_ROOT_PATH=:rails_root/public/other\n", "{rails_root}/public/other"),
    ],
)
def test_disk_instance_gives_its_directory_as_the_source(tmp_path, extra, root):
    settings = source_settings_from_mastodon_env(write(tmp_path, DISK_INSTANCE + extra))
    assert settings["SOURCE_PAPERCLIP_ROOT_PATH"] == root.format(rails_root=tmp_path)
    assert settings["DB_PASS"] == "p@ss word#1"
    assert not any(name.startswith("SOURCE_S3_") or name.startswith("SOURCE_AWS_") for name in settings)


def test_disk_instance_without_s3_enabled_at_all(tmp_path):
    text = "\n".join(line for line in DISK_INSTANCE.splitlines() if not line.startswith("S3_ENABLED"))
    settings = source_settings_from_mastodon_env(write(tmp_path, text))
    assert settings["SOURCE_PAPERCLIP_ROOT_PATH"] == f"{tmp_path}/public/system"


def test_disk_instance_source_is_a_directory_and_an_explicit_bucket_wins(tmp_path):
    env_file = str(write(tmp_path, DISK_INSTANCE))
    environ = {"MASTODON_ENV_FILE": env_file}
    load_environment(environ)
    source = configured({**environ, "DESTINATION_S3_BUCKET": "new"}, only=("source_s3",))["source_s3"]
    assert source.root == tmp_path / "public" / "system"
    environ = {"MASTODON_ENV_FILE": env_file, "SOURCE_S3_BUCKET": "old"}
    load_environment(environ)
    assert configured(environ, only=("source_s3",))["source_s3"].bucket == "old"


def test_swift_instance_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="OpenStack Swift"):
        source_settings_from_mastodon_env(write(tmp_path, DISK_INSTANCE + "SWIFT_ENABLED=true\n"))


def test_missing_bucket_is_named(tmp_path):
    text = "\n".join(line for line in ENV_PRODUCTION.splitlines() if not line.startswith("S3_BUCKET"))
    with pytest.raises(ConfigError, match="S3_BUCKET is missing"):
        source_settings_from_mastodon_env(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="MASTODON_ENV_FILE"):
        source_settings_from_mastodon_env(tmp_path / "nope")
