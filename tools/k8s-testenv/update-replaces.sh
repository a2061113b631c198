#!/usr/bin/env bash
# Pin this module to one Kubernetes release.
#
# k8s.io/kubernetes requires every staging module (k8s.io/api, k8s.io/apiserver, ...) at
# v0.0.0 and replaces it with ./staging/src/...; replaces of a dependency are ignored, so this
# module must replace each staging module with its published version itself. The list is
# derived from the .mod file that the Go module proxy serves for k8s.io/kubernetes@<version>,
# never written by hand.
#
# Usage: ./update-replaces.sh [v1.37.2]     (run from anywhere; edits go.mod/go.sum here)
set -euo pipefail

K8S_VERSION="${1:-$(cat "$(dirname "$0")/K8S_VERSION")}"
case "$K8S_VERSION" in
v1.*) ;;
*)
	echo "update-replaces.sh: version must look like v1.37.2, got '$K8S_VERSION'" >&2
	exit 2
	;;
esac
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

cd "$(dirname "$0")"

# `go mod download -json` fetches the module's .mod through the ordinary client and prints
# where it lives in the module cache.
mod_json="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}")"
mod_file="$(printf '%s\n' "$mod_json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$mod_file" || ! -f "$mod_file" ]]; then
	echo "update-replaces.sh: could not locate the .mod file of k8s.io/kubernetes@${K8S_VERSION}" >&2
	printf '%s\n' "$mod_json" >&2
	exit 1
fi

# Every "k8s.io/NAME => ./staging/src/k8s.io/NAME" line of k/k's go.mod.
mapfile -t staging < <(
	sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$mod_file" | sort -u
)
if [[ ${#staging[@]} -eq 0 ]]; then
	echo "update-replaces.sh: no staging replaces found in $mod_file" >&2
	exit 1
fi

# Drop the replaces of an earlier run, then write the new ones as one block at the end.
for old in $(go mod edit -json | sed -n 's#^[[:space:]]*"Path": "\(k8s\.io/[^"]*\)"$#\1#p' | sort -u); do
	go mod edit -dropreplace="$old"
done
{
	echo
	echo "// Staging modules of k8s.io/kubernetes@${K8S_VERSION}, from ./update-replaces.sh."
	echo "replace ("
	for m in "${staging[@]}"; do
		printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
	done
	echo ")"
} >>go.mod
go mod edit -fmt -require="k8s.io/kubernetes@${K8S_VERSION}"
echo "$K8S_VERSION" >K8S_VERSION

echo "update-replaces.sh: ${#staging[@]} staging modules replaced at ${STAGING_VERSION}" >&2
go mod tidy
