"""4b. Scale, large: the scale benchmark (``scale.py``) at 10,000 services x 10 objects.

The same workload, processes and counters as ``scale``, ten times the services (quick:
300), so that one full run holds both the 1,000-service and the 10,000-service figures
(issue 17's "10,000 services on one machine"). ``--services N`` sizes ``scale`` only.
Target: ≤ 10 minutes; every worker process ≤ 200 MiB; per service ≤ 10 SQL statements,
≤ 20 Redis commands, no new connection.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import scale
from bench.common import Context

PREFIX = "scale_10000_"


def run(ctx: Context) -> dict[str, Any]:
    return scale.run(dataclasses.replace(ctx, services=ctx.count(10_000, 300)))


def targets(result: dict[str, Any]) -> dict[str, Any]:
    # Keys of their own: the 1,000-service run's targets stand beside these.
    return {PREFIX + k.removeprefix("scale_"): v for k, v in scale.targets(result).items()}


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    return scale.figures(result)
