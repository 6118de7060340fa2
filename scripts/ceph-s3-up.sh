#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster (Pacific 16.2.x from Debian bookworm) with a RADOS
# Gateway on loopback, for the S3 backend's tests. No systemd, no /var/lib/ceph state: everything
# lives under $CEPH_DIR, which this script wipes first. Stop it with scripts/ceph-s3-down.sh.
#
#   env: CEPH_DIR (default /tmp/ceph-s3), RGW_PORT (7480), MON_PORT (3300, msgr v2 only),
#        OBJECTSTORE=bluestore|memstore (bluestore: 20 GiB sparse file; memstore: RAM only),
#        S3_ACCESS_KEY / S3_SECRET_KEY (fixed test keys below)
# Prints the EFFECT_VOLUMES_S3_* exports the tests read on its last lines.
set -euo pipefail
CEPH_DIR=${CEPH_DIR:-/tmp/ceph-s3}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
OBJECTSTORE=${OBJECTSTORE:-bluestore}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-TESTACCESSKEY0000001}
S3_SECRET_KEY=${S3_SECRET_KEY:-testsecretkey000000000000000000000000001}
t0=$(date +%s%N)
ts() { echo "ceph-s3-up: [$(( ($(date +%s%N) - t0) / 1000000 )) ms] $*"; }

# Install the daemons only when missing (ceph-mon pulls ceph-base and the CLI tools).
missing=()
for pkg in ceph-mon ceph-osd radosgw curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "ceph-s3-up: need root to install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ts "installed ${missing[*]}"
fi

# Stop a previous instance that used the same dir (by its pid files only).
if [ -d "$CEPH_DIR/run" ]; then
  for p in "$CEPH_DIR"/run/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  sleep 1
fi
rm -rf "$CEPH_DIR"
mkdir -p "$CEPH_DIR"/{mon/ceph-a,osd/ceph-0,rgw,run,log}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF="$CEPH_DIR/ceph.conf"
KEYRING="$CEPH_DIR/keyring"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $KEYRING
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
pid file = $CEPH_DIR/run/\$name.pid
log file = $CEPH_DIR/log/\$name.log
crash dir = $CEPH_DIR/log/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
auth allow insecure global id reclaim = false
[mon]
mon data = $CEPH_DIR/mon/ceph-\$id
[osd]
osd data = $CEPH_DIR/osd/ceph-\$id
osd objectstore = $OBJECTSTORE
memstore device bytes = 4294967296
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
osd memory target = 939524096
osd max object size = 134217728
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $CEPH_DIR/rgw
rgw dns name = localhost
rgw enable usage log = false
EOF

# One keyring with every entity; ceph-mon --mkfs imports all of it into the auth database.
ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$KEYRING" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$KEYRING" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
ceph-authtool "$KEYRING" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$CEPH_DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$KEYRING"
ceph-mon -c "$CONF" -i a          # daemonizes, writes run/mon.a.pid
C="ceph -c $CONF --connect-timeout 30"
$C mon stat >/dev/null
ts "mon answers"

OSD_UUID=$(uuidgen)
OSD_ID=$($C osd new "$OSD_UUID")
[ "$OSD_ID" = 0 ] || { echo "ceph-s3-up: unexpected osd id $OSD_ID" >&2; exit 1; }
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$CEPH_DIR/log/osd-mkfs.out" 2>&1 \
  || { cat "$CEPH_DIR/log/osd-mkfs.out" >&2; exit 1; }
ceph-osd -c "$CONF" -i 0
for i in $(seq 1 120); do
  $C osd stat -f json | grep -q '"num_up_osds":1' && break
  sleep 0.5
  [ "$i" = 120 ] && { echo "ceph-s3-up: osd did not come up" >&2; tail -20 "$CEPH_DIR/log/osd.0.log" >&2; exit 1; }
done
ts "osd up ($OBJECTSTORE)"

radosgw -c "$CONF" -n client.rgw.a
for i in $(seq 1 240); do
  curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
  sleep 0.5
  [ "$i" = 240 ] && { echo "ceph-s3-up: rgw did not answer" >&2; tail -20 "$CEPH_DIR/log/client.rgw.a.log" >&2; exit 1; }
done
radosgw-admin -c "$CONF" user create --uid=test --display-name=test \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
ts "rgw answers on http://127.0.0.1:$RGW_PORT"
cat <<EOF
export EFFECT_VOLUMES_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT EFFECT_VOLUMES_S3_REGION=us-east-1 EFFECT_VOLUMES_S3_FORCE_PATH_STYLE=true
export EFFECT_VOLUMES_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
EOF
