#!/usr/bin/env bash
# Builds the Dockerfile's FROM image locally, for a machine that cannot reach Docker Hub: Debian bookworm
# (debootstrap --variant=minbase) with Debian's Python 3.11 and venv, imported under the name the Dockerfile
# uses. Debian's 3.11 is 3.11.2 where the upstream image has the latest 3.11 release; it is the same minor
# version pyproject.toml requires. Needs root, debootstrap and Debian's package mirror.
#   deploy/podman/base-image.sh [engine] [image name]
set -euo pipefail
engine=${1:-podman}
name=${2:-docker.io/library/python:3.11-slim-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/ho-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { cat "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# python-is-python3: the Dockerfile calls `python`, as the upstream image provides it.
chroot "$rootfs" sh -c 'apt-get update -q \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       python3.11 python3.11-venv python-is-python3 ca-certificates \
  && apt-get clean && rm -rf /var/lib/apt/lists/*' >/dev/null
tar -C "$rootfs" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$name" >/dev/null
echo "built $name locally (debootstrap bookworm, Debian's python3.11)"
