"""Whether a retry helps is the error's type (``core.errors``), asked the same way by the ops'
one-line failures, the ACL refresh and the CLI's exit code: never the order of ``except`` clauses."""

from __future__ import annotations

import pytest
from dagster import Failure, RetryPolicy, job, op

from mastodon_s3_sync.cli.main import EXIT_CONFIG, EXIT_INCOMPLETE, exit_code
from mastodon_s3_sync.core import errors
from mastodon_s3_sync.core.errors import (
    AclProbeDenied,
    AclProbeUnanswered,
    BucketOutage,
    ConfigError,
    DatabaseConnectionLost,
    DatabaseUnavailable,
    PermanentError,
    SyncError,
    TransientError,
)
from mastodon_s3_sync.definitions.assets import PLAN_RETRY_POLICY, one_line_failures

LOST = DatabaseConnectionLost(" to db:5432/mastodon", "terminating connection due to administrator command")
RETRIED = [
    (ConfigError("SYNC_CONCURRENCY must be a whole number, not 'x'"), False),
    (DatabaseUnavailable("cannot connect to the Mastodon database at db:5432/mastodon: connection refused"), False),
    (LOST, True),
    (LOST.reading("media_attachments rows (ids 1-100), after 50 rows"), True),
    (BucketOutage("DESTINATION_S3_ENDPOINT: http://s3:9000 answered 503"), True),
    (AclProbeUnanswered("cannot tell whether bucket 'b' keeps ACLs: GetBucketAcl answered 503 SlowDown"), True),
    (AclProbeDenied("cannot tell whether bucket 'b' keeps ACLs: GetBucketAcl answered 403 AccessDenied"), False),
]
"""(error, whether the op's RetryPolicy tries again)."""


def failure_of(error: BaseException) -> Failure:
    with pytest.raises(Failure) as failed, one_line_failures():
        raise error
    return failed.value


@pytest.mark.parametrize(("error", "retried"), RETRIED, ids=[type(e).__name__ for e, _ in RETRIED])
def test_retried_exactly_when_a_retry_may_help(error: SyncError, retried: bool) -> None:
    failure = failure_of(error)
    assert failure.allow_retries is retried
    assert failure.description == str(error) and "\n" not in failure.description
    assert exit_code(error) == (EXIT_INCOMPLETE if retried else EXIT_CONFIG)


def test_a_stop_is_not_retried_and_anything_else_is_left_to_the_retry_policy() -> None:
    stopped = failure_of(KeyboardInterrupt())
    assert stopped.allow_retries is False and stopped.description.startswith("interrupted: ")
    with pytest.raises(ValueError, match="a bug"), one_line_failures():
        raise ValueError("a bug")


def every_error_class(cls: type = SyncError) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in every_error_class(direct))]


def test_no_error_is_both_transient_and_permanent() -> None:
    """So no handler that catches one kind can swallow the other, in whatever order its clauses come;
    and each error that is raised (a class with no subclasses) is one of the two."""
    classes = every_error_class()
    assert {cls.__module__ for cls in classes} == {errors.__name__}
    for cls in classes:
        assert not (issubclass(cls, TransientError) and issubclass(cls, PermanentError)), cls
        if not cls.__subclasses__():
            assert issubclass(cls, TransientError | PermanentError), cls
    assert not isinstance(LOST, ConfigError | DatabaseUnavailable), "a lost connection is not a configuration error"


@pytest.mark.parametrize(("error", "retried"), [(LOST, True), (RETRIED[1][0], False)], ids=["lost", "unavailable"])
def test_the_op_retry_policy_follows_the_type(error: SyncError, retried: bool) -> None:
    """A real run: the step fails once with ``error`` and succeeds when tried again, so it succeeds
    exactly when its RetryPolicy (the plan op's, without the waiting) tried again."""
    attempts: list[int] = []

    @op(retry_policy=RetryPolicy(max_retries=PLAN_RETRY_POLICY.max_retries))
    def step() -> None:
        attempts.append(len(attempts))
        with one_line_failures():
            if len(attempts) == 1:
                raise error

    @job
    def once() -> None:
        step()

    result = once.execute_in_process(raise_on_error=False)
    assert result.success is retried
    assert len(attempts) == (2 if retried else 1)
