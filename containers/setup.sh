#!/bin/sh
# The compose file's one-shot setup step, run in the image before any node starts.
#
# Makes the shared heartbeat region on the shared volume once (`o2cb heartbeat format`, a
# random region UUID, as mkfs.ocfs2 does), then writes the cluster.conf the nodes read: the
# mounted one (nodes and cluster, no heartbeat stanza) plus the region, added with the
# ocfs2-tools command `o2cb add-heartbeat CLUSTER UUID`. Run again on the same volume, it
# keeps the region (nodes may be heartbeating on it) and rewrites the same cluster.conf.
set -eu
shared=${O2CB_SHARED:-/shared}
region=$shared/hb.region
template=${O2CB_CLUSTER_CONF:-/etc/ocfs2/cluster.conf}
cluster=${O2CB_BOOTCLUSTER:?O2CB_BOOTCLUSTER names the cluster}

if [ ! -e "$region" ]; then
    # Formatted under another name and renamed: a node never finds a half-written region.
    rm -f "$region.new"
    o2cb heartbeat format "$region.new" --blocks "${O2CB_REGION_BLOCKS:-32}" | tee "$shared/hb.format"
    mv "$region.new" "$region"
fi
# "Formatted heartbeat region UUID on FILE: ..."
uuid=$(awk '$1 == "Formatted" { print $4 }' "$shared/hb.format")
[ -n "$uuid" ] || { echo "setup: no region UUID in $shared/hb.format" >&2; exit 1; }

cp "$template" "$shared/cluster.conf.new"
o2cb --config-file "$shared/cluster.conf.new" add-heartbeat "$cluster" "$uuid"
mv "$shared/cluster.conf.new" "$shared/cluster.conf"
echo "setup: cluster $cluster, global heartbeat region $uuid on $region"
cat "$shared/cluster.conf"
