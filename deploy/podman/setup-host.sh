#!/usr/bin/env bash
# Prepares a Debian bookworm machine, as root, to build and run the containers without a Docker engine (CI's
# .ci/run calls it; running it again changes nothing): podman and what it runs containers with, debootstrap
# for the local base image, and the podman settings this kind of sandbox needs.
set -euo pipefail

packages=(podman runc netavark aardvark-dns iptables catatonit debootstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  echo "installed ${missing[*]}"
fi

# - runc, not crun: crun cannot create containers on this machine's hybrid cgroup (v1 + v2) hierarchy.
# - default_ulimits: podman's defaults (1048576 open files, 4194304 processes) are above what a process here
#   may raise its limits to, and runc fails with "error setting rlimits". Open files: the current hard
#   limit. Processes: at most 32768, the limit conmon (which starts runc) runs with here.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ]; then nofile=1048576; fi
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
mkdir -p /etc/containers/containers.conf.d
cat > /etc/containers/containers.conf.d/50-hybrid-orchestrator.conf <<CONF
# Written by hybrid-orchestrator's deploy/podman/setup-host.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
