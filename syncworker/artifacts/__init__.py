"""Release artifacts: the start scripts, application packages and configuration templates
pods of stateless services download at start-up (``scripts/``, ``apps/``, ``configs/``).

``storage`` validates paths and writes files atomically, ``serving`` reads them back for
HTTP, ``views`` serves them publicly, ``admin`` and ``api`` upload them (staff only).
"""
