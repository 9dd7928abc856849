from setuptools import find_packages, setup

setup(
    name="mastodon-s3-sync",
    version="0.1.0",
    description="Copy exactly the media a Mastodon database references between S3-compatible buckets, with Dagster.",
    packages=find_packages(include=["mastodon_s3_sync", "mastodon_s3_sync.*"]),
    python_requires=">=3.11",
    install_requires=[
        # Pinned together (unpinned, pip pairs dagster 1.13.28 with years-old integration releases).
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-postgres==0.29.27",
        # Runs on several hosts (dagster-celery.yaml, `mastodon-s3-sync worker`): dagster-celery's
        # CeleryRunLauncher, pinned with the other Dagster packages; Redis is the broker and the result
        # backend (the daemon's health check reads task states and run heartbeats there); flower
        # shows the workers and their runs' tasks.
        "dagster-celery==0.29.27",
        "redis>=5",
        "flower>=2",
        "psycopg2-binary>=2.9",
        "sshtunnel>=0.5.1",  # older versions crash with paramiko 4+
        # The copy engine: asyncio on uvloop, HTTP parsed by httptools (transfer/http.py).
        "uvloop>=0.19; sys_platform != 'win32'",
        "httptools>=0.6",
        "boto3>=1.35",  # checks and verify only
        "python-dotenv>=1.0",
        "rich>=13",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "moto[server]>=5",
            "aiohttp>=3.9",  # the tests' S3 proxies
            # The UI browser test drives Debian's /usr/bin/chromium (never a downloaded browser).
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["mastodon-s3-sync=mastodon_s3_sync.cli.main:main"]},
)
