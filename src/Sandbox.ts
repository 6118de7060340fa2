/**
 * Sandboxes: a process environment with volumes mounted at guest paths, run by a
 * {@link SandboxRuntime} and tied to a `Scope`. Closing the scope (success, failure or
 * interruption) stops the sandbox and releases its mounts and attachment records.
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"
import { Context, Data, Effect, Exit, ExecutionStrategy, Option, Schema, Scope, Stream } from "effect"
import { FileServerFailure } from "./internal/fileServerFailure.js"
import * as SandboxStop from "./internal/sandboxStop.js"
import * as Subpath from "./internal/mount/subpath.js"
import * as Snapshot from "./internal/snapshot.js"
import * as SnapshotSource from "./internal/snapshotSource.js"
import * as Mount from "./Mount.js"
import type * as Size from "./Size.js"
import * as Volume from "./Volume.js"
import { VolumeBackend } from "./VolumeBackend.js"
import type { QuotaGrants } from "./VolumeBackend.js"
import type { CommitFailed, SnapshotNotFound, StorageError, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "./VolumeError.js"
import { CommitConflict, InvalidConfig, SandboxError, Unsupported } from "./VolumeError.js"
import * as VolumeSpec from "./VolumeSpec.js"

// ---------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------

/**
 * The root file system of a sandbox: `"host"` (the host's system, read-only) or the
 * absolute path of a root file-system directory.
 *
 * @since 0.1.0
 * @category models
 */
export type SandboxImage = "host" | (string & {})

/**
 * Options of {@link Sandbox.exec} and {@link Sandbox.execStream}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecOptions {
  /**
   * Bytes or text written to the command's standard input, which is then closed; or a
   * stream fed to it while the command runs (closed when the stream ends).
   */
  readonly stdin?: string | Uint8Array | Stream.Stream<Uint8Array> | undefined
  /** Extra environment variables; they override the sandbox's. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Working directory inside the sandbox (default: the sandbox's workdir, else `/`). */
  readonly cwd?: string | undefined
  /** The command is killed and the call fails with `SandboxError` (reason `Timeout`) after this. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * What a finished command produced. Output is decoded as UTF-8 and not trimmed.
 *
 * @since 0.1.0
 * @category models
 */
export class ExecResult extends Schema.Class<ExecResult>("ExecResult")({
  exitCode: Schema.Number,
  stdout: Schema.String,
  stderr: Schema.String
}) {}

/**
 * One event of a running command: output chunks as they come, then its exit code
 * (128 + the signal number when it was killed by a signal).
 *
 * @since 0.1.0
 * @category models
 */
export type ExecEvent = Data.TaggedEnum<{
  Stdout: { readonly data: Uint8Array }
  Stderr: { readonly data: Uint8Array }
  Exit: { readonly exitCode: number }
}>

/**
 * Constructors and matchers of {@link ExecEvent}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ExecEvent = Data.taggedEnum<ExecEvent>()

/**
 * Usage of one named volume, measured when its sandbox stopped.
 *
 * @since 0.1.0
 * @category models
 */
export class VolumeUsage extends Schema.Class<VolumeUsage>("VolumeUsage")({
  name: Schema.String,
  usedBytes: Schema.Number,
  quotaBytes: Schema.OptionFromNullOr(Schema.Number),
  /**
   * The sandbox grew a directory volume past its quota (the namespace runtime cannot
   * stop that while it runs); host-side writes fail with `QuotaExceeded` until usage is
   * back under the quota.
   */
  overQuota: Schema.Boolean
}) {}

/**
 * What the commit of one snapshot mount (a volume without a host directory) did: files and
 * links written, paths removed, entries the volume cannot hold, and the paths left to other
 * writers (docs/sandboxes.md, "Committing snapshot mounts").
 *
 * @since 0.2.0
 * @category models
 */
export const VolumeCommit = Snapshot.VolumeCommit

/**
 * @since 0.2.0
 * @category models
 */
export type VolumeCommit = Snapshot.VolumeCommit

/**
 * What {@link Sandbox.stop} reports: fresh usage of every mounted named volume, the names of
 * those over their quota, what was committed to each snapshot mount, and every conflict
 * (a path another writer changed too, left as they made it; the sandbox's version is kept
 * on the host at `keptAt`).
 *
 * @since 0.1.0
 * @category models
 */
