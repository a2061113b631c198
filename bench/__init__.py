"""Benchmarks of Simple GitOps on this machine, against the real services it runs with.

``scripts/bench [--quick]`` runs them all through :mod:`bench.run`; each benchmark is one
module with a ``run(ctx) -> dict`` and a ``targets(result) -> dict``. See bench/README.md.
"""
