#!/usr/bin/env bash
# Build the nosdn OCI image without a Docker engine, from the Dockerfile's intent, with Debian
# tools only: debootstrap a slim Debian rootfs (python3, iproute2, nftables, bird2, the CNI
# plugins the conflist uses), install nosdn and its dependencies into it with pip (the versions
# of this checkout's venv), and pack it as an OCI image layout with umoci (two layers: Debian,
# then nosdn). Run it with crun/runc (`umoci unpack`), or push it: skopeo copy oci:DIR:TAG
# docker://REGISTRY/nosdn:TAG.
#
# Cached in ~/.cache/nosdn/image, keyed on its inputs: the Debian rootfs on the suite, mirror
# and package list (debootstrap takes ~5 minutes), the image on that, this script, nosdn's
# tracked sources and the pinned dependency versions. Prints the OCI layout directory (its
# image is tagged with nosdn's version); its size is in DIR/../size.txt.
#
#   tools/build-image.sh                      # needs root (debootstrap, file ownership)
#   NOSDN_CACHE=/somewhere NOSDN_DEBIAN_MIRROR=http://mirror/debian tools/build-image.sh
#
# Exit 3: a tool is missing (debootstrap, umoci); exit 4: no Debian mirror reachable.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${NOSDN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nosdn}/image"
SUITE="${NOSDN_DEBIAN_SUITE:-bookworm}"
MIRROR="${NOSDN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# what the image needs (the Dockerfile's list, plus python3, the CNI plugins, CA certificates)
PACKAGES="python3,iproute2,nftables,bird2,containernetworking-plugins,ca-certificates"
# the plugins the conflist uses (nosdn.agent.installcni.PLUGINS) and bandwidth; the others go
KEEP_PLUGINS="bridge host-local loopback portmap bandwidth"
BASE_FORMAT=1   # bump when the base's slimming below changes

for tool in debootstrap umoci; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-image: $tool not found: apt-get install debootstrap umoci" >&2
    exit 3
  }
done
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (debootstrap, file ownership)" >&2; exit 1; }
[ -x "$PYTHON" ] || { echo "build-image: no $PYTHON (run make setup, or set PYTHON)" >&2; exit 3; }

sha() { sha256sum | cut -c1-16; }
base_key=$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$KEEP_PLUGINS" "$BASE_FORMAT" | sha)
BASE="$CACHE/base-$SUITE-$base_key"
mkdir -p "$CACHE"

