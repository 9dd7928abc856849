"""The ACL refresh's state, as kept in the Dagster instance between refreshes."""

from datetime import datetime

from mastodon_s3_sync.core.acl_refresh import AclState


def test_the_state_of_an_earlier_version_still_loads():
    old = '{"checked_at": "2025-01-02T03:04:05", "suspended_account_ids": [3, 1]}'
    assert AclState.loads(old) == AclState(datetime(2025, 1, 2, 3, 4, 5), frozenset({1, 3}), {})


def test_recent_account_changes_round_trip():
    state = AclState(
        datetime(2025, 1, 2, 3, 4, 5), frozenset({7}), {7: datetime(2025, 1, 2, 3, 0), 9: datetime(2025, 1, 2, 2, 30)}
    )
    assert AclState.loads(state.dumps()) == state
