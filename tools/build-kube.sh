#!/usr/bin/env bash
# Build the real Kubernetes parts the tests run (kube-apiserver, kubectl, kine) from the Go
# module proxy, once per machine and version, into a cache outside the work tree.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` is refused, because
# k8s.io/kubernetes maps its staging modules (k8s.io/api, k8s.io/apiserver, ...) to local
# directories with `replace` directives. A small module that requires k8s.io/kubernetes and
# replaces every staging module with its published v0.Y.Z builds it as the release did.
#
#   tools/build-kube.sh            # prints the directory holding the binaries
#   NOSDN_CACHE=/somewhere tools/build-kube.sh
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
KINE_VERSION="${KINE_VERSION:-v0.17.5}"
CACHE="${NOSDN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nosdn}"
OUT="$CACHE/kube/$KUBE_VERSION-kine-$KINE_VERSION"

if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kubectl" ] && [ -x "$OUT/kine" ]; then
  echo "$OUT"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-kube: no Go toolchain: install Go 1.26 or newer (https://go.dev/dl/, or Debian's golang-go if recent enough)" >&2
  exit 3
fi

# Go's own caches live in the cache too, so a second machine image or a CI cache keeps them.
export GOMODCACHE="${GOMODCACHE:-$CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$CACHE/go/build}"
export GOFLAGS=-mod=mod CGO_ENABLED=0
work=$(mktemp -d "$CACHE/build.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/build.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

staging="v0.${KUBE_VERSION#v1.}"          # v1.37.2 -> v0.37.2
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"   # v1.37.2 -> 37
cd "$work"
cat > go.mod <<MOD
module nosdn.test/kubebuild

go 1.26

require k8s.io/kubernetes $KUBE_VERSION
MOD
go mod download k8s.io/kubernetes@"$KUBE_VERSION"
modfile="$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.mod"
grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}' | sort -u |
  while read -r m; do echo "replace $m => $m $staging"; done >> go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
go mod tidy >/dev/null 2>&1 || true
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
mkdir -p "$work/bin"
go build -trimpath -ldflags "$ldflags" -o "$work/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$ldflags" -o "$work/bin/kubectl" k8s.io/kubernetes/cmd/kubectl
GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" github.com/k3s-io/kine@"$KINE_VERSION"
mkdir -p "$OUT"
mv "$work/bin/kube-apiserver" "$work/bin/kubectl" "$work/bin/kine" "$OUT/"
echo "build-kube: built kube-apiserver $KUBE_VERSION, kubectl and kine $KINE_VERSION in $(( $(date +%s) - start )) s" >&2
echo "$OUT"
