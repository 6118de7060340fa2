/**
 * The sandbox file server (SPEC §12, docs/sandboxes.md "The file server"): which mounts of
 * the namespace runtime are served by `evfs` (native/evfs/) instead of a plain bind,
 * the server's command line, and the keeper-script lines that start it.
 *
 * A mount is served when it needs what a bind mount cannot give: a guest-visible owner and
 * mode kept apart from the host inode (statVirtualization strict/relaxed, hostPermissions
 * private, uid/gid) or a hard quota. Every other mount stays a plain bind (no server, no
 * overhead).
 */
import { existsSync, statSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Effect, Option } from "effect"
import { FileServerFailure } from "../../fileServerFailure.js"

export { FileServerFailure }
import type { ResolvedMount } from "../../../Sandbox.js"
import { Unsupported } from "../../../VolumeError.js"
import * as Idmap from "../idmap.js"

/** The server, built by scripts/build-native.sh (src/ and dist/ sit at the same depth). */
export const BINARY = fileURLToPath(new URL("../../../../native/bin/evfs", import.meta.url))

const BACKEND = "namespace"

/** What a served mount asks of the server. */
export interface Service {
  readonly stat: "strict" | "relaxed" | "off"
  /** `native`: the policy was not set; a guest chmod reaches the host inode (the runtime's native behaviour). */
  readonly perms: "private" | "mirror" | "native"
  readonly uid: Option.Option<number>
  readonly gid: Option.Option<number>
  readonly quota: Option.Option<{ readonly limitBytes: number; readonly usedBytes: number }>
}

/** The service a mount needs, or `None` for a plain bind. */
export const serviceOf = (resolved: ResolvedMount): Option.Option<Service> => {
  const { mount, source } = resolved
  if (source._tag !== "HostPath" || (mount._tag !== "Bind" && mount._tag !== "Named")) return Option.none()
  const service: Service = {
    stat: Option.getOrElse(mount.statVirtualization, () => "off" as const),
    perms: Option.getOrElse(mount.hostPermissions, () => "native" as const),
    uid: mount.uid,
    gid: mount.gid,
    // A read-only mount cannot grow its volume.
    quota: mount.readonly ? Option.none() : Option.fromNullable(source.quota)
  }
  const needed = service.stat !== "off" || service.perms === "private" || Option.isSome(service.uid) ||
    Option.isSome(service.gid) || Option.isSome(service.quota)
  return needed ? Option.some(service) : Option.none()
}

/** The subpath of a mount's source, when it has one (opened by evfs, never by `mount`). */
const subpathOf = (resolved: ResolvedMount): Option.Option<string> =>
  resolved.source._tag === "HostPath" ? Option.fromNullable(resolved.source.subpath) : Option.none()

/** Refuses a served (or subpath) mount this machine cannot stage. */
export const check = (resolved: ResolvedMount) =>
  Effect.gen(function*() {
    const service = serviceOf(resolved)
    const subpath = subpathOf(resolved)
    if ((Option.isNone(service) && Option.isNone(subpath)) || resolved.source._tag !== "HostPath") return
    const what = Option.match(service, { onNone: () => "subpath(...)", onSome: describe })
    const where = `the mount at ${JSON.stringify(resolved.mount.guestPath)}`
    if (Option.isSome(service) && existsSync(resolved.source.hostPath) && !statSync(resolved.source.hostPath).isDirectory()) {
      return yield* new Unsupported({
        operation: `${what} on ${where}, a single file (the file server serves directories)`,
        backend: BACKEND
      })
    }
    if (!existsSync(BINARY) || (Option.isSome(service) && !existsSync("/dev/fuse"))) {
      return yield* new Unsupported({
        operation: `${what} on ${where} (needs /dev/fuse and the file server ${BINARY}, built by scripts/build-native.sh)`,
        backend: BACKEND
      })
    }
  })

/** What the mount asked for, for messages. */
const describe = (service: Service): string =>
  [
    ...(service.stat === "off" ? [] : [`statVirtualization("${service.stat}")`]),
    ...(service.perms === "native" ? [] : [`hostPermissions("${service.perms}")`]),
    ...Option.toArray(Option.map(service.uid, (n) => `uid(${n})`)),
    ...Option.toArray(Option.map(service.gid, (n) => `gid(${n})`)),
    ...(Option.isSome(service.quota) ? ["a quota"] : [])
  ].join(", ")

/** How the keeper stages a mount through evfs: serving it, or only binding a subpath safely. */
export interface Staging {
  /** evfs's command line, without the source and mount point. */
  readonly argv: ReadonlyArray<string>
  /** A daemon that serves the mount until it is unmounted (else a bind that exits at once). */
  readonly serve: boolean
}

/**
 * How evfs stages the mount, or `None` for a plain bind. (evfs can also write its final
 * usage to a file, `--report=FILE`; the runtime re-measures the volume at stop instead, see
 * docs/sandboxes.md.)
 */
export const stagingOf = (resolved: ResolvedMount): Option.Option<Staging> => {
  const service = serviceOf(resolved)
  const subpath = subpathOf(resolved)
  if (Option.isNone(service) && Option.isNone(subpath)) return Option.none()
  const flags = [
    ...Option.toArray(Option.map(subpath, (sub) => `--subpath=${sub}`)),
    ...(resolved.mount.readonly ? ["--ro"] : []),
    ...(resolved.mount.noexec ? ["--noexec"] : [])
  ]
  return Option.some(Option.match(service, {
    onNone: () => ({ argv: [BINARY, "--bind-only", ...flags], serve: false }),
    onSome: (service) => ({ argv: [...command(service), ...flags], serve: true })
  }))
}

