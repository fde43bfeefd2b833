#!/usr/bin/env bash
# The images of `make image` and `make test-containers`, with docker or podman, whichever is present.
#   deploy/podman/images.sh image     the project's image (hybrid-orchestrator:local) from the Dockerfile
#   deploy/podman/images.sh standins  the stand-ins of deploy/podman/compose.standins.yml, unless every
#                                     upstream infrastructure image of docker-compose.yml can be pulled
# Environment: ENGINE (docker|podman; default: docker when its engine answers, else podman), IMAGE,
# PIP_CA (a CA bundle pip inside the build should trust, for a TLS-intercepting proxy; passed as the
# build secret "pip-ca", stored in no layer).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${ENGINE:-}" ]; then
  if docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
IMAGE=${IMAGE:-hybrid-orchestrator:local}
STANDINS=hybrid-orchestrator-standins:local

# have_image <name>: present locally, or pulled now.
have_image() {
  "$ENGINE" image inspect "$1" >/dev/null 2>&1 || "$ENGINE" pull -q "$1" >/dev/null 2>&1
}

# The FROM image of a Dockerfile (its ARG default), built locally when it can be neither found nor pulled.
base_image() {
  local base
  base=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
  if ! have_image "$base"; then
    echo "$base cannot be pulled: building it locally" >&2
    deploy/podman/base-image.sh "$ENGINE" "docker.io/library/$base"
  fi
}

case "${1:?usage: images.sh image|standins}" in
  image)
    base_image
    secret=()
    if [ -n "${PIP_CA:-}" ]; then secret=(--secret "id=pip-ca,src=$PIP_CA"); fi
    "$ENGINE" build -q "${secret[@]}" -t "$IMAGE" . >/dev/null
    echo "built $IMAGE with $ENGINE"
    ;;
  standins)
    upstream=$(sed -n 's/^    image: \([a-z].*\)$/\1/p' docker-compose.yml | grep -v '^hybrid-orchestrator')
    missing=0
    for name in $upstream; do have_image "$name" || missing=1; done
    if [ "$missing" = 0 ]; then
      echo "every upstream infrastructure image is present: no stand-ins needed"
    else
      base_image
      "$ENGINE" build -q -t "$STANDINS" deploy/podman/standins >/dev/null
      echo "built $STANDINS with $ENGINE (upstream infrastructure images cannot be pulled)"
    fi
    ;;
  *)
    echo "usage: images.sh image|standins" >&2
    exit 64
    ;;
esac
