"""The dashboard's small pieces of markup, in Python: rendered for every row of a page
of 50 services, where an ``{% include %}`` per cell would cost more than the queries.

``{% state_badge state %}``, ``{% commit sha link %}``, ``{% moment when %}``,
``{% filter_link name value %}``, ``{% diff_lines text %}`` and the ``ago`` filter
("just now", "5 min ago", "3 h ago", "2 days ago").
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django import template
from django.utils import timezone as django_timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from syncworker.dashboard.vocabulary import State

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = int((django_timezone.now() - moment).total_seconds())
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"
    return "just now"


@register.simple_tag
def state_badge(state: State) -> SafeString:
    """The state's icon (hidden from screen readers) and word; the tone colours both."""
    return format_html(
        '<span class="state tone-{} state-{}"><span class="icon" aria-hidden="true">{}</span>'
        " {}</span>",
        state.tone,
        state.key,
        state.icon,
        state.label,
    )


@register.simple_tag
def commit(sha: str, link: str = "") -> SafeString:
    """The short commit id, linked to its page on the Git host when there is one."""
    if not sha:
        return format_html("{}", "—")
    if link:
        return format_html('<a class="sha" href="{}" title="{}">{}</a>', link, sha, sha[:12])
    return format_html('<code class="sha" title="{}">{}</code>', sha, sha[:12])


@register.simple_tag
def moment(value: datetime | None) -> SafeString:
    """A ``<time>`` with the instant in UTC, reading how long ago it was."""
    if value is None:
        return format_html("{}", "—")
    iso = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_html('<time datetime="{}">{}</time>', iso, ago(value))


@register.simple_tag
def utc(value: datetime | None) -> SafeString:
    """A ``<time>`` reading the instant in UTC to the second."""
    if value is None:
        return format_html("{}", "—")
    instant = value.astimezone(timezone.utc)
    return format_html(
        '<time datetime="{}">{}</time>',
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.strftime("%Y-%m-%d %H:%M:%S"),
    )


@register.simple_tag(takes_context=True)
def filter_link(context: dict[str, Any], name: str, value: str | None) -> str:
    """This page's query string with filter ``name`` set to ``value`` (None: removed),
    back on the first page: ``{% querystring %}`` takes the parameter's name literally."""
    params = context["request"].GET.copy()
    params.pop("page", None)
    params.pop(name, None)
    if value is not None:
        params[name] = value
    return f"?{params.urlencode()}"


DIFF_LINE_CLASSES = (("+++", "file"), ("---", "file"), ("@@", "hunk"), ("+", "add"), ("-", "del"))


@register.simple_tag
def diff_lines(text: str) -> SafeString:
    """A unified diff, each line in a ``<span>`` whose class says added, removed or
    context (the sign stays: colour only repeats it)."""

    def kind(line: str) -> str:
        return next((name for sign, name in DIFF_LINE_CLASSES if line.startswith(sign)), "ctx")

    return format_html_join(
        "", '<span class="{}">{}\n</span>', ((kind(line), line) for line in text.splitlines())
    )
