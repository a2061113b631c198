"""The words the dashboard and the ``gitops`` command line share: the states a service or
a deployment is shown in (a word, an icon and a tone, the colour), and how an error is
cut to one line. Free of Django on purpose: the command line imports it on a laptop
without the server's settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class State:
    key: str  # the filter value and the CSS class (state-<key>)
    label: str  # the word people read
    icon: str  # beside the word; hidden from screen readers, the word says it
    tone: str  # ok | bad | warn | busy | idle: the colour

    @property
    def active(self) -> bool:
        return self.tone == "busy"


NEVER = "never"  # no deployment yet (selectors.NEVER_DEPLOYED)
# Keys: the deployment statuses (models.Deployment.Status), then NEVER; failing first.
STATES: dict[str, State] = {
    "failed": State("failed", "Failed", "✗", "bad"),
    "applying": State("applying", "Applying", "↻", "busy"),
    "queued": State("queued", "Queued", "◷", "busy"),
    "succeeded": State("succeeded", "Succeeded", "✓", "ok"),
    "superseded": State("superseded", "Superseded", "↷", "idle"),
    NEVER: State(NEVER, "Never deployed", "○", "idle"),
}
FINAL = ("succeeded", "failed", "superseded")

# A service's health and sync status (models.Service.Health / SyncStatus), in the words
# and order of Argo CD's application tiles; worst first.
HEALTH: dict[str, State] = {
    "degraded": State("degraded", "Degraded", "⚠", "bad"),
    "missing": State("missing", "Missing", "∅", "warn"),
    "progressing": State("progressing", "Progressing", "↻", "busy"),
    "unknown": State("unknown", "Unknown", "?", "idle"),
    "healthy": State("healthy", "Healthy", "♥", "ok"),
}
SYNC: dict[str, State] = {
    "failed": State("failed", "Sync failed", "✗", "bad"),
    "out-of-sync": State("out-of-sync", "OutOfSync", "↑", "warn"),
    "unknown": State("unknown", "Unknown", "?", "idle"),
    "synced": State("synced", "Synced", "✓", "ok"),
}


def state(key: str | None, table: dict[str, State] = STATES) -> State:
    """The state of a status in ``table`` (deployment states unless told); one the table
    does not know yet still shows its word. No key: never deployed, or unknown."""
    key = key or (NEVER if table is STATES else "unknown")
    return table.get(key) or State(key, key.capitalize(), "?", "idle")


def health_state(key: str | None) -> State:
    return state(key, HEALTH)


def sync_state(key: str | None) -> State:
    return state(key, SYNC)


def first_line(text: str, limit: int = 160) -> str:
    """The first line of an error that says something: a heading such as
    ``invalid bundle:`` is joined with the line after it."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else ""
    line = line or (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
