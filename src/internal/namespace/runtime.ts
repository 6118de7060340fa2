/**
 * The namespace runtime. One long-lived keeper process per sandbox:
 * `unshare --mount --propagation private sh -c <script>` stages the mounts in a private
 * mount namespace and runs bubblewrap through ev-sandbox-helper, which puts it in the
 * sandbox's cgroups (cgroups.ts) and user namespace with idmapped mounts (idmap.ts);
 * bubblewrap's init, under the seccomp profile (native.ts), waits on the keeper's stdin.
 * Commands enter the sandbox's cgroups and namespaces through the helper too, which drops
 * every capability and loads the same profile before the user's program runs, so they
 * share its processes, /tmp and mounts.
 *
 * Nothing outlives us: the keeper's stdin is a pipe from this process, so when we exit
 * (even on SIGKILL) the init sees EOF, the sandbox's PID namespace ends, bubblewrap
 * exits, and the private mount namespace with its loop devices and FUSE exports goes.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { accessSync, constants, existsSync, lstatSync, readdirSync, readlinkSync, statSync } from "node:fs"
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { Deferred, Duration, Effect, Option, Stream } from "effect"
import type {
  ExecEvent,
  ExecOptions,
  ResolvedMount,
  RunningSandbox,
  SandboxRuntimeService,
  StartSpec
} from "../../Sandbox.js"
import { InvalidConfig, SandboxError, Unsupported } from "../../VolumeError.js"
import * as Cgroups from "./cgroups.js"
import * as Etc from "./etc.js"
import * as Native from "./native.js"
import type { FileServerFailure } from "../fileServerFailure.js"
import * as Account from "./fileServer/account.js"
import * as FileServer from "./fileServer/fileServer.js"
import * as LiveMount from "./fileServer/liveMount.js"
import * as Plan from "./plan.js"
import * as Process from "./process.js"

const BACKEND = "namespace"

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/** How long staging the mounts and starting bubblewrap may take (a stuck mount, a hung FUSE daemon). */
const START_TIMEOUT = Duration.seconds(60)

/** How long a stopping sandbox may take before its keeper is killed. */
const STOP_GRACE = Duration.seconds(10)

/** Programs found on `$PATH`, by `$PATH` and name: every start looks for bwrap and unshare. */
const found = new Map<string, string>()

/** Where `program` is on `$PATH` (a hit is remembered for the same `$PATH`; a miss is looked up again). */
const which = (program: string): Option.Option<string> => {
  const path = process.env.PATH ?? DEFAULT_PATH
  const known = found.get(`${path}\0${program}`)
  if (known !== undefined) return Option.some(known)
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, program)
    try {
      accessSync(candidate, constants.X_OK)
      found.set(`${path}\0${program}`, candidate)
      return Option.some(candidate)
    } catch {
      // not here
    }
  }
  return Option.none()
}

const startError = (sandbox: string, message: string) => new SandboxError({ sandbox, reason: "Start", message })

/** Refuses what this runtime cannot honour; see `NamespaceRuntime.layer`. */
const checkMount = (resolved: ResolvedMount) =>
  Effect.gen(function*() {
    const { mount, source } = resolved
    const where = `mount at ${JSON.stringify(mount.guestPath)}`
    // Policies, ownership and quotas are served by the file server (fileServer/).
    yield* FileServer.check(resolved)
    switch (source._tag) {
      case "HostPath":
        if (!existsSync(source.hostPath)) {
          return yield* new InvalidConfig({ message: `${where}: the host path ${JSON.stringify(source.hostPath)} does not exist` })
        }
        return
      case "Image":
        if (!existsSync(source.hostPath) || !statSync(source.hostPath).isFile()) {
          return yield* new InvalidConfig({
            message: `${where}: the disk image ${JSON.stringify(source.hostPath)} is not an existing file`
          })
        }
        if (source.format !== "raw" && Option.isNone(which("qemu-storage-daemon"))) {
          return yield* new Unsupported({
            operation: `${source.format} disk image on the ${where} (needs qemu-storage-daemon, ` +
              `Debian package qemu-system-common, and /dev/fuse)`,
            backend: BACKEND
          })
        }
        return
      case "Memory":
        return
    }
  })

const HOST_LINKS = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]

const hostLinks = (): Plan.Plan["hostLinks"] =>
  HOST_LINKS.flatMap((path) => {
    try {
      const stat = lstatSync(path)
      if (stat.isSymbolicLink()) return [{ path, target: Option.some(readlinkSync(path)) }]
      return stat.isDirectory() ? [{ path, target: Option.none() }] : []
    } catch {
      return []
    }
  })

