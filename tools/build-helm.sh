#!/usr/bin/env bash
# Build helm (for the chart tests: `helm lint`, `helm template`) from the Go module proxy, once
# per machine and version, into the same cache as tools/build-kube.sh.
#
#   tools/build-helm.sh            # prints the path of the helm binary
#   NOSDN_CACHE=/somewhere tools/build-helm.sh
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
CACHE="${NOSDN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nosdn}"
OUT="$CACHE/helm/$HELM_VERSION"

if [ -x "$OUT/helm" ]; then
  echo "$OUT/helm"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-helm: no Go toolchain: install Go 1.26 or newer (https://go.dev/dl/, or Debian's golang-go if recent enough)" >&2
  exit 3
fi

export GOMODCACHE="${GOMODCACHE:-$CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$CACHE/go/build}"
export CGO_ENABLED=0
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
GOBIN="$work" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  helm.sh/helm/v3/cmd/helm@"$HELM_VERSION"
mkdir -p "$OUT"
mv "$work/helm" "$OUT/helm"
echo "build-helm: built helm $HELM_VERSION in $(( $(date +%s) - start )) s" >&2
echo "$OUT/helm"
