"""No repr or str of a configuration object shows a credential: they end up in tracebacks, run
logs and the UI's error pages."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re

import pytest

import mastodon_s3_sync
from mastodon_s3_sync.core.buckets import DestinationBucket, MediaBucket, SourceBucket
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.transfer.sigv4 import Signer
from mastodon_s3_sync.definitions.resources import RESOURCE_CLASSES

SECRET_NAME = re.compile(r"secret|passw|(^|_)pass$|token|key_id|credential|(database|broker|backend)(_url)?$")
"""Field names that hold, or may hold, a credential (a URL's password included)."""

SECRETS = {
    "aws_access_key_id": "AKIDSECRET1111",
    "aws_secret_access_key": "s3cr3t-source-key-2222",
    "aws_session_token": "session-token-3333",
    "access_key_id": "AKIDSECRET4444",
    "secret_access_key": "s3cr3t-engine-key-5555",
    "session_token": "session-token-6666",
    "database_url": "postgresql://mastodon:url-password-7777@db.example:5432/mastodon_production",
    "db_pass": "db-password-8888",
    "ssh_password": "ssh-password-9999",
}
NEEDLES = ("SECRET1111", "2222", "3333", "SECRET4444", "5555", "6666", "7777", "8888", "9999")


def secret_values(cls) -> dict[str, str]:
    """The distinctive secret values for the fields of ``cls`` that take them."""
    names = {field.name for field in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else cls.model_fields
    return {name: value for name, value in SECRETS.items() if name in names}


def assert_hidden(obj) -> None:
    for text in (repr(obj), str(obj)):
        leaked = [needle for needle in NEEDLES if needle in text]
        assert not leaked, f"{type(obj).__name__} shows {leaked}: {text}"


@pytest.mark.parametrize("cls", [MediaBucket, SourceBucket, DestinationBucket])
def test_media_buckets_hide_their_credentials(cls):
    bucket = cls(bucket="media", endpoint_url="https://s3.example", **secret_values(cls))
    assert len(secret_values(cls)) == 3
    assert_hidden(bucket)
    assert_hidden(bucket.engine_bucket())
    assert "media" in repr(bucket), "the rest is still shown"


def test_engine_bucket_and_signer_hide_their_credentials():
    bucket = Bucket(name="media", **secret_values(Bucket))
    assert_hidden(bucket)
    signer = Signer(bucket.access_key_id, bucket.secret_access_key, "us-east-1", bucket.session_token)
    signer.sign("GET", "s3.example", "/media/key", "", {})  # fills the cached signing key
    assert_hidden(signer)
    _, key = signer._day_key
    assert key and key.hex() not in repr(signer) and repr(key) not in repr(signer)


def test_database_hides_its_passwords():
    database = MastodonDatabase(**secret_values(MastodonDatabase), ssh_host="bastion.example")
    assert len(secret_values(MastodonDatabase)) == 3
    assert_hidden(database)
    assert "bastion.example" in repr(database)


@pytest.mark.parametrize("key", sorted(RESOURCE_CLASSES))
def test_resources_hide_their_credentials(key):
    cls = RESOURCE_CLASSES[key]
    required = {name: "media" for name, field in cls.model_fields.items() if field.is_required()}
    assert_hidden(cls(**required, **secret_values(cls)))


def test_every_dataclass_with_a_secret_looking_field_keeps_it_out_of_repr():
    """Whatever dataclass is added later: a field named like a credential is ``field(repr=False)``."""
    checked, shown = [], []
    for module_info in pkgutil.walk_packages(mastodon_s3_sync.__path__, f"{mastodon_s3_sync.__name__}."):
        if module_info.name.endswith(".__main__"):
            continue  # runs the CLI
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not dataclasses.is_dataclass(cls):
                continue
            for field in dataclasses.fields(cls):
                if SECRET_NAME.search(field.name.lower()) and field.type not in (bool, "bool"):  # a flag
                    checked.append(f"{cls.__qualname__}.{field.name}")
                    if field.repr:
                        shown.append(f"{module.__name__}.{cls.__qualname__}.{field.name}")
    assert not shown, f"secret-looking fields shown by repr: {shown}"
    assert {"Bucket.secret_access_key", "MediaBucket.aws_secret_access_key", "MastodonDatabase.db_pass"} <= set(
        checked
    ), checked
