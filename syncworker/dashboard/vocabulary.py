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
    tone: str  # ok | bad | busy | idle: the colour

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


def state(key: str | None) -> State:
    """The state of a status; one this table does not know yet still shows its word."""
    key = key or NEVER
    return STATES.get(key) or State(key, key.capitalize(), "?", "idle")


def first_line(text: str, limit: int = 160) -> str:
    """The first line of an error that says something: a heading such as
    ``invalid bundle:`` is joined with the line after it."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else ""
    line = line or (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