interface Keeper {
  readonly child: ChildProcess
  readonly exited: Deferred.Deferred<void>
  /** Host pid of the sandbox's PID 1. */
  readonly sandboxPid: number
}

/** Starts the keeper and waits until the sandbox is up; stopping it waits until it is gone. */
const startKeeper = (name: string, unshare: string, script: string, onStopped: (stderr: string) => Effect.Effect<void>) =>
  // Spawning and registering the stop are one uninterruptible step; the wait for the
  // sandbox to come up (up to START_TIMEOUT) is interruptible, and the registered stop
  // ends the keeper then.
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const ready = yield* Deferred.make<number, SandboxError>()
      const exited = yield* Deferred.make<void>()
      const child = yield* Effect.try({
        try: () =>
          spawn(unshare, ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script], {
            stdio: ["pipe", "pipe", "pipe", "pipe"],
            detached: true,
            env: { PATH: process.env.PATH ?? DEFAULT_PATH }
          }),
        catch: (error) => startError(name, `cannot start unshare: ${String(error)}`)
      })
      let stdout = ""
      let stderr = ""
      let info = ""
      // Ready once the init has printed its line and bubblewrap has reported the pid
      // (two pipes: either may be read first).
      const checkReady = () => {
        const pid = /"child-pid":\s*(\d+)/.exec(info)?.[1]
        if (stdout.includes(Plan.READY) && pid !== undefined) Deferred.unsafeDone(ready, Effect.succeed(Number(pid)))
      }
      child.stdio[3]?.on("data", (data: Buffer) => {
        info += data.toString("utf8")
        checkReady()
      })
      child.stderr?.on("data", (data: Buffer) => {
        stderr = (stderr + data.toString("utf8")).slice(-8192)
      })
      child.stdout?.on("data", (data: Buffer) => {
        stdout += data.toString("utf8")
        checkReady()
      })
      child.stdin?.on("error", () => {
        // The keeper is gone; its exit is handled below.
      })
      child.on("error", (error) => {
        Deferred.unsafeDone(ready, Effect.fail(startError(name, `cannot start the sandbox: ${error.message}`)))
        Deferred.unsafeDone(exited, Effect.void)
      })
      child.on("exit", (code, signal) => {
        Deferred.unsafeDone(
          ready,
          Effect.fail(
            startError(
              name,
              `the sandbox exited while starting (status ${Process.exitStatus(code, signal)}): ${stderr.trim()}`
            )
          )
        )
        Deferred.unsafeDone(exited, Effect.void)
      })
      const keeper = (pid: number): Keeper => ({ child, exited, sandboxPid: pid })
      // A keeper that never reported ready is still staging (a mount or a file server may
      // hang): it is terminated rather than asked to stop, so an interrupted start returns
      // at once; its EXIT trap still unmounts and stops the file servers.
      const stop = Effect.suspend(() =>
        Deferred.isDone(ready).pipe(
          Effect.flatMap((up) => stopKeeper({ child, exited }, up ? "graceful" : "terminate"))
        )
      )
      yield* Effect.addFinalizer(() => Effect.zipRight(stop, Effect.suspend(() => onStopped(stderr))))
      return yield* restore(Deferred.await(ready)).pipe(
        Effect.timeoutFail({
          duration: START_TIMEOUT,
          onTimeout: () => startError(name, `the sandbox did not start within ${Duration.format(START_TIMEOUT)}: ${stderr.trim()}`)
        }),
        Effect.map(keeper),
        Effect.tapError(() => stopKeeper({ child, exited }, "terminate"))
      )
    })
  )

/**
 * Stops a keeper: EOF on its stdin ends a running sandbox's init, which ends the PID
 * namespace, bubblewrap, and the keeper; a keeper still starting (`"terminate"`) also gets
 * SIGTERM on its whole group, since it waits for whatever it is staging, not for stdin.
 * Either way it is killed after `STOP_GRACE`.
 */
const stopKeeper = (
  keeper: Pick<Keeper, "child" | "exited">,
  how: "graceful" | "terminate"
) =>
  Effect.gen(function*() {
    keeper.child.stdin?.end()
    if (how === "terminate") Process.killGroup(keeper.child, "SIGTERM")
    const clean = yield* Deferred.await(keeper.exited).pipe(Effect.timeout(STOP_GRACE), Effect.option)
    if (Option.isNone(clean)) {
      yield* Effect.logWarning("sandbox keeper did not stop in time; killing it")
      Process.killGroup(keeper.child)
      yield* Deferred.await(keeper.exited)
    }
  })

