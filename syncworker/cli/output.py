"""What the ``gitops`` command prints: tables (rich) on stdout, JSON when asked, progress
and errors on stderr. States read as the dashboard shows them: a word and an icon, the
colour only repeating them."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from syncworker.dashboard.vocabulary import (
    STATES,
    State,
    first_line,
    health_state,
    state,
    sync_state,
)

# The dashboard's tones as terminal styles; the word and the icon are the dashboard's.
TONE_STYLES = {"bad": "bold red", "warn": "yellow", "busy": "blue", "ok": "green", "idle": "dim"}
# A diff's lines by their sign (the sign stays: colour only repeats it).
DIFF_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))
ACTION_STYLES = {"created": "green", "changed": "yellow", "pruned": "red"}

# Wide enough that a pipe or a CI log gets every column whole, as kubectl prints them,
# instead of rich's 80 columns, which crop service names to a few letters.
UNCROPPED_WIDTH = 1000


def console(*, stderr: bool = False) -> Console:
    made = Console(stderr=stderr, soft_wrap=False)
    if not made.is_terminal and not os.environ.get("COLUMNS"):
        made.width = UNCROPPED_WIDTH
    return made


stdout = console()
stderr = console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def state_text(status: str | None, reason: str = "") -> Text:
    return badge(state(status), reason)


def badge(shown: State, reason: str = "") -> Text:
    why = f" ({reason})" if reason else ""
    return Text(f"{shown.icon} {shown.label.lower()}{why}", style=TONE_STYLES[shown.tone])


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # Python 3.10's fromisoformat does not read a trailing Z.
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ago(value: str | None, now: datetime | None = None) -> str:
    moment = parse_time(value)
    if moment is None:
        return "—"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def utc(value: str | None) -> str:
    moment = parse_time(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def status_table(overview: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("REPOSITORY", "SERVICE", "HEALTH", "SYNC", "STATUS", "COMMIT", "WHEN", "TRIGGER")
    for column in (*columns, "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR", overflow="fold")
    for row in overview["services"]:
        deployment = row["last_deployment"] or {}
        when = deployment.get("finished_at") or deployment.get("started_at")
        table.add_row(
            row["repository"],
            row["name"],
            badge(health_state(row.get("health"))),
            badge(sync_state(row.get("sync_status"))),
            state_text(row["state"], deployment.get("reason", "")),
            (row["commit"] or "")[:12] or "—",
            ago(when or deployment.get("queued_at")),
            deployment.get("trigger", "—"),
            Text(first_line(row["error_line"], 80), style="red"),
        )
    stdout.print(table)
    counts = overview["counts"]  # shown failing first, as the dashboard does
    known = [key for key in STATES if counts.get(key)]
    shown = ", ".join(
        f"{counts[key]} {state(key).label.lower()}"
        for key in known + sorted(set(counts) - set(STATES))
        if counts[key]
    )
    stdout.print(f"{overview['count']} service{'s' if overview['count'] != 1 else ''}: {shown}")
    for repo in overview.get("failing_repositories", []):
        polls = repo["consecutive_failures"]
        stdout.print(
            Text.assemble(
                ("✗ polling fails: ", TONE_STYLES["bad"]),
                f"{repo['key']}: {polls} failed poll{'s' if polls != 1 else ''} in a row, "
                f"the last {ago(repo['last_polled_at'])}: {first_line(repo['last_error'], 240)}",
            )
        )


def history_table(detail: dict[str, Any]) -> None:
    service = detail["service"]
    stdout.print(
        Text.assemble(
            (service["name"], "bold"),
            f" ({service['repository']}, cluster {service['cluster'] or 'none'}): ",
            state_text(service["state"]),
        )
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "STATUS", "COMMIT", "TRIGGER", "QUEUED (UTC)", "TOOK", "OBJECTS", "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR", overflow="fold")
    for d in detail["deployments"]:
        trigger = d["trigger"] + (f" of #{d['rollback_of']}" if d["rollback_of"] else "")
        took = d["duration_seconds"]
        table.add_row(
            str(d["id"]),
            state_text(d["status"], d.get("reason", "")),
            d["commit_sha"][:12],
            trigger,
            utc(d["queued_at"]),
            f"{took:.1f}s" if took is not None else "—",
            str(d["object_count"]),
            Text(first_line(d["error"], 80), style="red"),
        )
    stdout.print(table)


def diff_text(answer: dict[str, Any]) -> None:
    """The answer of ``/api/services/{id}/diff/`` as ``diff_service`` prints it: a line per
    object that would change, then its unified diff."""
    head = f"{answer['service']} on {answer['cluster']}: {answer['compared']}"
    stdout.print(Text(f"{head} {answer['commit'][:12]}".rstrip(), style="bold"))
    for obj in answer["objects"]:
        where = f"{obj['namespace']}/" if obj["namespace"] else ""
        fields = f" ({', '.join(obj['changed_fields'])})" if obj["changed_fields"] else ""
        stdout.print(
            Text.assemble(
                (obj["action"], ACTION_STYLES.get(obj["action"], "")),
                f" {obj['kind']} {where}{obj['name']}{fields}",
            )
        )
        for line in obj["diff"].splitlines():
            style = next((st for sign, st in DIFF_STYLES if line.startswith(sign)), "")
            stdout.print(Text(line, style=style), soft_wrap=True)
    if not answer["changed"]:
        stdout.print(f"no difference ({answer['unchanged']} objects unchanged)", highlight=False)


def error(message: str) -> None:
    stderr.print(Text.assemble(("gitops: error: ", "bold red"), message))


def note(message: str) -> None:
    stderr.print(message, highlight=False)
