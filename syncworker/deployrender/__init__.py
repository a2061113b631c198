"""``apply-gitops``: renders the Kubernetes manifests that run Simple GitOps itself.

The objects are the YAML files of ``manifests/`` (package data), filled in by
``template``; ``render`` computes what goes into them from a ``gitops-config.yaml``
(``configsplit``: the config without its secrets) and the command-line options
(``options``), and returns one multi-document YAML string; ``cli`` prints it
(``--dry-run``) or applies it. Rendering is pure: no random values, no clock, no cluster
access, so the same input gives the same bytes.
"""