/** A scoped directory for staging mounts; removed after the keeper is gone. */
const runDirectory = Effect.acquireRelease(
  Effect.tryPromise({
    try: async () => {
      // Named after our pid: whose sandbox it was is visible in keepers and leftovers.
      const dir = await mkdtemp(join(tmpdir(), `effect-volumes-sandbox-${process.pid}-`))
      // Searchable (not listable) for the sandbox's root, a host nobody, which bubblewrap
      // runs as: it binds the staged mounts and generated files from here. The mounts
      // themselves exist only in the keeper's private mount namespace.
      await chmod(dir, 0o711)
      return dir
    },
    catch: (error) => startError("", `cannot create a staging directory: ${String(error)}`)
  }),
  // Only host-side empty mount points and export files: the mounts lived in the keeper's
  // namespace, so nothing here reaches into a volume.
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/** A mount staged on `<runDir>/<name>` (a served one with its quota channel, for the scope's lifetime). */
const stagedMount = (resolved: ResolvedMount, runDir: string, name: string) =>
  Effect.gen(function*() {
    const stage = join(runDir, name)
    const fileServer = yield* Account.withAccount(Option.getOrUndefined(FileServer.stagingOf(resolved)), resolved, stage)
    yield* Effect.tryPromise({
      try: async () => {
        const { source } = resolved
        const isFile = source._tag === "HostPath" && !statSync(source.hostPath).isDirectory()
        if (isFile) await writeFile(stage, "")
        else await mkdir(stage)
      },
      catch: (error) => startError("", `cannot prepare a mount point: ${String(error)}`)
    })
    return { resolved, stage, exportFile: `${stage}.raw`, fileServer } satisfies Plan.StagedMount
  })

const execEnv = (spec: StartSpec, options: ExecOptions): Record<string, string> => ({
  PATH: DEFAULT_PATH,
  HOME: "/root",
  HOSTNAME: spec.name,
  ...Object.fromEntries(spec.env),
  ...options.env
})

/** The curated /etc of image "host" (made on first use and whenever the host's changed). */
const hostEtc = (runDir: string) =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(join(runDir, "etc"))
      const dir = Etc.curated(join(Native.cacheRoot(), "etc"))
      const entries = readdirSync(dir, { withFileTypes: true }).map((entry) => ({
        name: entry.name,
        link: entry.isSymbolicLink() ? Option.some(readlinkSync(join(dir, entry.name))) : Option.none()
      }))
      return { dir, entries } satisfies Plan.EtcCopy
    },
    catch: (error) => startError("", `cannot prepare /etc: ${String(error)}`)
  })

const checkImage = (image: string) =>
  Effect.gen(function*() {
    if (!existsSync(image) || !statSync(image).isDirectory()) {
      return yield* new InvalidConfig({ message: `image(${JSON.stringify(image)}) is not an existing directory` })
    }
    if (!existsSync(join(image, "bin/sh"))) {
      return yield* new Unsupported({
        operation: `image(${JSON.stringify(image)}) without /bin/sh, which the namespace runtime runs inside the sandbox`,
        backend: BACKEND
      })
    }
  })

/** The failure of a command the memory limit killed (exit status 137 and a new OOM kill). */
const outOfMemory = (spec: StartSpec, cgroups: Cgroups.SandboxCgroups, cmd: string) =>
  new SandboxError({
    sandbox: spec.name,
    reason: "OutOfMemory",
    message: `${cmd} was killed by the sandbox's memory limit (${
      Option.getOrElse(cgroups.memoryMib, () => 0)
    } MiB) with exit status 137`
  })

/** Fails the stream with `OutOfMemory` after the exit of a command the memory limit killed. */
const reportOutOfMemory = (spec: StartSpec, cgroups: Cgroups.SandboxCgroups, cmd: string) =>
(events: Stream.Stream<ExecEvent, SandboxError>): Stream.Stream<ExecEvent, SandboxError> =>
  Stream.suspend(() => {
    const before = cgroups.oomKills()
    return Stream.flatMap(events, (event) =>
      event._tag === "Exit" && event.exitCode === 137 && cgroups.oomKills() > before
        ? Stream.concat(Stream.make(event), Stream.fail(outOfMemory(spec, cgroups, cmd)))
        : Stream.make(event))
  })

/** The failure of a command that outlived its `timeout` (it was killed). */
const timedOut = (spec: StartSpec, cmd: string, timeout: Duration.DurationInput) =>
  new SandboxError({
    sandbox: spec.name,
    reason: "Timeout",
    message: `${cmd} did not finish within ${Duration.format(Duration.decode(timeout))}; it was killed`
  })

