"""Health of live objects: kstatus' rules, and how many objects roll up into one."""

from syncworker.health.kstatus import (
    DEGRADED,
    HEALTHY,
    MISSING,
    PROGRESSING,
    UNKNOWN,
    Health,
    assess,
)
from syncworker.health.summary import summarize, worst

__all__ = [
    "DEGRADED",
    "HEALTHY",
    "MISSING",
    "PROGRESSING",
    "UNKNOWN",
    "Health",
    "assess",
    "summarize",
    "worst",
]