export class StopResult extends Schema.Class<StopResult>("StopResult")({
  sandbox: Schema.String,
  volumes: Schema.Array(VolumeUsage),
  overQuota: Schema.Array(Schema.String),
  committed: Schema.Array(Snapshot.VolumeCommit),
  conflicts: Schema.Array(CommitConflict),
  /** Mounts whose file server died while the sandbox ran (their operations failed from then on). */
  fileServerFailures: Schema.optionalWith(Schema.Array(FileServerFailure), { default: () => [] })
}) {}

/**
 * A mount whose file server died while the sandbox ran (docs/sandboxes.md, "Faults").
 *
 * @since 0.3.0
 * @category models
 */
export { FileServerFailure }

/**
 * A running sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sandbox {
  readonly name: string
  /** Runs `cmd args` inside the sandbox and collects its output. */
  readonly exec: (
    cmd: string,
    args?: ReadonlyArray<string>,
    options?: ExecOptions
  ) => Effect.Effect<ExecResult, SandboxError>
  /** Runs `cmd args` inside the sandbox; interrupting the stream kills the command. */
  readonly execStream: (
    cmd: string,
    args?: ReadonlyArray<string>,
    options?: ExecOptions
  ) => Stream.Stream<ExecEvent, SandboxError>
  /**
   * Stops the sandbox, releases its mounts and attachment records, commits the changes in
   * its snapshot mounts (volumes without a host directory) and measures its named volumes.
   * Fails with `CommitFailed`, naming the volumes, when a change could not be committed
   * (every other change is). Once it has an outcome, later calls return the same one; an
   * interrupted call can be repeated. When the scope closes without it, a successful scope
   * commits and a failed or interrupted one discards (docs/sandboxes.md).
   */
  readonly stop: () => Effect.Effect<StopResult, CommitFailed | StorageError>
  /**
   * Adds a mount to the running sandbox (its running processes see it) until the scope
   * closes or {@link Sandbox.unmount} removes it; the rules of `create` apply (validation,
   * attachment records, one writer per disk volume).
   */
  readonly mount: (
    guestPath: string,
    f: (m: Mount.MountBuilder) => Mount.MountBuilder
  ) => Effect.Effect<
    void,
    InvalidConfig | VolumeNotFound | VolumeAlreadyExists | VolumeInUse | Unsupported | SandboxError | StorageError,
    Scope.Scope
  >
  /** Removes a mount added by {@link Sandbox.mount}; mounts made at start stay. */
  readonly unmount: (guestPath: string) => Effect.Effect<void, InvalidConfig>
}

// ---------------------------------------------------------------------------
// runtime contract
// ---------------------------------------------------------------------------

/**
 * Where a mount's data comes from once named volumes are resolved: a host directory or
 * file, a host disk image (named disk volumes are raw ext4 images), or memory.
 *
 * @since 0.1.0
 * @category models
 */
export type MountSource =
  | {
    readonly _tag: "HostPath"
    readonly hostPath: string
    /**
     * A directory volume's quota and usage at start: the runtime enforces it inside the
     * sandbox, with grants from `account` (the volume's usage account, shared with host-side
     * writes and other sandboxes) where the backend keeps one.
     */
    readonly quota?:
      | { readonly limitBytes: number; readonly usedBytes: number; readonly account?: QuotaGrants | undefined }
      | undefined
    /**
     * Only this directory below `hostPath` is mounted. A sandbox sharing the volume may plant
     * symlinks, so the runtime opens it without following any (not with a path string).
     */
    readonly subpath?: string | undefined
  }
  | {
    readonly _tag: "Image"
    readonly hostPath: string
    readonly format: Mount.DiskFormat
    readonly fstype: string
  }
  | { readonly _tag: "Memory"; readonly sizeMib: Option.Option<number> }

