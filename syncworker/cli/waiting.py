"""``--wait``: follow what an action set off until it ends, with one progress line.

A sync is finished when the repository's next poll has been recorded (its
``last_polled_at`` moved) and every deployment that poll queued for the services asked
about is in a final state; the poll records its deployments in the same transaction as
its time, so "no new deployment" then means "nothing changed". A poll that fails, or a
deployment that fails, ends the wait with EXIT_FAILED.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syncworker.cli import output
from syncworker.cli.client import EXIT_FAILED, EXIT_TIMEOUT, Api, CliError, path
from syncworker.dashboard.vocabulary import FINAL

POLL_SECONDS = 1.0


@dataclass
class Outcome:
    """How a wait ended: the deployments it saw, and the exit status that says so."""

    message: str
    deployments: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "result": self.message,
            "exit_code": self.exit_code,
            "deployments": self.deployments,
        }


class Progress:
    """One line on stderr: a spinner rewritten in place on a terminal, else a new line
    each time the text changes (logs stay readable)."""

    def __init__(self) -> None:
        self.live = output.stderr.is_terminal
        self.status = output.stderr.status("") if self.live else None
        self.last = ""
        if self.status is not None:
            self.status.start()

    def update(self, text: str, elapsed: float) -> None:
        if self.status is not None:
            self.status.update(f"{text} ({elapsed:.0f}s)")
        elif text != self.last:
            # The seconds are left out of the comparison, else a log gets a line a second.
            output.note(f"{text} ({elapsed:.0f}s)")
        self.last = text

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def _follow(step: Callable[[float], Outcome | str], timeout: float, what: str) -> Outcome:
    """Call ``step(elapsed)`` every second until it returns an Outcome; a string is the
    progress line meanwhile."""
    progress = Progress()
    started = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - started
            result = step(elapsed)
            if isinstance(result, Outcome):
                return result
            progress.update(result, elapsed)
            if elapsed > timeout:
                raise CliError(f"gave up after {timeout:.0f}s waiting for {what}", EXIT_TIMEOUT)
            time.sleep(POLL_SECONDS)
    finally:
        progress.stop()


def _ended(deployments: list[dict[str, Any]]) -> Outcome:
    failed = [d for d in deployments if d["status"] == "failed"]
    summary = ", ".join(f"{d['service']} #{d['id']} {d['status']}" for d in deployments)
    if failed:
        return Outcome(f"failed: {summary}", deployments, EXIT_FAILED)
    return Outcome(f"done: {summary}", deployments)


def wait_for_sync(
    api: Api,
    repository_key: str,
    *,
    polled_before: str | None,
    newest_before: int,
    service_ids: set[int] | None,
    timeout: float,
) -> Outcome:
    """Wait for the repository's next poll and the deployments it queued for
    ``service_ids`` (None: every service of the repository)."""

    def step(elapsed: float) -> Outcome | str:
        data = api.get(path("api", "overview", "repositories", repository_key))
        repo = data["repository"]
        if repo["last_polled_at"] == polled_before:
            return f"waiting for the poll of {repository_key}"
        if repo["consecutive_failures"] and repo["last_error"]:
            failure = f"the poll of {repository_key} failed: {repo['last_error']}"
            return Outcome(failure, [], EXIT_FAILED)
        started = [
            {"service": row["name"], **row["last_deployment"]}
            for row in data["services"]
            if (service_ids is None or row["id"] in service_ids)
            and row["last_deployment"]
            and row["last_deployment"]["id"] > newest_before
        ]
        if not started:
            return _nothing_to_deploy(repository_key, data["services"], service_ids)
        running = [d for d in started if d["status"] not in FINAL]
        if running:
            return " · ".join(f"{d['service']} #{d['id']} {d['status']}" for d in running)
        return _ended(started)

    return _follow(step, timeout, f"the sync of {repository_key}")


def _nothing_to_deploy(
    repository_key: str, rows: list[dict[str, Any]], service_ids: set[int] | None
) -> Outcome:
    """No new deployment: fine, unless the one service asked about stays failed (a poll
    deploys changes only, so fixing the cluster or the service's settings is not one).
    A whole repository's sync reports only what it deployed, change or not."""
    failed = [
        {"service": row["name"], **row["last_deployment"]}
        for row in rows
        if service_ids is not None
        and row["id"] in service_ids
        and row["last_deployment"]
        and row["last_deployment"]["status"] == "failed"
    ]
    if not failed:
        return Outcome(f"nothing to deploy: {repository_key} has no change for it")
    (last,) = failed
    message = (
        f"nothing to deploy: {repository_key} has no change, but the last deployment of "
        f"{last['service']} (#{last['id']}) failed; `gitops sync {last['service']} --force` "
        "deploys it again"
    )
    return Outcome(message, failed, EXIT_FAILED)


def wait_for_deployment(api: Api, service: str, deployment_id: int, *, timeout: float) -> Outcome:
    def step(elapsed: float) -> Outcome | str:
        url = path("api", "overview", "services", service, "deployments", deployment_id)
        deployment = api.get(url)
        if deployment["status"] not in FINAL:
            return f"{service} #{deployment_id} {deployment['status']}"
        return _ended([{"service": service, **deployment}])

    return _follow(step, timeout, f"deployment #{deployment_id} of {service}")