const start = (spec: StartSpec) =>
  Effect.gen(function*() {
    // Found once per $PATH, and run by path: no $PATH search in the keeper or the helper.
    const installed = (program: string) =>
      Option.match(which(program), {
        onNone: () => startError(spec.name, `${program} is not installed (Debian packages bubblewrap, util-linux)`),
        onSome: Effect.succeed
      })
    const bwrap = yield* installed("bwrap")
    const unshare = yield* installed("unshare")
    if (spec.image !== "host") yield* checkImage(spec.image)
    for (const resolved of spec.mounts) yield* checkMount(resolved)
    const limits = yield* Cgroups.resolve(spec.limits)
    const native = yield* Native.artifacts.pipe(Effect.mapError((error) => startError(spec.name, error.message)))

    const cgroups = yield* Cgroups.make(spec.name, limits)
    const runDir = yield* runDirectory
    const mounts = yield* Effect.forEach(spec.mounts, (resolved, i) => stagedMount(resolved, runDir, `m${i}`))
    if (spec.image !== "host") {
      yield* Effect.tryPromise({
        try: () => Promise.all(["lower", "overlay", "root"].map((dir) => mkdir(join(runDir, dir)))),
        catch: (error) => startError(spec.name, `cannot prepare the root: ${String(error)}`)
      })
    }
    const script = Plan.script({
      name: spec.name,
      image: spec.image,
      runDir,
      workdir: spec.workdir,
      mounts,
      hostLinks: hostLinks(),
      etc: spec.image === "host" ? Option.some(yield* hostEtc(runDir)) : Option.none(),
      helper: native.helper,
      seccomp: native.seccomp,
      bwrap,
      cgroups
    })
    // Mounts whose file server died while the sandbox ran (the keeper names them at stop).
    const failures: Array<FileServerFailure> = []
    const keeper = yield* startKeeper(spec.name, unshare, script, (stderr) =>
      Effect.map(FileServer.deaths(stderr, mounts), (dead) => void failures.push(...dead)))

    /** The exec helper's arguments: enter the sandbox, then run `cmd args`. */
    const helperArgs = (cmd: string, args: ReadonlyArray<string>, options: ExecOptions) => [
      "exec",
      "--target",
      String(keeper.sandboxPid),
      ...cgroups.procs.flatMap((file) => ["--cgroup", file]),
      "--seccomp",
      native.seccomp,
      "--cwd",
      options.cwd ?? Option.getOrElse(spec.workdir, () => "/"),
      "--",
      cmd,
      ...args
    ]
    const processOptions = (options: ExecOptions): Process.RunOptions => ({
      env: execEnv(spec, options),
      stdin: options.stdin,
      sandbox: spec.name
    })
    const execStream = (cmd: string, args: ReadonlyArray<string>, options: ExecOptions) => {
      const events = Process.run(native.helper, helperArgs(cmd, args, options), processOptions(options)).pipe(
        reportOutOfMemory(spec, cgroups, cmd)
      )
      const timeout = options.timeout
      return timeout === undefined
        ? events
        : events.pipe(Stream.interruptWhen(Effect.zipRight(Effect.sleep(timeout), Effect.fail(timedOut(spec, cmd, timeout)))))
    }
    // `execStream` collected, without the stream: the same process, errors and timeout.
    const exec = (cmd: string, args: ReadonlyArray<string>, options: ExecOptions) =>
      Effect.suspend(() => {
        const before = cgroups.oomKills()
        const ran = Process.collect(native.helper, helperArgs(cmd, args, options), processOptions(options)).pipe(
          Effect.filterOrFail(
            (done) => !(done.exitCode === 137 && cgroups.oomKills() > before),
            () => outOfMemory(spec, cgroups, cmd)
          )
        )
        const timeout = options.timeout
        return timeout === undefined
          ? ran
          : Effect.timeoutFail(ran, { duration: timeout, onTimeout: () => timedOut(spec, cmd, timeout) })
      })
    let live = 0
    const prepare = (resolved: ResolvedMount) =>
      Effect.gen(function*() {
        yield* checkMount(resolved)
        return yield* stagedMount(resolved, runDir, `${FileServer.LIVE_PREFIX}${live++}`)
      })
    const target = {
      name: spec.name,
      keeperPid: keeper.child.pid ?? 0,
      sandboxPid: keeper.sandboxPid,
      helper: native.helper,
      failed: (failure: FileServerFailure) => void failures.push(failure),
      prepare
    }
    const running: RunningSandbox = {
      execStream,
      exec,
      mount: (resolved) => LiveMount.attach(target, resolved),
      fileServerFailures: () => failures
    }
    return running
  })

/** The namespace runtime service. */
export const make: SandboxRuntimeService = { name: BACKEND, prepare: Effect.sync(() => void Cgroups.warmUpJoin()), start }
