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

/** A mount the helper makes idmapped: `source` bound on `target` (the same path: stacked over it). */
export interface IdmappedMount {
  readonly source: string
  readonly target: string
  /** Mount flags: any of ro, nosuid, nodev, noexec. */
  readonly flags: ReadonlyArray<string>
}

const mapArgs = (mounts: ReadonlyArray<IdmappedMount>): ReadonlyArray<string> => [
  "--map",
  `${HOST_ID_BASE}:${MAPPED_IDS}`,
  ...mounts.flatMap((m) => ["--bind", m.source, m.target, m.flags.length === 0 ? "-" : m.flags.join(",")])
]

/** The helper command that makes `mounts` and exits. */
export const idmapCommand = (helper: string, mounts: ReadonlyArray<IdmappedMount>): ReadonlyArray<string> => [
  helper,
  "idmap",
  ...mapArgs(mounts)
]

/**
 * The helper command that joins the sandbox's cgroups, creates its user namespace, makes
 * `mounts` and runs what follows `--` as the namespace's root.
 */
export const launchCommand = (
  helper: string,
  cgroupProcs: ReadonlyArray<string>,
  mounts: ReadonlyArray<IdmappedMount>
): ReadonlyArray<string> => [
  helper,
  "launch",
  ...cgroupProcs.flatMap((file) => ["--cgroup", file]),
  ...mapArgs(mounts),
  "--"
]
