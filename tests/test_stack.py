"""tests/support/stack.py, the start-and-stop of the parts the tests and the benchmarks
run, with real servers."""

from __future__ import annotations

import socket

import pytest

from tests.support.gitserver import GitHttpServer
from tests.support.procs import port_open
from tests.support.services import RedisServer
from tests.support.stack import Stack


def test_everything_started_is_stopped_when_the_stack_closes() -> None:
    with Stack() as stack:
        redis = stack.start(RedisServer())
        git = stack.start(GitHttpServer())
        assert port_open(redis.port) and port_open(git.port)
        assert git.root.is_dir()
    assert not port_open(redis.port) and not port_open(git.port)
    assert not git.root.exists() and not redis.dir.exists()


def test_a_part_that_fails_to_start_is_cleaned_up_and_the_others_stopped() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = GitHttpServer()
        blocked.port = taken.getsockname()[1]
        with pytest.raises(OSError), Stack() as stack:
            redis = stack.start(RedisServer())
            stack.start(blocked)
    assert not port_open(redis.port)
    assert not blocked.root.exists()
