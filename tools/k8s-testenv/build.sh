#!/usr/bin/env bash
# Build kube-apiserver-testenv and kubectl once, at the Kubernetes version in K8S_VERSION, into
#   ${SIMPLE_GITOPS_CACHE:-$HOME/.cache/simple-gitops}/k8s-testenv/<version>-<hash>/bin/
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
bins=(kube-apiserver-testenv kubectl)

is_built() {
	local b
	for b in "${bins[@]}"; do
		[[ -x "$target/bin/$b" ]] || return 1
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

echo "k8s-testenv: building kube-apiserver ${version} and kubectl into $target (takes minutes the first time)" >&2
start=$(date +%s)
(
	cd "$here"
	CGO_ENABLED=0 go build -p "${K8S_TESTENV_BUILD_JOBS:-2}" -trimpath -ldflags "$ldflags" \
		-o "$tmp/bin/" ./cmd/kube-apiserver-testenv ./cmd/kubectl
) >&2
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