# --- 1. the Debian rootfs -------------------------------------------------------------------
if [ ! -f "$BASE/done" ]; then
  rm -rf "$BASE"
  mkdir -p "$BASE"
  start=$(date +%s)
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$BASE/rootfs" "$MIRROR" \
      >"$BASE/debootstrap.log" 2>&1; then
    tail -5 "$BASE/debootstrap.log" >&2
    if grep -qiE "Failed getting release file|Temporary failure|Could not resolve|Connection refused|unable to fetch" "$BASE/debootstrap.log"; then
      echo "build-image: no Debian mirror reachable at $MIRROR (set NOSDN_DEBIAN_MIRROR)" >&2
      exit 4
    fi
    echo "build-image: debootstrap failed (log: $BASE/debootstrap.log)" >&2
    exit 1
  fi
  r="$BASE/rootfs"
  # slim: no package caches, lists, docs, man pages or locales; only the CNI plugins we ship
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
    "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/*
  for p in "$r"/usr/lib/cni/*; do
    case " $KEEP_PLUGINS " in *" $(basename "$p") "*) ;; *) rm -f "$p" ;; esac
  done
  # the controller runs as 65532 (nosdn.agent.manifests.controller_manifests)
  echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >>"$r/etc/passwd"
  echo "nonroot:x:65532:" >>"$r/etc/group"
  echo "build-image: debootstrap $SUITE ($PACKAGES) in $(( $(date +%s) - start )) s" >&2
  touch "$BASE/done"
fi

# --- 2. nosdn on top, packed with umoci ------------------------------------------------------
VERSION=$(cd "$ROOT" && "$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
pins=$("$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^-e ' | sort)
src_sum=$(cd "$ROOT" && git ls-files -z src pyproject.toml README.md LICENSE | xargs -0 sha256sum | sha)
image_key=$(printf '%s\n' "$base_key" "$src_sum" "$pins" "$(sha256sum < "$0")" | sha)
OUT="$CACHE/nosdn-$image_key"
if [ -f "$OUT/done" ]; then
  echo "$OUT/oci"
  exit 0
fi

start=$(date +%s)
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
oci="$work/oci"
umoci init --layout "$oci"
umoci new --image "$oci:$VERSION"
umoci unpack --image "$oci:$VERSION" "$work/bundle" >/dev/null
cp -a "$BASE/rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$oci:$VERSION" "$work/bundle"

# the Python version of the rootfs must be the one pip installs for (compiled wheels, .pyc)
want=$(chroot "$work/bundle/rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$want" = "$have" ] || { echo "build-image: the image has Python $want, $PYTHON is $have" >&2; exit 1; }
site="$work/bundle/rootfs/usr/local/lib/python$want/dist-packages"
printf '%s\n' "$pins" >"$work/constraints.txt"
# from a copy of exactly the hashed files (pip would leave build/ in the work tree)
mkdir "$work/src"
(cd "$ROOT" && git ls-files -z src pyproject.toml README.md LICENSE | tar --null -T - -cf -) |
  tar -C "$work/src" -xf -
PIP_CACHE_DIR="$CACHE/../pip" "$PYTHON" -m pip install -q --disable-pip-version-check \
  --no-warn-script-location --target "$site" -c "$work/constraints.txt" "$work/src"
rm -rf "${site:?}/bin"
# the asyncio twins of the Kubernetes and Azure network clients (79 MB): nosdn uses the
# synchronous ones (tests/test_image.py imports every SDK module nosdn does, in the image)
rm -rf "$site/kubernetes/aio" "$site/azure/mgmt/network/aio"
cat >"$work/bundle/rootfs/usr/local/bin/nosdn" <<'PY'
#!/usr/bin/python3
import sys

from nosdn.cli import main

sys.exit(main())
PY
chmod 0755 "$work/bundle/rootfs/usr/local/bin/nosdn"
# routes appear as "proto nosdn" in `ip route` inside the pod
mkdir -p "$work/bundle/rootfs/etc/iproute2/rt_protos.d"
echo "157 nosdn" >"$work/bundle/rootfs/etc/iproute2/rt_protos.d/nosdn.conf"
umoci repack --image "$oci:$VERSION" "$work/bundle"
umoci config --image "$oci:$VERSION" --os linux --architecture amd64 \
  --config.entrypoint nosdn --config.cmd agent --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONUNBUFFERED=1 \
  --config.label org.opencontainers.image.title=nosdn \
  --config.label "org.opencontainers.image.version=$VERSION"
umoci gc --layout "$oci"

unpacked=$(du -sb "$work/bundle/rootfs" | cut -f1)
packed=$(du -sb "$oci/blobs" | cut -f1)
mkdir -p "$OUT"
mv "$oci" "$OUT/oci"
printf 'packed %s bytes (%s MB), unpacked %s bytes (%s MB)\n' \
  "$packed" "$((packed / 1000000))" "$unpacked" "$((unpacked / 1000000))" >"$OUT/size.txt"
touch "$OUT/done"
# keep only this image: an old one is rebuilt in a minute from the cached rootfs
for old in "$CACHE"/nosdn-*; do [ "$old" = "$OUT" ] || rm -rf "$old"; done
echo "build-image: nosdn $VERSION image in $(( $(date +%s) - start )) s: $(cat "$OUT/size.txt")" >&2
echo "$OUT/oci"
