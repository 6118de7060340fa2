#!/usr/bin/env bash
# Stops the cluster scripts/ceph-s3-up.sh started, by pid file, clients first so the OSD need not
# wait for the mon. Never fails: it runs from exit traps.
CEPH_DIR=${CEPH_DIR:-/tmp/ceph-s3}
for n in client.rgw.a osd.0 mon.a; do
  f="$CEPH_DIR/run/$n.pid"; [ -f "$f" ] || continue; pid=$(cat "$f")
  kill "$pid" 2>/dev/null || continue
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
exit 0
