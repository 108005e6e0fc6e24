#!/usr/bin/env bash
# Installs the system packages the test suite needs, from Debian's archive:
#   ocfs2-tools — the reference oracle (o2cb --config-file, mkfs.ocfs2, debugfs.ocfs2)
#   fuse3       — /dev/fuse tooling for dlmfs
#   tshark      — a second opinion on our o2net frames
# Idempotent; a no-op when everything is present.
set -euo pipefail
need=()
command -v o2cb >/dev/null 2>&1 || [ -x /usr/sbin/o2cb ] || need+=(ocfs2-tools)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
for p in ocfs2-tools-dev comerr-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done  # libo2dlm + com_err headers for the dlmfs-preload test
# The container cluster test (containers/, o2cb/tests/containers_cluster.rs): Compose (v2's
# `docker compose` or Debian's docker-compose) and a static busybox for the image; the Docker
# engine itself comes with the machine.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
# qemu-system-x86 boots Debian's kernel for the kernel interop test (kernel-guest/); cpio and
# kmod's depmod build its initramfs, gcc and libc6-dev's static libc its dlmfs helper
# (kernel-guest/dlmtool.c). Without recommends: no GUI libraries, and the test's NIC needs no
# option ROM.
qemu_need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || qemu_need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || qemu_need+=(cpio)
command -v depmod >/dev/null 2>&1 || [ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || qemu_need+=(kmod)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || qemu_need+=(iproute2)
command -v gcc >/dev/null 2>&1 || qemu_need+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || qemu_need+=(libc6-dev)
if [ ${#qemu_need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${qemu_need[@]}" >/dev/null
fi
# mkfs.ocfs2 wants /etc/mtab.
[ -e /etc/mtab ] || ln -s /proc/self/mounts /etc/mtab
