#!/usr/bin/env bash
# Builds the o2cb-rs container image FROM scratch (no registry: nothing is pulled).
#
#   containers/build-image.sh [--binary PATH] [--tag TAG]
#
# Without --binary it runs `cargo build --release -p o2cb` and takes target/release/o2cb.
# The tag is TAG, else $O2CB_IMAGE, else o2cb-rs:latest (the compose file's default).
# The image holds the binary, every shared library ldd names for it (glibc, its loader,
# libm, libgcc_s) at the same paths, a static busybox with its applets in /bin, and
# setup.sh (the compose file's setup step).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tag=${O2CB_IMAGE:-o2cb-rs:latest}
bin=""
while [ $# -gt 0 ]; do
    case $1 in
        --binary) bin=${2:?--binary needs a path}; shift 2 ;;
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -p o2cb)
    bin=$root/target/release/o2cb
fi
[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/o2cb-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
rootfs=$ctx/rootfs
mkdir -p "$rootfs"/{usr/sbin,usr/libexec/o2cb,bin,etc/ocfs2,etc/default,run,shared,dlm}
install -d -m 1777 "$rootfs/tmp"

# Debug sections dropped (the release profile keeps line tables): a smaller image, the
# symbols stay for backtraces.
if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$bin" "$rootfs/usr/sbin/o2cb"
else
    cp "$bin" "$rootfs/usr/sbin/o2cb"
fi
chmod 755 "$rootfs/usr/sbin/o2cb"

# Every library the dynamic loader will look for, at the path it looks at (symlinks resolved:
# /lib64/ld-linux-x86-64.so.2 becomes a file). A static binary needs none.
libs=""
if ldd "$bin" >/dev/null 2>&1; then
    libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    [ -n "$libs" ] || { echo "build-image.sh: ldd names no library for $bin" >&2; exit 1; }
    if ldd "$bin" | grep -q "not found"; then
        echo "build-image.sh: $bin needs libraries this machine lacks:" >&2
        ldd "$bin" | grep "not found" >&2
        exit 1
    fi
fi
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done

# A static busybox: the host's if it is one, else from Debian's busybox-static package.
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
if [ -z "$busybox" ]; then
    (cd "$ctx" && apt-get download busybox-static >/dev/null)
    dpkg-deb -x "$ctx"/busybox-static_*.deb "$ctx/bb"
    busybox=$ctx/bb/bin/busybox
fi
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done

install -m 755 "$here/setup.sh" "$rootfs/usr/libexec/o2cb/setup.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
cp "$here/Dockerfile" "$ctx/Dockerfile"

# The classic builder: FROM scratch plus one COPY needs nothing BuildKit adds.
if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" 2>&1); then
    echo "$out" >&2
    exit 1
fi
echo "built image $tag ($(du -sh "$rootfs" | cut -f1) root file system, o2cb from $bin)"
