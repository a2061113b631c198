#!/bin/sh
# Stock-image start: install the locked dependencies and the application into a venv
# on the pod's emptyDir, then exec the role's command. A container restarted in the
# same pod finds the venv in place and skips the install.
#   start.sh [--collectstatic] COMMAND [ARG...]
set -eu
venv=/opt/gitops/venv
collectstatic=0
if [ "${1:-}" = "--collectstatic" ]; then
  collectstatic=1
  shift
fi
if [ "$(cat "$venv/.runtime-digest" 2>/dev/null || true)" != "$GITOPS_RUNTIME_DIGEST" ]; then
  echo "start.sh: installing the runtime into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r /etc/gitops/runtime/requirements.txt
  if [ -n "${GITOPS_SOURCE_URL:-}" ]; then
    "$venv/bin/pip" install --quiet --no-deps "$GITOPS_SOURCE_URL"
  else
    # Only the mounted wheel: a package index must not supply the application.
    "$venv/bin/pip" install --quiet --no-deps --no-index \
      --find-links /etc/gitops/app "$GITOPS_APP_REQUIREMENT"
  fi
  printf '%s\n' "$GITOPS_RUNTIME_DIGEST" > "$venv/.runtime-digest"
fi
if [ "$collectstatic" = 1 ]; then
  django-admin collectstatic --noinput -v 0
fi
exec "$@"
