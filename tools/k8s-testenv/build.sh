#!/usr/bin/env bash
# Build kube-apiserver-testenv, kubectl, kube-controller-manager, kube-scheduler (at the
# Kubernetes version in K8S_VERSION) and kwok (the version go.mod pins) once, into
#   ${SIMPLE_GITOPS_CACHE:-$HOME/.cache/simple-gitops}/k8s-testenv/<version>-<hash>/bin/
# and kwok's stage and RBAC manifests (copied from the kwok module) into .../<version>-<hash>/kwok/,
# where <hash> covers go.mod, go.sum, every *.go file, this script and the Go version, so a
# source change builds anew. Prints that bin directory as the last line of stdout; build output
# goes to stderr. When the binaries are already there it only prints the directory.
#
# Environment:
#   SIMPLE_GITOPS_CACHE      cache root (default $HOME/.cache/simple-gitops)
#   K8S_TESTENV_BUILD_JOBS   go build -p (default 2: the machines have 2 cores)
#   GOCACHE, GOMODCACHE, GOPROXY, GOTOOLCHAIN are honoured as usual by the go command.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(tr -d '[:space:]' <"$here/K8S_VERSION")"
cache_root="${SIMPLE_GITOPS_CACHE:-${HOME:?}/.cache/simple-gitops}/k8s-testenv"

# Hash of everything that decides the binaries (paths are sorted so the order is stable).
hash="$(
	cd "$here"
	{
		go env GOVERSION
		find . -name '*.go' -print | LC_ALL=C sort | xargs -r sha256sum
		sha256sum go.mod go.sum K8S_VERSION build.sh
	} | sha256sum | cut -c1-12
)"
target="$cache_root/${version}-${hash}"
bins=(kube-apiserver-testenv kubectl kube-controller-manager kube-scheduler kwok)
kwok_files=(stages.yaml rbac.yaml storage-class.yaml)

is_built() {
	local b f
	for b in "${bins[@]}"; do
		[[ -x "$target/bin/$b" ]] || return 1
	done
	for f in "${kwok_files[@]}"; do
		[[ -s "$target/kwok/$f" ]] || return 1
	done
}

if is_built; then
	echo "$target/bin"
	exit 0
fi

mkdir -p "$cache_root"
# One build at a time per cache (pytest workers, CI and a person may start it together).
exec 9>"$cache_root/.build.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if is_built; then
	echo "$target/bin"
	exit 0
fi

# Holding the lock, no other build is running: leftovers of a killed one can go.
rm -rf "$cache_root"/.tmp-*
tmp="$(mktemp -d "$cache_root/.tmp-${version}-${hash}-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

minor="${version#v1.}"
minor="${minor%%.*}"
build_date="$(cd "$here" && go mod download -json "k8s.io/kubernetes@${version}" |
	sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' | xargs -r sed -n 's/.*"Time":"\([^"]*\)".*/\1/p')"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X ${pkg}.gitVersion=${version}"
	ldflags+=" -X ${pkg}.gitMajor=1"
	ldflags+=" -X ${pkg}.gitMinor=${minor}"
	ldflags+=" -X ${pkg}.gitTreeState=clean"
	# The proxy's module zip carries no commit id: clear the "$Format:%H$" placeholder.
	ldflags+=" -X ${pkg}.gitCommit="
	if [[ -n "$build_date" ]]; then
		ldflags+=" -X ${pkg}.buildDate=${build_date}"
	fi
done

echo "k8s-testenv: building ${bins[*]} (${version}) into $target (takes minutes the first time)" >&2
start=$(date +%s)
mkdir -p "$tmp/bin"
# One binary after another: each link of these binaries peaks at ~2.4 GB, and two links at once
# would double that; the packages they share are compiled once (GOCACHE).
for b in "${bins[@]}"; do
	b_start=$(date +%s)
	(
		cd "$here"
		CGO_ENABLED=0 go build -p "${K8S_TESTENV_BUILD_JOBS:-2}" -trimpath -ldflags "$ldflags" \
			-o "$tmp/bin/$b" "./cmd/$b"
	) >&2
	echo "k8s-testenv: $b built in $(($(date +%s) - b_start)) s" >&2
done

# kwok's own manifests, from the module at the version go.mod pins: the stages kwokctl gives a
# cluster by default (node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete,
# pod-delete) plus its volume stages (a PersistentVolumeClaim is provisioned and bound), the
# kwok-controller ServiceAccount's RBAC, and the StorageClass the volume stages serve.
kwok_dir="$(cd "$here" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
stage="$kwok_dir/kustomize/stage"
mkdir -p "$tmp/kwok"
join_yaml() {
	local f first=1
	for f in "$@"; do
		[[ -s "$f" ]] || {
			echo "k8s-testenv: $f is missing from the kwok module" >&2
			return 1
		}
		((first)) || echo "---"
		first=0
		sed -e '/^---[[:space:]]*$/d' "$f"
	done
}
join_yaml "$stage/node/fast/node-initialize.yaml" \
	"$stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
	"$stage/pod/fast/pod-ready.yaml" "$stage/pod/fast/pod-complete.yaml" \
	"$stage/pod/fast/pod-delete.yaml" \
	"$stage/volume/fast/pvc-provision.yaml" "$stage/volume/fast/pv-bind.yaml" \
	"$stage/volume/fast/pvc-delete.yaml" "$stage/volume/fast/pv-delete.yaml" \
	>"$tmp/kwok/stages.yaml"
join_yaml "$kwok_dir/kustomize/rbac/service_account.yaml" "$kwok_dir/kustomize/rbac/role.yaml" \
	"$kwok_dir/kustomize/rbac/role_binding.yaml" "$kwok_dir/kustomize/rbac/flow_schema.yaml" \
	"$stage/volume/rbac/role.yaml" "$stage/volume/rbac/role_binding.yaml" >"$tmp/kwok/rbac.yaml"
join_yaml "$stage/volume/fast/storage-class.yaml" >"$tmp/kwok/storage-class.yaml"
(cd "$here" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok) >"$tmp/kwok/VERSION"
echo "$version" >"$tmp/VERSION"

# Publish atomically: a rename of the whole directory, so an interrupted build leaves no
# half-built cache entry behind.
if mv -T "$tmp" "$target" 2>/dev/null; then
	trap - EXIT
elif ! is_built; then
	echo "k8s-testenv: could not move $tmp to $target" >&2
	exit 1
fi
echo "k8s-testenv: built in $(($(date +%s) - start)) s" >&2
echo "$target/bin"
