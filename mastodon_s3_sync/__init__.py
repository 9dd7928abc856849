"""mastodon-s3-sync: copy exactly the media a Mastodon database references, through Dagster.

``defs`` (what ``dagster ... -m mastodon_s3_sync`` loads) is built on first
access, so importing a submodule (the transfer engine, the CLI) does not pay
for Dagster and the definitions.
"""

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from mastodon_s3_sync.definitions.definitions import defs

        globals()["defs"] = defs
        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