/**
 * A validated mount with its source resolved, as a runtime receives it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolvedMount {
  readonly mount: Mount.VolumeMount
  readonly source: MountSource
}

/**
 * Resource limits asked for with {@link SandboxBuilder.memory}, {@link SandboxBuilder.cpus}
 * and {@link SandboxBuilder.pids}; `None` leaves the runtime's default.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxLimits {
  readonly memoryMib: Option.Option<number>
  readonly cpus: Option.Option<number>
  readonly pids: Option.Option<number>
}

/**
 * What a runtime is asked to start.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartSpec {
  readonly name: string
  readonly image: SandboxImage
  readonly env: ReadonlyArray<readonly [string, string]>
  readonly workdir: Option.Option<string>
  readonly mounts: ReadonlyArray<ResolvedMount>
  /** A limit the runtime cannot enforce fails the start with `Unsupported`. */
  readonly limits: SandboxLimits
}

/**
 * What a command wrote, as chunks, and its exit status.
 *
 * @since 0.2.0
 * @category models
 */
export interface CollectedExec {
  readonly exitCode: number
  readonly stdout: ReadonlyArray<Uint8Array>
  readonly stderr: ReadonlyArray<Uint8Array>
}

/**
 * A sandbox as a runtime runs it; it stops when the scope given to `start` closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunningSandbox {
  readonly execStream: (
    cmd: string,
    args: ReadonlyArray<string>,
    options: ExecOptions
  ) => Stream.Stream<ExecEvent, SandboxError>
  /**
   * Optional: `execStream` run to its end with all its output kept, without the stream's
   * per-chunk work (`Sandbox.exec` uses it when present). Same process, errors and timeout.
   */
  readonly exec?: (
    cmd: string,
    args: ReadonlyArray<string>,
    options: ExecOptions
  ) => Effect.Effect<CollectedExec, SandboxError>
  /** Mounts whose file server died while the sandbox ran; complete once the start's scope closed. */
  readonly fileServerFailures?: () => ReadonlyArray<FileServerFailure>
  /** Adds a mount to the running sandbox until the scope closes (runtimes without it refuse live mounts). */
  readonly mount?: (
    resolved: ResolvedMount
  ) => Effect.Effect<void, InvalidConfig | Unsupported | SandboxError, Scope.Scope>
}

/**
 * How sandboxes run and how mounts are realised. A runtime honours every mount option
 * exactly or refuses it with `Unsupported`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxRuntimeService {
  /** For messages: `"namespace"`, `"microvm"`. */
  readonly name: string
  /**
   * Optional: called when a sandbox's creation begins, before its named volumes are
   * resolved, to start slow host-side preparation that needs nothing from the spec, so it
   * overlaps that work. Must not fail and must not wait for what it starts (the namespace
   * runtime begins the kernel's wait for its first cgroup join here; see cgroups.ts).
   */
  readonly prepare?: Effect.Effect<void>
  readonly start: (
    spec: StartSpec
  ) => Effect.Effect<RunningSandbox, InvalidConfig | Unsupported | SandboxError, Scope.Scope>
}

/**
 * The sandbox runtime in use (`NamespaceRuntime.layer`).
 *
 * @since 0.1.0
 * @category tags
 */
export class SandboxRuntime extends Context.Tag("effect-volumes/SandboxRuntime")<
  SandboxRuntime,
  SandboxRuntimeService
>() {}

// ---------------------------------------------------------------------------
// builder
// ---------------------------------------------------------------------------

type MountEntry =
  | { readonly _tag: "Describe"; readonly guestPath: string; readonly f: (m: Mount.MountBuilder) => Mount.MountBuilder }
  | { readonly _tag: "Built"; readonly mount: Mount.VolumeMount }

interface SandboxDraft {
  readonly name: string
  readonly image: SandboxImage
  readonly mounts: ReadonlyArray<MountEntry>
  readonly env: ReadonlyArray<readonly [string, string]>
  readonly workdir: Option.Option<string>
  readonly limits: SandboxLimits
}

/**
 * Describes a sandbox; immutable, every call returns a new builder.
 *
 * @since 0.1.0
 * @category constructors
 */
export class SandboxBuilder {
  private constructor(private readonly draft: SandboxDraft) {}

  /** A builder for the sandbox `name` on the host image, without mounts. */
  static make(name: string): SandboxBuilder {
    return new SandboxBuilder({
      name,
      image: "host",
      mounts: [],
      env: [],
      workdir: Option.none(),
      limits: { memoryMib: Option.none(), cpus: Option.none(), pids: Option.none() }
    })
  }

