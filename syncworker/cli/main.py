"""``gitops``: what the dashboard shows and the buttons it has, from a terminal.

Talks only to the server's HTTP API (``GITOPS_URL``, ``GITOPS_TOKEN`` or ``--url`` /
``--token``), never to the database, so it works from a laptop against a deployed
system. Reading follows the server's status setting (public by default); sync, redeploy
and rollback need a staff user's API token.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from syncworker.cli import output, waiting
from syncworker.cli.client import EXIT_ERROR, EXIT_FAILED, EXIT_TIMEOUT, Api, CliError, path

EXIT_STATUSES = f"""Exit status: 0 done (or nothing to deploy); {EXIT_FAILED} a deployment, a poll
or the action failed or was refused; 2 bad usage; {EXIT_ERROR} the server could not be asked
(wrong URL, bad token, unknown service or repository); {EXIT_TIMEOUT} --wait gave up."""
DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_DIFFERENT, EXIT_DIFF_ERROR = 1, 2


def common(command: Callable[..., Any]) -> Callable[..., Any]:
    """--url, --token and --output on every command; CliError becomes a message on
    stderr and its exit status."""

    @click.option(
        "--url",
        envvar="GITOPS_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="The server's base URL.",
    )
    @click.option(
        "--token",
        envvar="GITOPS_TOKEN",
        default="",
        show_envvar=True,
        help="A staff user's API token (made in the admin under Auth Token).",
    )
    @click.option(
        "-o",
        "--output",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="json: the server's answer as JSON on stdout.",
    )
    @functools.wraps(command)
    def wrapped(url: str, token: str, output_format: str, **kwargs: Any) -> None:
        try:
            command(Api(url, token), output_format == "json", **kwargs)
        except CliError as exc:
            output.error(str(exc))
            sys.exit(exc.exit_code)

    return wrapped


@click.group(epilog=EXIT_STATUSES)
@click.version_option(package_name="simple-gitops")
def cli() -> None:
    """Simple GitOps from the command line: what is deployed, its history, sync and
    rollback."""


@cli.command(epilog=EXIT_STATUSES)
@click.option("--status", help="Only services in this state (failed, applying, never, ...).")
@click.option("--health", help="Only services of this health (degraded, progressing, ...).")
@click.option("--sync", help="Only services of this sync status (out-of-sync, synced, ...).")
@click.option("--repo", "repository", help="Only the services of this repository key.")
@click.option("--cluster", help="Only the services deployed to this cluster.")
@click.option("--search", "q", help="Only services whose name contains this.")
@common
def status(api: Api, as_json: bool, **filters: str | None) -> None:
    """Every service, its health, sync status and newest deployment, as the dashboard's
    first page."""
    overview = api.get("/api/overview/", **filters)
    if as_json:
        output.print_json(overview)
    else:
        output.status_table(overview)


DIFF_EXIT_STATUSES = f"""Exit status, as diff(1) and manage.py diff_service: 0 no
difference; {EXIT_DIFFERENT} a sync would change something; {EXIT_DIFF_ERROR} no diff could be made
(bad usage, the server or the cluster could not be asked, the commit cannot be rendered)."""


@cli.command(epilog=DIFF_EXIT_STATUSES)
@click.argument("service")
@click.option("--commit", help="Compare this commit SHA (default: the branch head).")
@common
def diff(api: Api, as_json: bool, service: str, commit: str | None) -> None:
    """What a sync of SERVICE would change on its cluster, object by object (a
    server-side dry run; Secret values masked). Needs a staff user's API token."""
    try:
        detail = api.get(path("api", "overview", "services", service), limit="1")
        answer = api.get(path("api", "services", detail["service"]["id"], "diff"), commit=commit)
    except CliError as exc:
        raise CliError(str(exc), EXIT_DIFF_ERROR) from None
    if as_json:
        output.print_json(answer)
    else:
        output.diff_text(answer)
    sys.exit(EXIT_DIFFERENT if answer["changed"] else 0)


