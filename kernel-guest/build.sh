#!/usr/bin/env bash
# Builds the kernel guest for the interop test (integration/tests/kernel_interop.rs), from
# Debian packages only: the stock kernel (linux-image-6.1.0-*-amd64, vmlinuz and the modules the
# O2CB stack and virtio need), busybox-static, and ocfs2-tools' binaries with the libraries they
# load; plus dlmtool.c, compiled static with the host's gcc (a trylock open and poll() on dlmfs,
# which busybox cannot do). Nothing prebuilt is committed; the result is cached.
#
#   kernel-guest/build.sh OUT_DIR
#
# Writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img and OUT_DIR/kernel-version (the package's
# version, e.g. "linux-image-6.1.0-56-amd64 6.1.192-2"). A second run with the same inputs (the
# package versions, this script, init and dlmtool.c) does nothing.
#
# The kernel package is the one linux-image-amd64 depends on (Debian's current 6.1 build), or
# $O2CB_GUEST_KERNEL_PKG.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

kpkg=${O2CB_GUEST_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n 1)
fi
if [ -z "$kpkg" ]; then
    # The package lists may be missing on a fresh machine.
    apt-get update -qq
    kpkg=$(apt-cache depends linux-image-amd64 |
        sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || { echo "build.sh: no linux-image-6.1.0-*-amd64 package found" >&2; exit 1; }

pkgs=("$kpkg" busybox-static ocfs2-tools)
versions=""
for p in "${pkgs[@]}"; do
    v=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')
    [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "build.sh: package $p not available" >&2; exit 1; }
    versions+="$p $v"$'\n'
done
stamp="$versions$(sha256sum "$here/build.sh" "$here/init" "$here/dlmtool.c" | cut -d' ' -f1)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
    [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
    exit 0
fi

work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt's download sandbox user cannot write here; the warning about it is harmless. Package
# lists older than the archive name versions it no longer has: refresh them once and retry.
download() { apt-get download "${pkgs[@]}" 2>&1 | grep -v "unsandboxed" >&2 || true; }
download
if ! ls ./*.deb 2>/dev/null | grep -q .; then apt-get update -qq; download; fi
for p in "${pkgs[@]}"; do
    ls ./"${p}"_*.deb >/dev/null 2>&1 || { echo "build.sh: download of $p failed" >&2; exit 1; }
done
mkdir pkg root
for deb in ./*.deb; do dpkg-deb -x "$deb" pkg; done

kver=$(ls pkg/lib/modules | head -n 1)
[ -f "pkg/boot/vmlinuz-$kver" ] || { echo "build.sh: no vmlinuz-$kver in $kpkg" >&2; exit 1; }

# Modules, with their dependencies first (modules.dep lists each module's needs).
moddir="pkg/lib/modules/$kver"
# The package leaves modules.dep to its postinst; make it here.
depmod -b pkg "$kver"
want="virtio_pci virtio_blk virtio_net virtio_console configfs ocfs2_nodemanager ocfs2_dlm
ocfs2_stackglue ocfs2_stack_o2cb ocfs2_dlmfs"
order=()
add_module() {
    local name=$1 line path dep
    line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n 1) ||
        { echo "build.sh: module $name not in $kpkg" >&2; exit 1; }
    path=${line%%:*}
    for dep in ${line#*:}; do
        dep=$(basename "$dep"); add_module "${dep%%.ko*}"
    done
    for seen in "${order[@]}"; do [ "$seen" = "$path" ] && return 0; done
    order+=("$path")
}
for m in $want; do add_module "$m"; done
mkdir -p root/lib/modules
: > root/lib/modules/order
for path in "${order[@]}"; do
    cp "$moddir/$path" root/lib/modules/
    basename "$path" >> root/lib/modules/order
done

# Userland: busybox and ocfs2-tools with the shared libraries they need.
mkdir -p root/bin root/sbin root/etc/ocfs2 root/proc root/sys root/dev root/tmp root/dlm root/run
cp pkg/bin/busybox root/bin/busybox
command -v gcc >/dev/null || { echo "build.sh: gcc is needed to build dlmtool.c" >&2; exit 1; }
gcc -static -O2 -Wall -o root/bin/dlmtool "$here/dlmtool.c"
for b in o2cb debugfs.ocfs2 ocfs2_hb_ctl mounted.ocfs2 o2cluster; do
    [ -f "pkg/sbin/$b" ] && cp "pkg/sbin/$b" root/sbin/
done
for b in root/sbin/*; do
    ldd "$b" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
        mkdir -p "root$(dirname "$lib")"
        cp -L "$lib" "root$lib"
    done
done
ln -s /proc/self/mounts root/etc/mtab
cp "$here/init" root/init
chmod 755 root/init

(cd root && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > initrd.img.new
cp "pkg/boot/vmlinuz-$kver" "$out/vmlinuz"
mv initrd.img.new "$out/initrd.img"
printf '%s %s\n' "$kpkg" "$(dpkg-deb -f ./"${kpkg}"_*.deb Version)" > "$out/kernel-version"
printf '%s' "$stamp" > "$out/stamp"
