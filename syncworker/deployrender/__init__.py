"""``apply-gitops``: renders the Kubernetes manifests that run Simple GitOps itself.

``render`` turns a ``gitops-config.yaml`` and the command-line options into one
multi-document YAML string; ``cli`` prints it (``--dry-run``) or applies it. Rendering is
pure: no random values, no clock, no cluster access, so the same input gives the same
bytes. The modules follow the objects they build: ``configsplit`` (config and secrets),
``rbac``, ``runtime`` (stock image or built image), ``workloads`` (our pods), ``backing``
(Redis and PostgreSQL when none is given).
"""