  private with(patch: Partial<SandboxDraft>): SandboxBuilder {
    return new SandboxBuilder({ ...this.draft, ...patch })
  }

  /** The root file system: `"host"` (default) or an absolute root file-system directory. */
  image(image: SandboxImage): SandboxBuilder {
    return this.with({ image })
  }

  /** Mounts what `f` describes at `guestPath`. */
  volume(guestPath: string, f: (m: Mount.MountBuilder) => Mount.MountBuilder): SandboxBuilder {
    return this.with({ mounts: [...this.draft.mounts, { _tag: "Describe", guestPath, f }] })
  }

  /** Adds a mount built earlier (or decoded from JSON). */
  mount(mount: Mount.VolumeMount): SandboxBuilder {
    return this.with({ mounts: [...this.draft.mounts, { _tag: "Built", mount }] })
  }

  /** Sets an environment variable of every command; a repeated key keeps the last value. */
  env(key: string, value: string): SandboxBuilder {
    return this.with({ env: [...this.draft.env.filter(([k]) => k !== key), [key, value] as const] })
  }

  /** The default working directory of commands (created when missing). */
  workdir(dir: string): SandboxBuilder {
    return this.with({ workdir: Option.some(dir) })
  }

  /**
   * The most memory (and swap) the sandbox's processes may use together; past it the
   * kernel kills one of them, and its exec fails with `SandboxError` reason
   * `OutOfMemory`. At least 16 MiB. Namespace runtime default: half the host's memory, at
   * most 2 GiB.
   */
  memory(size: Size.Mebibytes): SandboxBuilder {
    return this.with({ limits: { ...this.draft.limits, memoryMib: Option.some(size) } })
  }

  /**
   * How many CPUs' worth of time the sandbox may use (e.g. `0.5`, `2`), at least 0.01.
   * Namespace runtime default: no cap, but the sandbox shares CPU time fairly with the host.
   */
  cpus(n: number): SandboxBuilder {
    return this.with({ limits: { ...this.draft.limits, cpus: Option.some(n) } })
  }

  /**
   * How many processes and threads the sandbox may have at once (a fork fails with
   * `EAGAIN` past it), at least 8. Namespace runtime default: 1024.
   */
  pids(n: number): SandboxBuilder {
    return this.with({ limits: { ...this.draft.limits, pids: Option.some(n) } })
  }

  /** Validates, resolves named volumes and starts the sandbox for the lifetime of the scope. */
  create(): Effect.Effect<Sandbox, CreateError, SandboxRuntime | VolumeBackend | Scope.Scope> {
    return create(this.draft)
  }

  /**
   * Creates the sandbox, runs `f` with it and stops it, without a scope of the caller's:
   * when `f` succeeds the changes in snapshot mounts are committed and a commit failure is
   * this effect's `CommitFailed`; when `f` fails or is interrupted they are discarded.
   * Yields `f`'s value and the {@link StopResult}.
   */
  use<A, E, R>(f: (sandbox: Sandbox) => Effect.Effect<A, E, R>): Effect.Effect<
    { readonly value: A; readonly stop: StopResult },
    E | CreateError | CommitFailed,
    Exclude<R, Scope.Scope> | SandboxRuntime | VolumeBackend
  > {
    const draft = this.draft
    return Effect.scoped(Effect.gen(function*() {
      const sandbox = yield* create(draft)
      const value = yield* f(sandbox)
      return { value, stop: yield* sandbox.stop() }
    })).pipe(Effect.withSpan("Sandbox.use"))
  }
}

/**
 * Everything {@link SandboxBuilder.create} can fail with.
 *
 * @since 0.2.0
 * @category errors
 */
export type CreateError =
  | InvalidConfig
  | VolumeNotFound
  | VolumeAlreadyExists
  | VolumeInUse
  | SnapshotNotFound
  | Unsupported
  | SandboxError
  | StorageError

/**
 * Starts describing a sandbox named `name`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const builder = (name: string): SandboxBuilder => SandboxBuilder.make(name)

// ---------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Less than this cannot even start a shell in the sandbox. */
const MIN_MEMORY_MIB = 16
/** The sandbox's own init and a command's helper need a few. */
const MIN_PIDS = 8
/** The kernel's largest pid space. */
const MAX_PIDS = 4_194_304