@cli.command(epilog=EXIT_STATUSES)
@click.argument("service")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@common
def history(api: Api, as_json: bool, service: str, limit: int) -> None:
    """The deployments of SERVICE, newest first."""
    detail = api.get(path("api", "overview", "services", service), limit=str(limit))
    if as_json:
        output.print_json(detail)
    else:
        output.history_table(detail)


@cli.command(epilog=EXIT_STATUSES)
@click.argument("service", required=False)
@click.option("--repo", "repository", help="Sync this repository (every changed service).")
@click.option("--force", is_flag=True, help="Redeploy SERVICE at the branch head, changed or not.")
@click.option("--wait", is_flag=True, help="Wait until the deployments end; exit says how.")
@click.option("--timeout", default=600, show_default=True, type=click.IntRange(1), help="Seconds.")
@common
def sync(
    api: Api,
    as_json: bool,
    service: str | None,
    repository: str | None,
    force: bool,
    wait: bool,
    timeout: int,
) -> None:
    """Poll the repository of SERVICE (or --repo KEY) now; changed services deploy."""
    if bool(service) == bool(repository):
        raise click.UsageError("give a SERVICE or --repo KEY, not both or neither")
    if force and not service:
        raise click.UsageError("--force redeploys one SERVICE; it does not apply to --repo")
    if service:
        detail = api.get(path("api", "overview", "services", service), limit="1")
        repo, row = detail["repository"], detail["service"]
        newest = detail["deployments"][0]["id"] if detail["deployments"] else 0
        service_ids: set[int] | None = {row["id"]}
    else:
        data = api.get(path("api", "overview", "repositories", str(repository)))
        repo = data["repository"]
        ids = [r["last_deployment"]["id"] for r in data["services"] if r["last_deployment"]]
        newest, service_ids = max(ids, default=0), None
    if force:
        answer = api.post(path("api", "services", row["id"], "redeploy"))
    else:
        answer = api.post(path("api", "repositories", repo["id"], "sync"))
    if not wait:
        _report(as_json, {"result": answer.get("detail", "queued")}, answer.get("detail", ""))
        return
    outcome = waiting.wait_for_sync(
        api,
        repo["key"],
        polled_before=repo["last_polled_at"],
        newest_before=newest,
        service_ids=service_ids,
        timeout=timeout,
    )
    _finish(as_json, outcome)


@cli.command(epilog=EXIT_STATUSES)
@click.argument("service")
@click.argument("deployment_id", type=int)
@click.option("--wait", is_flag=True, help="Wait until the rollback ends; exit says how.")
@click.option("--timeout", default=600, show_default=True, type=click.IntRange(1), help="Seconds.")
@common
def rollback(
    api: Api, as_json: bool, service: str, deployment_id: int, wait: bool, timeout: int
) -> None:
    """Apply again exactly the bundle of DEPLOYMENT_ID (a successful deployment of
    SERVICE), as a new deployment."""
    target = api.get(path("api", "overview", "services", service, "deployments", deployment_id))
    if not target["can_roll_back"]:
        raise CliError(
            f"deployment {deployment_id} of {service} is {target['status']}: only a deployment "
            "that succeeded can be rolled back to",
            EXIT_FAILED,
        )
    created = api.post(path("api", "deployments", deployment_id, "rollback"))
    if not wait:
        message = f"rollback queued as deployment #{created['id']} (re-applying #{deployment_id})"
        _report(as_json, {"result": message, "deployment": created}, message)
        return
    _finish(as_json, waiting.wait_for_deployment(api, service, created["id"], timeout=timeout))


def _report(as_json: bool, data: dict[str, Any], message: str) -> None:
    if as_json:
        output.print_json(data)
    else:
        output.stdout.print(message, highlight=False)


def _finish(as_json: bool, outcome: waiting.Outcome) -> None:
    if as_json:
        output.print_json(outcome.as_json())
    else:
        output.stdout.print(outcome.message, highlight=False)
        for deployment in outcome.deployments:
            if deployment.get("error"):
                output.stdout.print(
                    f"{deployment['service']} #{deployment['id']}: {deployment['error']}",
                    highlight=False,
                )
    sys.exit(outcome.exit_code)


def main() -> None:
    cli(prog_name="gitops")
