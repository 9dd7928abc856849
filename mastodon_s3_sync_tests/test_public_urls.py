"""Mastodon's media URLs before and after a move (``core.public_urls``), a table of cases."""

from __future__ import annotations

import pytest

from mastodon_s3_sync.core.public_urls import DISK, S3, MediaHome, url_change

KEY = "cache/media_attachments/files/109/876/543/210/987/654/original/a1b2.png"
DISK_HOME = MediaHome(DISK, web_domain="social.example")
AWS = MediaHome(S3, "old-media", None, "eu-west-1")
R2 = MediaHome(S3, "new-media", "https://acct.r2.cloudflarestorage.com", "auto")
CDN_OLD = MediaHome(S3, "old-media", None, "eu-west-1", alias_host="files.social.example")
CDN_NEW = MediaHome(S3, "new-media", "https://acct.r2.cloudflarestorage.com", "auto", alias_host="files.social.example")


@pytest.mark.parametrize(
    ("home", "url"),
    [
        (DISK_HOME, f"https://social.example/system/{KEY}"),
        (MediaHome(DISK, web_domain="social.example", root_url="/media/"), f"https://social.example/media/{KEY}"),
        (AWS, f"https://s3.eu-west-1.amazonaws.com/old-media/{KEY}"),
        (R2, f"https://acct.r2.cloudflarestorage.com/new-media/{KEY}"),
        (MediaHome(S3, "b", "http://127.0.0.1:9000", key_prefix="media/"), f"http://127.0.0.1:9000/b/media//{KEY}"),
        (CDN_OLD, f"https://files.social.example/{KEY}"),
        (MediaHome(S3, "b", alias_host="https://cdn.example/", key_prefix="/m"), f"https://cdn.example/m/{KEY}"),
        (MediaHome(S3, "b", "https://minio.example", alias_host="http://cdn.example"), f"http://cdn.example/{KEY}"),
    ],
)
def test_media_url(home, url):
    assert home.media_url(KEY) == url


@pytest.mark.parametrize(
    ("source", "destination", "changes", "why"),
    [
        (DISK_HOME, R2, True, "media on disk is served by the instance itself"),
        (DISK_HOME, CDN_NEW, True, "media on disk is served by the instance itself"),
        (AWS, R2, True, "no S3_ALIAS_HOST on either side"),
        (CDN_OLD, R2, True, "the S3_ALIAS_HOST differs"),
        (AWS, CDN_NEW, True, "the S3_ALIAS_HOST differs"),
        (CDN_OLD, CDN_NEW, False, "both sides are served at https://files.social.example/"),
        (
            CDN_OLD,
            MediaHome(S3, "new-media", alias_host="files.social.example", key_prefix="media"),
            True,
            "the key prefix differs",
        ),
        (AWS, MediaHome(DISK, web_domain="social.example"), True, "the instance serves its media itself"),
    ],
)
def test_url_change(source, destination, changes, why):
    change = url_change(source, destination)
    assert change.changes is changes
    assert why in change.reason
    assert (change.nginx_rule is not None) == (source.kind == DISK and destination.kind == S3)


def test_nginx_rule_sends_disk_urls_to_the_same_key_at_the_new_host():
    destination = MediaHome(S3, "new-media", "https://acct.r2.cloudflarestorage.com", "auto", key_prefix="media")
    assert url_change(DISK_HOME, destination).nginx_rule == (
        "location /system/ {\n"
        "  rewrite ^/system/(.*)$ https://acct.r2.cloudflarestorage.com/new-media/media/$1 permanent;\n"
        "}\n"
        "# or, to serve the old URLs without a redirect (nginx fetches each file from the bucket):\n"
        "# location /system/ {\n"
        "#   proxy_pass https://acct.r2.cloudflarestorage.com/new-media/media/;\n"
        "#   proxy_set_header Host acct.r2.cloudflarestorage.com;\n"
        "# }"
    )
    assert url_change(DISK_HOME, CDN_NEW).nginx_rule.splitlines()[1] == (
        "  rewrite ^/system/(.*)$ https://files.social.example/$1 permanent;"
    )