const draftProblem = (draft: SandboxDraft): Option.Option<string> => {
  const name = VolumeSpec.nameProblem(draft.name)
  if (Option.isSome(name)) return Option.some(`sandbox ${name.value}`)
  if (draft.image !== "host" && (typeof draft.image !== "string" || !draft.image.startsWith("/"))) {
    return Option.some(`image(${JSON.stringify(draft.image)}) must be "host" or an absolute directory path`)
  }
  if (typeof draft.image === "string" && /[,:;\0]/.test(draft.image)) {
    return Option.some(`image(${JSON.stringify(draft.image)}) must not contain "," ":" ";" or NUL`)
  }
  for (const [key, value] of draft.env) {
    if (!ENV_KEY.test(key)) return Option.some(`env(${JSON.stringify(key)}, ...): not a valid variable name`)
    if (value.includes("\0")) return Option.some(`env(${JSON.stringify(key)}, ...): value contains NUL`)
  }
  const { cpus, memoryMib, pids } = draft.limits
  if (Option.isSome(memoryMib) && !(Number.isInteger(memoryMib.value) && memoryMib.value >= MIN_MEMORY_MIB)) {
    return Option.some(`memory(${memoryMib.value}): must be a whole number of MiB, at least ${MIN_MEMORY_MIB}`)
  }
  if (Option.isSome(cpus) && !(Number.isFinite(cpus.value) && cpus.value >= 0.01)) {
    return Option.some(`cpus(${cpus.value}): must be a number of CPUs, at least 0.01`)
  }
  if (Option.isSome(pids) && !(Number.isInteger(pids.value) && pids.value >= MIN_PIDS && pids.value <= MAX_PIDS)) {
    return Option.some(`pids(${pids.value}): must be a whole number from ${MIN_PIDS} to ${MAX_PIDS}`)
  }
  if (Option.isSome(draft.workdir)) {
    const dir = draft.workdir.value
    if (!dir.startsWith("/") || dir.includes("\0") || dir.split("/").includes("..")) {
      return Option.some(`workdir(${JSON.stringify(dir)}) must be an absolute path without ".." or NUL`)
    }
  }
  return Option.none()
}

interface NamedResolution {
  readonly handle: Volume.VolumeHandle
  readonly created: boolean
}

/** Finds or creates the volume of a named mount, as its mode says. */
const resolveNamed = (mount: Mount.NamedMount) =>
  Effect.gen(function*() {
    const spec = Mount.toSpec(mount)
    if (mount.mode === "existing" || Option.isNone(spec)) {
      return { handle: yield* Volume.get(mount.name), created: false } satisfies NamedResolution
    }
    if (mount.mode === "create") {
      return { handle: yield* Volume.create(spec.value), created: true } satisfies NamedResolution
    }
    const resolution = yield* Volume.resolve(spec.value)
    if (Option.isSome(resolution.mismatch)) {
      return yield* new InvalidConfig({
        message: `mount at ${JSON.stringify(mount.guestPath)}: the existing volume ${
          JSON.stringify(resolution.handle.name)
        } does not match ensureExists(): ${resolution.mismatch.value} (it is never changed; use another name or existing())`
      })
    }
    return resolution
  })


/** The source of a named volume's mount: its directory (and quota account, held by the scope) or its disk image. */
const namedSource = (handle: Volume.VolumeHandle, readonly: boolean) =>
  Effect.gen(function*() {
    if (handle.kind === "directory") {
      const { quotaGrants } = yield* VolumeBackend
      const account = Option.isNone(handle.quotaMib) || readonly || quotaGrants === undefined
        ? undefined
        : yield* quotaGrants(handle.name)
      const quota = Option.getOrUndefined(Option.map(handle.quotaMib, (mib) => ({
        limitBytes: mib * 1024 * 1024,
        usedBytes: handle.usedBytes,
        account
      })))
      return { _tag: "HostPath", hostPath: yield* handle.path(), quota } satisfies MountSource
    }
    if (Option.isNone(handle.diskPath)) {
      return yield* new Unsupported({ operation: `mounting the disk volume "${handle.name}"`, backend: handle.backendKind })
    }
    return { _tag: "Image", hostPath: handle.diskPath.value, format: "raw", fstype: "ext4" } satisfies MountSource
  })