const command = (service: Service): ReadonlyArray<string> => [
  BINARY,
  // FUSE mounts cannot be idmapped: evfs maps the sandbox's ids itself (idmap.ts).
  `--id-base=${Idmap.HOST_ID_BASE}`,
  `--stat=${service.stat}`,
  ...(service.perms === "native" ? [] : [`--perms=${service.perms}`]),
  ...Option.toArray(Option.map(service.uid, (n) => `--uid=${n}`)),
  ...Option.toArray(Option.map(service.gid, (n) => `--gid=${n}`)),
  ...Option.match(service.quota, {
    onNone: () => [],
    onSome: ({ limitBytes, usedBytes }) => [`--quota=${limitBytes}`, `--used=${usedBytes}`]
  })
]

/** Printed on the keeper's stderr at stop, with the stage's name, for each file server that died while the sandbox ran. */
export const DIED = "effect-volumes: a file server died while the sandbox ran"

/** Live mounts are staged on `<runDir>/live<N>` (see liveMount.ts). */
export const LIVE_PREFIX = "live"

/**
 * The first lines of the keeper's cleanup: a file server that is gone before its mount is
 * unmounted died while the sandbox ran (its mount failed every operation with ENOTCONN);
 * say so, so that the runtime reports it at stop. Then the stages of live mounts still
 * there (our process died before unmounting them) are unmounted and removed; their servers
 * exit on unmount.
 */
export const cleanupCommands = (runDir: string, quote: (value: string) => string): ReadonlyArray<string> => [
  `  for e in $fs_pids; do`,
  `    p=\${e%%:*}`,
  `    if [ ! -e "/proc/$p" ] || [ "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" = Z ]; then echo ${
    JSON.stringify(DIED)
  }" \${e#*:}" >&2; fi`,
  `  done`,
  `  for s in ${quote(runDir)}/${LIVE_PREFIX}*; do`,
  `    [ -e "$s" ] || continue`,
  `    case "$s" in *.log) rm -f "$s" ;; *) umount -l "$s" 2>/dev/null || true; rmdir "$s" 2>/dev/null || rm -f "$s" 2>/dev/null || true ;; esac`,
  `  done`
]

/** The last component of a stage (`m0`, `live3`): also a shell identifier. */
const stageName = (stage: string): string => stage.slice(stage.lastIndexOf("/") + 1)

/**
 * Keeper-script lines that wait until every server started by `stageCommands` has mounted
 * (`evfs --await`: one process per mount, no poll loop of grep and sleep), or fail the start
 * with the server's own message. They run after all other staging, so the servers start
 * while the rest is staged.
 */
export const awaitCommands = (
  staged: ReadonlyArray<{ readonly stage: string; readonly fileServer?: Staging | undefined; readonly resolved: ResolvedMount }>,
  quote: (value: string) => string
): ReadonlyArray<string> =>
  staged.filter((m) => m.fileServer?.serve === true).flatMap((m) => [
    `if ! ${quote(BINARY)} --await=${quote(m.stage)} "$fs_pid_${stageName(m.stage)}"; then`,
    `  echo ${quote(`the file server for ${m.resolved.mount.guestPath} did not start`)} >&2; exit 1`,
    `fi`
  ])

/**
 * Keeper-script lines that serve `source` on `stage`: the server runs in the keeper's private
 * mount namespace and dies with the keeper (pdeathsig); its pid joins `qsd_pids`, the list the
 * keeper's cleanup stops after unmounting (an unmounted evfs exits by itself; a stuck one gets
 * SIGTERM, then SIGKILL). `awaitCommands` waits until the mount is there.
 */
export const stageCommands = (
  staging: Staging,
  source: string,
  stage: string,
  quote: (value: string) => string
): ReadonlyArray<string> => staging.serve ? [
  `setpriv --pdeathsig KILL ${[...staging.argv, source, stage].map(quote).join(" ")} </dev/null 3>&- &`,
  `qsd_pids="$qsd_pids $!"`,
  `fs_pids="$fs_pids $!:${stageName(stage)}"`,
  `fs_pid_${stageName(stage)}=$!`
] : [`${[...staging.argv, source, stage].map(quote).join(" ")} </dev/null 3>&-`]

/** What a dead server's mount failed with, for people. */
export const DEATH_REASON = "the file server exited while the sandbox ran; operations on the mount failed with ENOTCONN from then on"

/** A mount's identity in a failure report. */
export const failureOf = (resolved: ResolvedMount): FileServerFailure =>
  new FileServerFailure({
    guestPath: resolved.mount.guestPath,
    volume: resolved.mount._tag === "Named" ? Option.some(resolved.mount.name) : Option.none(),
    reason: DEATH_REASON
  })

/**
 * The mounts whose file servers a stopped keeper found dead (it names their stages, see
 * `cleanupCommands`), each logged as a warning.
 */
export const deaths = (
  keeperStderr: string,
  staged: ReadonlyArray<{ readonly resolved: ResolvedMount; readonly stage: string }>
): Effect.Effect<ReadonlyArray<FileServerFailure>> => {
  const dead = new Set(
    keeperStderr.split("\n").filter((line) => line.startsWith(`${DIED} `)).map((line) => line.slice(DIED.length + 1).trim())
  )
  const failures = staged.filter((m) => dead.has(m.stage.slice(m.stage.lastIndexOf("/") + 1))).map((m) => failureOf(m.resolved))
  return Effect.as(
    Effect.forEach(failures, (f) => Effect.logWarning(`${DIED}: the mount at ${f.guestPath}: ${f.reason}`), { discard: true }),
    failures
  )
}
