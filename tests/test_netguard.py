"""No test sends traffic off the machine: the network guard refuses it loudly, in the
test process and in worker processes, and a worker never outlives its test module."""

from __future__ import annotations

import os
import socket
import threading

import pytest
import redis
import requests
from django.conf import settings

from gitops_site.celery import app
from syncworker.models import Repository
from syncworker.tasks import ping, poll_repository
from tests.support import netguard
from tests.support.workers import QUEUES, WorkerProcess, drain_queues


def test_no_worker_runs_outside_the_modules_that_start_one() -> None:
    # First in this module, before its own worker starts: a worker started by an earlier
    # module (test_admin_browser.py) must be gone by now.
    assert app.control.ping(timeout=1.0) == []


def test_a_request_off_the_machine_fails_before_sending_anything() -> None:
    with pytest.raises(requests.ConnectionError, match="tests stay on loopback"):
        requests.get("https://api.github.com/repos/acme/infra/commits/main", timeout=5)

    assert netguard.take_refusals() == [f"{os.getpid()} api.github.com:443"]


@pytest.mark.parametrize(
    "address", [("203.0.113.7", 80), ("2001:db8::1", 443), ("example.com", 80)]
)
def test_a_connection_to_an_address_off_the_machine_is_refused(address) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family) as sock, pytest.raises(netguard.OffTheMachineError):
        sock.connect(address)
    with pytest.raises(netguard.OffTheMachineError):
        socket.create_connection(address, timeout=1)

    assert len(netguard.take_refusals()) == 2


def test_loopback_stays_reachable_by_address_and_by_name() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        accepted.start()
        with socket.create_connection(("localhost", port), timeout=5):
            pass
        accepted.join(5)

    assert netguard.take_refusals() == []


def test_drain_queues_drops_waiting_and_unacknowledged_messages() -> None:
    drain_queues()
    for queue in QUEUES:
        ping.apply_async(queue=queue)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        assert [client.llen(queue) for queue in QUEUES] == [1] * len(QUEUES)
        client.hset("unacked", "some-tag", "{}")

        drain_queues()

        assert [client.llen(queue) for queue in QUEUES] == [0] * len(QUEUES)
        assert not client.exists("unacked")
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_a_worker_polling_github_com_is_refused_and_the_test_hears_of_it(
    celery_worker_process: WorkerProcess,
) -> None:
    repo = Repository.objects.create(
        key="dotcom", provider="github", owner="acme", name="infra", branch="main"
    )

    answer = poll_repository.apply_async((repo.pk,), ignore_result=False).get(timeout=60)

    assert "tests stay on loopback" in str(answer["error"])
    [refusal] = netguard.take_refusals()
    pid, where = refusal.split(" ")
    assert int(pid) != os.getpid() and where == "api.github.com:443"
