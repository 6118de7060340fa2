/**
 * The sandbox's identity: ids 0..65535 inside its user namespace are host ids
 * HOST_ID_BASE.. — an unprivileged range no host user has — so a sandboxed root owns
 * nothing of the host. Its mounts are idmapped with the same namespace (through
 * ev-sandbox-helper, since util-linux 2.38's X-mount.idmap applies no mapping), so inside a
 * mount an id means what it means on disk: host root's files are root's inside, and what
 * the sandbox's root creates belongs to root on the host.
 */

/** The first host id of the range (just above systemd's container range, 0x00080000-0x6FFFFFFF). */
export const HOST_ID_BASE = 0x70000000

/** How many ids the sandbox has (0..65535, as a classic container). */
export const MAPPED_IDS = 65536

const mapArgs = (paths: ReadonlyArray<string>): ReadonlyArray<string> => [
  "--map",
  `${HOST_ID_BASE}:${MAPPED_IDS}`,
  ...paths.flatMap((path) => ["--idmap", path])
]

/** The helper command that idmaps `paths` (each the root of a mount) and exits. */
export const idmapCommand = (helper: string, paths: ReadonlyArray<string>): ReadonlyArray<string> => [
  helper,
  "idmap",
  ...mapArgs(paths)
]

/**
 * The helper command that joins the sandbox's cgroups, creates its user namespace,
 * idmaps `paths` (each the root of a mount) and runs what follows `--` as the namespace's root.
 */
export const launchCommand = (
  helper: string,
  cgroupProcs: ReadonlyArray<string>,
  paths: ReadonlyArray<string>
): ReadonlyArray<string> => [
  helper,
  "launch",
  ...cgroupProcs.flatMap((file) => ["--cgroup", file]),
  ...mapArgs(paths),
  "--"
]
