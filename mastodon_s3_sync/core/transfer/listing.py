"""Which of a list of keys a bucket has, with their sizes and ETags, by listing instead of a HEAD each.

What the destination already has is found by listing it over the batch's key range (a request per
thousand keys); the source is listed only over the keys the destination has, to compare sizes: for
a fresh copy the GETs say all a source listing would (and rclone's server hashes every file it
lists, for the ETag, so listing costs it about what a GET does). ``verify`` lists both the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mastodon_s3_sync.core.transfer.ends import Listable
from mastodon_s3_sync.core.transfer.s3 import ListedObject


async def list_fallbacks(
    source: Listable, destination: Listable, pairs: Sequence[tuple[str, str]], gap_limit: int = 1000
) -> dict[tuple[str, str], tuple[ListedObject, ListedObject | None]]:
    """For each (source key, destination key) pair whose source exists: its listing and the destination's
    (None when absent). Two listings over the pairs' keys, not a HEAD each: the lookup of Mastodon's other
    ``cache/`` variant (``MediaObject.fallback_key``) for the copy and for ``verify`` alike."""
    if not pairs:
        return {}
    listed_sources = await list_objects(source, [source_key for source_key, _ in pairs], gap_limit)
    found = [(source_key, destination_key) for source_key, destination_key in pairs if source_key in listed_sources]
    listed_destinations = await list_objects(destination, [destination_key for _, destination_key in found], gap_limit)
    return {
        (source_key, destination_key): (listed_sources[source_key], listed_destinations.get(destination_key))
        for source_key, destination_key in found
    }


async def list_objects(
    client: Listable, keys: Sequence[str], gap_limit: int = 1000, page_size: int = 1000
) -> dict[str, ListedObject]:
    """Size and ETag of the ``keys`` that exist, by listing the bucket over their key range.

    The listing walks the keys in order under their common prefix and jumps
    ahead (a new start-after) once it has skipped ``gap_limit`` keys nobody
    asked for, so a sparse range costs a page per gap, not the whole range.
    """
    wanted = sorted(set(keys))
    found: dict[str, ListedObject] = {}
    index, start_after = 0, ""
    while index < len(wanted):
        prefix = os.path.commonprefix([wanted[index], wanted[-1]])
        start_after, token, gap = max(start_after, wanted[index][:-1]), None, 0
        while True:
            page, token = await client.list_page(prefix, start_after, token, page_size)
            for listed in page:
                start_after = listed.key
                while index < len(wanted) and wanted[index] < listed.key:
                    index += 1
                if index == len(wanted):
                    return found
                if listed.key == wanted[index]:
                    found[listed.key] = listed
                    index += 1
                    gap = 0
                else:
                    gap += 1
            if token is None:
                return found
            if gap >= gap_limit:
                break
    return found