/** The source narrowed to the mount's subpath, checked now (clear errors, nothing mounted yet). */
const withSubpath = (mount: Mount.NamedMount, source: MountSource) =>
  Option.isNone(mount.subpath) || source._tag !== "HostPath"
    ? Effect.succeed(source)
    : Subpath.check(source.hostPath, mount.subpath.value, mount.guestPath).pipe(
      Effect.as<MountSource>({ ...source, subpath: Subpath.segments(mount.subpath.value).join("/") })
    )

const directSource = (mount: Exclude<Mount.VolumeMount, Mount.NamedMount>): MountSource => {
  switch (mount._tag) {
    case "Bind":
      return { _tag: "HostPath", hostPath: mount.hostPath }
    case "Tmpfs":
      return { _tag: "Memory", sizeMib: mount.sizeMib }
    case "Disk":
      return {
        _tag: "Image",
        hostPath: mount.hostPath,
        format: mount.format,
        fstype: Option.getOrElse(mount.fstype, () => "ext4")
      }
  }
}

const toExecResult = (collected: CollectedExec): ExecResult =>
  new ExecResult({
    exitCode: collected.exitCode,
    stdout: Buffer.concat(collected.stdout).toString("utf8"),
    stderr: Buffer.concat(collected.stderr).toString("utf8")
  })

const collectExec = (events: Stream.Stream<ExecEvent, SandboxError>) =>
  Effect.map(
    Stream.runFold(
      events,
      { stdout: [] as Array<Uint8Array>, stderr: [] as Array<Uint8Array>, exitCode: -1 },
      (acc, event) => {
        switch (event._tag) {
          case "Stdout":
            acc.stdout.push(event.data)
            break
          case "Stderr":
            acc.stderr.push(event.data)
            break
          case "Exit":
            acc.exitCode = event.exitCode
        }
        return acc
      }
    ),
    toExecResult
  )

