/**
 * What the keeper process does, as text: the shell script that stages every mount in a
 * private mount namespace (so loop devices, FUSE exports and flagged bind mounts vanish
 * with it) and then runs bubblewrap, which binds the staged mounts into the sandbox.
 */
import { Option } from "effect"
import type { ResolvedMount, SandboxImage } from "../../Sandbox.js"
import * as Idmap from "./idmap.js"
import * as FileServer from "./fileServer/fileServer.js"

/** The line the sandbox's init prints once the sandbox is fully set up. */
export const READY = "effect-volumes-ready"

/** Single-quoted for `sh`. */
export const quote = (value: string): string => `'${value.replaceAll("'", `'\\''`)}'`

/** One mount, with where it is staged in the keeper's namespace. */
export interface StagedMount {
  readonly resolved: ResolvedMount
  /** The directory (or file, for a bind of a file) the mount is staged on. */
  readonly stage: string
  /** For qcow2/vmdk: the file the FUSE export exposes the raw image on. */
  readonly exportFile: string
  /** For a served (or subpath) mount: how the file server stages it (see fileServer/). */
  readonly fileServer?: FileServer.Staging | undefined
}

export interface Plan {
  readonly name: string
  readonly image: SandboxImage
  readonly runDir: string
  readonly workdir: Option.Option<string>
  readonly mounts: ReadonlyArray<StagedMount>
  /** How the host's system directories look: symlinks (merged /usr) are recreated as such. */
  readonly hostLinks: ReadonlyArray<{ readonly path: string; readonly target: Option.Option<string> }>
  /** For image "host": the curated copy of the host's /etc (see etc.ts). */
  readonly etc: Option.Option<EtcCopy>
  /** ev-sandbox-helper and the compiled seccomp profile (see native.ts). */
  readonly helper: string
  readonly seccomp: string
  /** bubblewrap's path. */
  readonly bwrap: string
  /** The sandbox's cgroup directories, and the files that join them. */
  readonly cgroups: { readonly directories: ReadonlyArray<string>; readonly procs: ReadonlyArray<string> }
}

/** The curated /etc: its directory and its top-level entries (`link`: a symlink's target). */
export interface EtcCopy {
  readonly dir: string
  readonly entries: ReadonlyArray<{ readonly name: string; readonly link: Option.Option<string> }>
}

/** The descriptor bubblewrap reads the seccomp profile from (dash redirects fds 0-9 only). */
const SECCOMP_FD = 5

const mountFlags = (mount: ResolvedMount["mount"]): ReadonlyArray<string> => [
  // bubblewrap binds everything nosuid,nodev anyway; ask for them explicitly so the
  // staged mount already carries them.
  "nosuid",
  "nodev",
  ...(mount.readonly ? ["ro"] : []),
  ...(mount.noexec ? ["noexec"] : [])
]

const mountOptions = (mount: ResolvedMount["mount"], base: ReadonlyArray<string>): string =>
  [...base, ...mountFlags(mount)].join(",")

/**
 * How each staged mount gets the sandbox's ids: a host path is bound idmapped straight
 * from its source (one mount, no `mount` process); the others, mounted by the keeper, get
 * an idmapped clone stacked over them.
 */
export const idmapped = (staged: StagedMount): ReadonlyArray<Idmap.IdmappedMount> => {
  // FUSE mounts cannot be idmapped: the file server maps the sandbox's ids itself (evfs --id-base).
  if (staged.fileServer?.serve === true) return []
  // A subpath is bound (through a descriptor) by the file server on the stage: the clone goes over it.
  if (staged.resolved.source._tag === "HostPath" && staged.fileServer === undefined) {
    return [{ source: staged.resolved.source.hostPath, target: staged.stage, flags: mountFlags(staged.resolved.mount) }]
  }
  return [{ source: staged.stage, target: staged.stage, flags: [] }]
}

/** QEMU option values escape "," by doubling it. */
const qemuValue = (value: string): string => value.replaceAll(",", ",,")

/** The keeper-script lines that stage one mount (also used for live mounts). */
export const stageCommands = (staged: StagedMount, index: number): ReadonlyArray<string> => {
  const { mount, source } = staged.resolved
  const stage = quote(staged.stage)
  switch (source._tag) {
    case "HostPath":
      if (staged.fileServer !== undefined) {
        return FileServer.stageCommands(staged.fileServer, source.hostPath, staged.stage, quote)
      }
      return [] // bound by the launch helper, see idmapped()
    case "Memory":
      return [
        `mount -t tmpfs -o ${
          mountOptions(mount, [
            "mode=0755",
            ...Option.match(source.sizeMib, { onNone: () => [], onSome: (mib) => [`size=${mib}m`] })
          ])
        } tmpfs ${stage}`
      ]
    case "Image": {
      const loop = `mount -t ${quote(source.fstype)} -o ${mountOptions(mount, ["loop"])}`
      const remember = `loops="$loops $(findmnt -n -o SOURCE ${stage})"`
      if (source.format === "raw") return [`${loop} ${quote(source.hostPath)} ${stage}`, remember]
      const readOnly = mount.readonly ? ",read-only=on" : ""
      const file = quote(staged.exportFile)
      return [
        // The raw view of the image, served by qemu-storage-daemon over FUSE inside this
        // namespace; it dies with the keeper (pdeathsig) and its export with the namespace.
        `: > ${file}`,
        `setpriv --pdeathsig KILL qemu-storage-daemon` +
        ` --blockdev ${quote(`driver=file,node-name=f${index},filename=${qemuValue(source.hostPath)}${readOnly}`)}` +
        ` --blockdev ${quote(`driver=${source.format},node-name=q${index},file=f${index}${readOnly}`)}` +
        ` --export ${
          quote(
            `type=fuse,id=e${index},node-name=q${index},mountpoint=${qemuValue(staged.exportFile)},writable=${
              mount.readonly ? "off" : "on"
            }`
          )
        } </dev/null 3>&- &`,
        `qsd_pids="$qsd_pids $!"`,
        `await_export ${file} $!`,
        `${loop} ${file} ${stage}`,
        remember
      ]
    }
  }
}

/**
 * Unmounts the staged mounts (newest first) before stopping the qemu-storage-daemons,
 * so ext4 on a FUSE export is unmounted cleanly while its daemon can still write.
 */
const prelude = (
  helper: string,
  runDir: string,
  stages: ReadonlyArray<string>,
  /** FUSE export files. */
  files: ReadonlyArray<string>,
  cgroups: ReadonlyArray<string>
): ReadonlyArray<string> => {
  // Newest first; the helper unmounts each as often as something is mounted on it (the
  // idmapped clone of idmap.ts is stacked on each staged mount).
  const umounts = [...stages].reverse().flatMap((stage) => ["--umount", stage])
  // One helper process does the unmounts and then the removals: never recursive, like
  // `rm -fd` (files and empty directories only, nothing still mounted), so it can never
  // reach into a volume; it also cleans up when our process was killed. The stages and
  // export files, then the run directory they were in, then the sandbox's cgroups once
  // their last process has left them (nobody else would remove them if our process died).
  const finish = [
    helper,
    "cleanup",
    ...umounts,
    ...[...stages, ...files, runDir].flatMap((path) => ["--remove", path]),
    ...cgroups.flatMap((dir) => ["--cgroup", dir])
  ].map(quote).join(" ")
  return [
    "set -eu",
    `qsd_pids=""`,
    `fs_pids=""`,
    `loops=""`,
    // Bounded waits (10 s): a stuck kernel or daemon must not keep the keeper alive forever.
    `await_gone() { n=0; while [ -e "$1" ] && [ "$n" -lt 1000 ]; do n=$((n + 1)); sleep 0.01; done; }`,
    `await_exit() {`,
    // One process that waits on a pidfd, where the file server's binary is there; else a poll loop.
    `  if [ -x ${quote(FileServer.BINARY)} ]; then ${quote(FileServer.BINARY)} --await-exit="$1" || true; return; fi`,
    `  n=0`,
    `  while [ -e "/proc/$1" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ] && [ "$n" -lt 5000 ]; do`,
    `    n=$((n + 1)); sleep 0.002`,
    `  done`,
    `}`,
    `cleanup() {`,
    ...FileServer.cleanupCommands(runDir, quote),
    // With loop devices, storage daemons or file servers, the unmounts come first: unmounting
    // is finished when the loop device is released (the file system may still be flushing
    // through it after umount returns); only then may a qemu-storage-daemon go, and a file
    // server ends once its mount is gone (waited for by `wait`).
    `  if [ -n "$loops$qsd_pids$fs_pids" ]; then`,
    ...(umounts.length === 0 ? [] : [`    ${[helper, "cleanup", ...umounts].map(quote).join(" ")} || true`]),
    `    for l in $loops; do await_gone "/sys/block/\${l#/dev/}/loop/backing_file"; done`,
    `    for p in $qsd_pids; do kill "$p" 2>/dev/null || true; done`,
    `    for p in $qsd_pids; do await_exit "$p"; kill -9 "$p" 2>/dev/null || true; done`,
    `  fi`,
    `  wait 2>/dev/null || true`,
    `  ${finish} 2>/dev/null || true`,
    `}`,
    "trap cleanup EXIT",
    // A start that is given up on (SIGTERM to the keeper's group) still cleans up.
    "trap 'exit 143' TERM",
    // Waits until the FUSE export of file $1 (served by pid $2) is mounted.
    `await_export() {`,
    `  n=0`,
    `  until grep -qF " $1 " /proc/self/mountinfo; do`,
    `    n=$((n + 1))`,
    `    if [ "$n" -gt 1000 ] || ! kill -0 "$2" 2>/dev/null; then echo "qemu-storage-daemon did not export $1" >&2; exit 1; fi`,
    `    sleep 0.01`,
    `  done`,
    `}`
  ]
}

/** The root of the sandbox: the host's system read-only, or an overlay of a root fs dir. */
const rootCommands = (plan: Plan): {
  readonly staging: ReadonlyArray<string>
  readonly bwrap: ReadonlyArray<string>
} => {
  if (plan.image === "host") {
    const bwrap: Array<string> = ["--ro-bind", "/usr", "/usr", ...Option.match(plan.etc, {
      onNone: () => [],
      onSome: (etc) => etcArgs(plan, etc)
    })]
    for (const link of plan.hostLinks) {
      if (Option.isSome(link.target)) bwrap.push("--symlink", link.target.value, link.path)
      else bwrap.push("--ro-bind", link.path, link.path)
    }
    return { staging: [], bwrap }
  }
  // An overlay with a tmpfs upper layer: bubblewrap can create mount points, and the
  // image directory itself is never written. Overlays cannot be idmapped, their layers
  // can: the image through an idmapped bind, the upper layer by belonging to the
  // sandbox's root (its files then are the sandbox's, on a tmpfs nobody else sees).
  const ovl = `${plan.runDir}/overlay`
  const root = `${plan.runDir}/root`
  const lower = `${plan.runDir}/lower`
  const owner = `${Idmap.HOST_ID_BASE}:${Idmap.HOST_ID_BASE}`
  return {
    staging: [
      Idmap.idmapCommand(plan.helper, [{ source: plan.image, target: lower, flags: ["nosuid", "nodev"] }])
        .map(quote).join(" "),
      `mount -t tmpfs -o mode=0755,uid=${Idmap.HOST_ID_BASE},gid=${Idmap.HOST_ID_BASE} tmpfs ${quote(ovl)}`,
      `mkdir ${quote(`${ovl}/upper`)} ${quote(`${ovl}/work`)}`,
      `chown ${owner} ${quote(`${ovl}/upper`)} ${quote(`${ovl}/work`)}`,
      `mount -t overlay overlay -o ${
        quote(`lowerdir=${lower},upperdir=${ovl}/upper,workdir=${ovl}/work`)
      } ${quote(root)}`
    ],
    bwrap: ["--bind", root, "/"]
  }
}

/**
 * Where the launch helper binds the curated /etc: it may live where the sandbox's root
 * cannot search (under /root/.cache), so it is bound as root first.
 */
const etcStage = (plan: Plan): string => `${plan.runDir}/etc`

/**
 * One read-only bind of the copy; but when a mount goes under /etc, bubblewrap needs to
 * create its mount point: then /etc is a tmpfs with the copy's entries bound in, made
 * read-only after the mounts (see bwrapArgs).
 */
const etcArgs = (plan: Plan, etc: EtcCopy): ReadonlyArray<string> =>
  plan.mounts.some((m) => underEtc(m.resolved.mount.guestPath))
    ? [
      "--tmpfs",
      "/etc",
      ...etc.entries.flatMap(({ link, name }) =>
        Option.match(link, {
          onNone: () => ["--ro-bind", `${etcStage(plan)}/${name}`, `/etc/${name}`],
          onSome: (target) => ["--symlink", target, `/etc/${name}`]
        })
      )
    ]
    : ["--ro-bind", etcStage(plan), "/etc"]

const underEtc = (guestPath: string): boolean => guestPath.startsWith("/etc/")

const depth = (guestPath: string): number => guestPath.split("/").filter((s) => s.length > 0).length

/** The bubblewrap command line of the sandbox (without the init command). */
export const bwrapArgs = (plan: Plan, rootArgs: ReadonlyArray<string>): ReadonlyArray<string> => {
  const args: Array<string> = [
    ...rootArgs,
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    // Listed one by one: the user namespace is the launch helper's (idmap.ts), already entered.
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
    "--hostname",
    plan.name.slice(0, 63),
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL"
  ]
  // Parents before children, so nested guest paths land inside their parent mount.
  const ordered = [...plan.mounts].sort((a, b) => depth(a.resolved.mount.guestPath) - depth(b.resolved.mount.guestPath))
  for (const staged of ordered) {
    args.push(staged.resolved.mount.readonly ? "--ro-bind" : "--bind", staged.stage, staged.resolved.mount.guestPath)
  }
  if (Option.isSome(plan.workdir)) args.push("--dir", plan.workdir.value)
  if (Option.isSome(plan.etc) && plan.mounts.some((m) => underEtc(m.resolved.mount.guestPath))) {
    args.push("--remount-ro", "/etc")
  }
  args.push(
    "--remount-ro",
    "/",
    "--chdir",
    Option.getOrElse(plan.workdir, () => "/"),
    "--seccomp",
    String(SECCOMP_FD),
    "--info-fd",
    "3"
  )
  return args
}

/** The keeper's script: stage, run the sandbox until stdin closes, clean up. */
export const script = (plan: Plan): string => {
  const root = rootCommands(plan)
  const init = `echo ${READY}; while read -r _; do :; done`
  const launch = Idmap.launchCommand(plan.helper, plan.cgroups.procs, [
    // Host files outside the mounts stay the host's: not idmapped.
    ...Option.toArray(plan.etc).map((etc) => ({
      source: etc.dir,
      target: etcStage(plan),
      flags: ["ro", "nosuid", "nodev", "noidmap"]
    })),
    ...plan.mounts.flatMap(idmapped)
  ])
  const bwrap = [...launch, plan.bwrap, ...bwrapArgs(plan, root.bwrap), "--", "/bin/sh", "-c", init].map(quote).join(" ")
  return [
    ...prelude(
      plan.helper,
      plan.runDir,
      [
        ...(plan.image === "host" ? [] : [`${plan.runDir}/lower`, `${plan.runDir}/overlay`, `${plan.runDir}/root`]),
        ...(Option.isSome(plan.etc) ? [etcStage(plan)] : []),
        ...plan.mounts.map((m) => m.stage)
      ],
      plan.mounts.filter((m) => m.resolved.source._tag === "Image" && m.resolved.source.format !== "raw").map((m) =>
        m.exportFile
      ),
      plan.cgroups.directories
    ),
    ...root.staging,
    ...plan.mounts.flatMap(stageCommands),
    ...FileServer.awaitCommands(plan.mounts, quote),
    `${bwrap} ${SECCOMP_FD}< ${quote(plan.seccomp)} || exit $?`
  ].join("\n")
}
