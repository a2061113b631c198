"""The marks we put on every object we own, and the name we apply under.

Prune and people find what we own by these labels; server-side apply records our
fields under ``FIELD_MANAGER``.
"""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "simple-gitops"
SERVICE_LABEL = "simple-gitops.io/service"
# Stamped on every object by earlier versions, no longer (see render/mutate.py): objects
# applied before still carry it until their next apply removes it; diffs ignore it.
COMMIT_ANNOTATION = "simple-gitops.io/commit"
FIELD_MANAGER = "simple-gitops"
# "true" on an object (the namespace a service names): created when missing, never
# changed, never recorded in the inventory, so never pruned.
CREATE_ONLY_ANNOTATION = "simple-gitops.io/create-only"
# On a Namespace we created for a service: which service, and that it is never pruned
# (it may hold objects of other services or of people).
CREATED_FOR_ANNOTATION = "simple-gitops.io/created-for"
PRUNE_ANNOTATION = "simple-gitops.io/prune"
NEVER_PRUNE = "never"
