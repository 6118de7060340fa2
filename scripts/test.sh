#!/usr/bin/env bash
# The full test suite, as CI runs it: starts a throwaway Ceph RADOS Gateway on loopback for
# the S3 backend (installing Ceph from Debian if needed), runs `npm test` against it with the
# S3 tests required (not skipped), and stops the cluster on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build-native.sh   # the sandbox file server (rebuilt only when its source changed)

export CEPH_DIR
CEPH_DIR=$(mktemp -d /tmp/ceph-s3.XXXXXX)
trap 'bash scripts/ceph-s3-down.sh; rm -rf "$CEPH_DIR"' EXIT
bash scripts/ceph-s3-up.sh

export EFFECT_VOLUMES_S3_REQUIRED=1   # S3 tests fail loudly instead of skipping
export EFFECT_VOLUMES_S3_ENDPOINT=http://127.0.0.1:7480 EFFECT_VOLUMES_S3_REGION=us-east-1 EFFECT_VOLUMES_S3_FORCE_PATH_STYLE=true
export EFFECT_VOLUMES_S3_ACCESS_KEY_ID=TESTACCESSKEY0000001 EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY=testsecretkey000000000000000000000000001
npm test