const create = Effect.fn("Sandbox.create")(function*(draft: SandboxDraft) {
  const problem = draftProblem(draft)
  if (Option.isSome(problem)) return yield* new InvalidConfig({ message: problem.value })
  const runtime = yield* SandboxRuntime
  if (runtime.prepare !== undefined) yield* runtime.prepare
  const mounts = yield* Effect.forEach(draft.mounts, (entry) =>
    entry._tag === "Built" ? Mount.validate(entry.mount) : Mount.build(entry.guestPath, entry.f))
  yield* Mount.validateMounts(mounts)

  const holders = (yield* VolumeBackend).holders
  const outer = yield* Effect.scope
  // Everything the sandbox holds lives in its own scope, so `stop()` can release it early.
  const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
  const created: Array<string> = []
  const named: Array<string> = []
  // Directory volumes without a host directory (cloud, memory) are mounted as snapshots:
  // materialised into a local cache at start, committed back at stop (docs/cloud.md).
  const snapshots: Array<Snapshot.CommitTarget> = []

  const resolvedKinds = new Map<string, VolumeSpec.VolumeKind>()
  const start = Effect.gen(function*() {
    const handles = new Map<Mount.NamedMount, Volume.VolumeHandle>()
    for (const mount of mounts) {
      if (mount._tag !== "Named") continue
      const { created: isNew, handle } = yield* resolveNamed(mount)
      if (isNew) created.push(handle.name)
      resolvedKinds.set(VolumeSpec.nameKey(mount.name), handle.kind)
      handles.set(mount, handle)
    }
    // Again with the kinds known: e.g. policies on a disk volume, a disk volume twice.
    yield* Mount.validateMounts(mounts, { resolvedKinds })
    const resolved: Array<ResolvedMount> = []
    for (const mount of mounts) {
      const handle = mount._tag === "Named" ? handles.get(mount) : undefined
      if (mount._tag !== "Named" || handle === undefined) {
        if (mount._tag !== "Named") resolved.push({ mount, source: directSource(mount) })
        continue
      }
      if (Option.isSome(mount.snapshot)) {
        // A snapshot mount: read-only, from the snapshot's own files (internal/snapshotSource.ts).
        const source = yield* SnapshotSource.resolve(handle, mount.snapshot.value, `sandbox ${draft.name}`, holders)
        resolved.push({ mount, source: yield* Scope.extend(source, scope) })
        continue
      }
      yield* holders.acquire(handle.name, `sandbox ${draft.name}`, mount.readonly ? "ro" : "rw").pipe(
        Scope.extend(scope)
      )
      if (!named.includes(handle.name)) named.push(handle.name)
      if (handle.kind === "directory" && Option.isNone(handle.local)) {
        if (Option.isSome(mount.uid) || Option.isSome(mount.gid)) {
          return yield* new InvalidConfig({
            message: `mount at ${JSON.stringify(mount.guestPath)}: the ${handle.backendKind} volume ${
              JSON.stringify(handle.name)
            } is mounted as a snapshot, which keeps no ownership overlay; uid() and gid() apply to local volumes`
          })
        }
        // The cache is held by the outer scope: it outlives the processes until the commit is done.
        const directory = yield* Snapshot.prepare(handle, draft.name).pipe(Scope.extend(outer))
        if (!mount.readonly) snapshots.push({ volume: handle.name, fs: handle.fs(), directory })
        resolved.push({ mount, source: yield* withSubpath(mount, { _tag: "HostPath", hostPath: directory }) })
        continue
      }
      resolved.push({
        mount,
        source: yield* withSubpath(mount, yield* namedSource(handle, mount.readonly).pipe(Scope.extend(scope)))
      })
    }
    return yield* runtime.start({
      name: draft.name,
      image: draft.image,
      env: draft.env,
      workdir: draft.workdir,
      mounts: resolved,
      limits: draft.limits
    }).pipe(Scope.extend(scope))
  })

  const running = yield* start.pipe(
    Effect.onExit((exit) =>
      Exit.isSuccess(exit) ? Effect.void : Effect.zipRight(
        Scope.close(scope, exit),
        // Only what this start created; data that existed before is never removed.
        Effect.forEach(created, (name) => Effect.ignore(Volume.remove(name)), { discard: true })
      )
    )
  )

  const backend = yield* Effect.context<VolumeBackend>()
  const measure: Effect.Effect<ReadonlyArray<VolumeUsage>, StorageError> = Effect.forEach(named, (name) =>
    Volume.get(name).pipe(
      Effect.map((handle) => {
        const quotaBytes = Option.map(handle.quotaMib, (mib) => mib * 1024 * 1024)
        return Option.some(
          new VolumeUsage({
            name: handle.name,
            usedBytes: handle.usedBytes,
            quotaBytes,
            overQuota: Option.match(quotaBytes, { onNone: () => false, onSome: (q) => handle.usedBytes > q })
          })
        )
      }),
      // Removed by someone else after the sandbox let go: nothing to report.
      Effect.catchTag("VolumeNotFound", () => Effect.succeedNone)
    )).pipe(
      Effect.map((usages) => usages.flatMap(Option.toArray)),
      Effect.provide(backend)
    )

  // Live mounts (sb.mount): each in a scope of its own, forked from the caller's.
  const current: Array<Mount.VolumeMount> = [...mounts]
  const live = new Map<string, Scope.CloseableScope>()
  const closeLive = (guestPath: string) =>
    Effect.suspend(() => {
      const liveScope = live.get(guestPath)
      live.delete(guestPath)
      return liveScope === undefined ? Effect.void : Scope.close(liveScope, Exit.void)
    })
  // Live mounts go before the sandbox's processes and commits.
  const closeAllLive = Effect.suspend(() => Effect.forEach([...live.keys()], closeLive, { discard: true })).pipe(
    Effect.uninterruptible
  )

  const stopper = yield* SandboxStop.make({
    sandbox: draft.name,
    scope,
    targets: snapshots,
    report: (committed) =>
      Effect.map(measure, (volumes) =>
        new StopResult({
          sandbox: draft.name,
          volumes,
          overQuota: volumes.filter((v) => v.overQuota).map((v) => v.name),
          committed,
          conflicts: committed.flatMap((c) => c.conflicts),
          fileServerFailures: running.fileServerFailures?.() ?? []
        }))
  })
  yield* Effect.addFinalizer((exit) => Effect.zipRight(closeAllLive, stopper.release(exit)))

  const stoppedError = () => new SandboxError({ sandbox: draft.name, reason: "Exec", message: `sandbox "${draft.name}" is stopped` })
  const execStream = (cmd: string, args: ReadonlyArray<string> = [], options: ExecOptions = {}) =>
    Stream.suspend(() => stopper.isStopped() ? Stream.fail(stoppedError()) : running.execStream(cmd, args, options))
  const exec = (cmd: string, args: ReadonlyArray<string> = [], options: ExecOptions = {}) =>
    Effect.suspend(() => {
      if (stopper.isStopped()) return Effect.fail(stoppedError())
      const collect = running.exec
      return collect === undefined
        ? collectExec(running.execStream(cmd, args, options))
        : Effect.map(collect(cmd, args, options), toExecResult)
    })

  const attachLive = (mount: Mount.VolumeMount, liveScope: Scope.Scope) =>
    Effect.gen(function*() {
      const addMount = running.mount
      if (addMount === undefined) {
        return yield* new Unsupported({ operation: "mounting into a running sandbox", backend: runtime.name })
      }
      if (mount._tag !== "Named") return yield* addMount({ mount, source: directSource(mount) })
      const { created: isNew, handle } = yield* resolveNamed(mount)
      yield* Effect.gen(function*() {
        resolvedKinds.set(VolumeSpec.nameKey(mount.name), handle.kind)
        yield* Mount.validateMounts(current.concat(mount), { resolvedKinds })
        yield* holders.acquire(handle.name, `sandbox ${draft.name}`, mount.readonly ? "ro" : "rw")
        if (handle.kind === "directory" && Option.isNone(handle.local)) {
          return yield* new Unsupported({
            operation: `mounting the ${handle.backendKind} volume "${handle.name}" into a running sandbox ` +
              `(it is mounted as a snapshot, committed at stop: mount it at start)`,
            backend: runtime.name
          })
        }
        const source = yield* withSubpath(mount, yield* namedSource(handle, mount.readonly))
        yield* addMount({ mount, source })
        if (!named.includes(handle.name)) named.push(handle.name)
      }).pipe(
        // Only what this mount created; data that existed before is never removed.
        Effect.tapError(() => isNew ? Effect.ignore(Volume.remove(handle.name)) : Effect.void)
      )
    }).pipe(Scope.extend(liveScope), Effect.provide(backend))

  const mountLive = Effect.fn("Sandbox.mount")(function*(
    guestPath: string,
    f: (m: Mount.MountBuilder) => Mount.MountBuilder
  ) {
    if (stopper.isStopped()) {
      return yield* new SandboxError({ sandbox: draft.name, reason: "Exec", message: `sandbox "${draft.name}" is stopped` })
    }
    const mount = yield* Mount.build(guestPath, f)
    yield* Mount.validateMounts(current.concat(mount), { resolvedKinds })
    const liveScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    yield* attachLive(mount, liveScope).pipe(Effect.onError((cause) => Scope.close(liveScope, Exit.failCause(cause))))
    current.push(mount)
    live.set(mount.guestPath, liveScope)
    yield* Scope.addFinalizer(
      liveScope,
      Effect.sync(() => {
        current.splice(current.indexOf(mount), 1)
        live.delete(mount.guestPath)
      })
    )
  })

  const unmountLive = Effect.fn("Sandbox.unmount")(function*(guestPath: string) {
    const key = Mount.normalizeGuestPath(guestPath)
    if (!live.has(key)) {
      return yield* new InvalidConfig({
        message: `unmount(${JSON.stringify(guestPath)}): no mount added with sb.mount is there` +
          (current.some((m) => m.guestPath === key) ? " (mounts made at start stay until the sandbox stops)" : "")
      })
    }
    yield* closeLive(key)
  })

  const sandbox: Sandbox = {
    name: draft.name,
    execStream,
    exec,
    stop: () => Effect.zipRight(closeAllLive, stopper.stop),
    mount: mountLive,
    unmount: unmountLive
  }
  return sandbox
})
