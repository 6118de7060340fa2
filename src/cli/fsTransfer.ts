/**
 * `volumes fs NAME put` and `get`: trees between the host and a volume, like `cp -r`;
 * `-` is stdin (put) or stdout (get) for a single file. A put checks the whole tree
 * against the quota before it writes anything.
 */
import { Args, Command } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Option, Sink, Stream } from "effect"
import { BYTES_PER_MIB, formatBytes } from "../Size.js"
import type { VolumeHandle } from "../Volume.js"
import type { VolumeFsFailure } from "../VolumeError.js"
import { QuotaExceeded } from "../VolumeError.js"
import type { VolumeFs } from "../VolumeFs.js"
import { HostFileError, UsageError } from "./errors.js"
import { withVolumeFs } from "./fsVolume.js"
import * as Output from "./output.js"
import * as Progress from "./progress.js"
import { stdin, writeStdout } from "./stdio.js"

const warn = (text: string) => Effect.sync(() => void process.stderr.write(`warning: ${text}\n`))

const host = <A>(path: string, f: () => A): Effect.Effect<A, HostFileError> =>
  Effect.try({
    try: f,
    catch: (cause) =>
      new HostFileError({ path, message: `${path}: ${cause instanceof Error ? cause.message.replace(/^[A-Z]+: /, "") : String(cause)}` })
  })

const hostError = (path: string) => (cause: { readonly message: string }) =>
  new HostFileError({ path, message: `${path}: ${cause.message}` })

const joinVolume = (dir: string, name: string) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`)
const baseName = (path: string) => path.split("/").filter((s) => s !== "").pop() ?? ""

/** A file, directory or symlink to create during a transfer (links keep their target, everything its mode). */
interface Step {
  readonly kind: "file" | "directory" | "symlink"
  readonly from: string
  readonly to: string
  readonly size: number
  readonly mode: number
  /** A symlink's target, stored as given. */
  readonly target?: string
}

/** What a transfer did, for `--json` and the summary line. */
const summary = (verb: "put" | "get", steps: ReadonlyArray<Step>, to: string) => {
  const files = steps.filter((s) => s.kind === "file")
  return {
    to,
    files: files.length,
    directories: steps.filter((s) => s.kind === "directory").length,
    symlinks: steps.filter((s) => s.kind === "symlink").length,
    bytes: files.reduce((sum, s) => sum + s.size, 0),
    line: `${verb === "put" ? "copied" : "fetched"} ${files.length} file${files.length === 1 ? "" : "s"} ` +
      `(${formatBytes(files.reduce((sum, s) => sum + s.size, 0))}) to ${to}`
  }
}

const report = (asJson: boolean, verb: "put" | "get", steps: ReadonlyArray<Step>, to: string) => {
  const { line, ...record } = summary(verb, steps, to)
  return asJson ? Output.json(record) : Output.line(line)
}

/**
 * Runs the steps in order, then gives directories their modes deepest first: a directory
 * without its write bit (or a 0500 one) still receives its contents.
 */
const transfer = <E, R, E2, R2>(
  label: string,
  steps: ReadonlyArray<Step>,
  run: (step: Step, progress: Progress.Progress) => Effect.Effect<void, E, R>,
  directoryMode: (step: Step) => Effect.Effect<void, E2, R2>
) =>
  Effect.scoped(Effect.gen(function*() {
    const total = steps.reduce((sum, step) => sum + step.size, 0)
    const progress = yield* Progress.make(label, total)
    yield* Effect.forEach(steps, (step) => run(step, progress), { discard: true })
    const directories = steps.filter((step) => step.kind === "directory").reverse()
    yield* Effect.forEach(directories, directoryMode, { discard: true })
  }))

/** Whether a volume path is an existing directory. */
const isVolumeDirectory = (fs: VolumeFs, path: string) =>
  fs.stat(path).pipe(
    Effect.map((meta) => meta.kind === "directory"),
    Effect.catchTag("PathNotFound", () => Effect.succeed(false))
  )

/** Host files, directories and symlinks below `from` (special files are skipped with a warning). */
const planHostTree = (from: string, to: string): Effect.Effect<ReadonlyArray<Step>, HostFileError> =>
  Effect.gen(function*() {
    const steps: Array<Step> = []
    const skipped: Array<string> = []
    const visit = (path: string, target: string): Effect.Effect<void, HostFileError> =>
      Effect.gen(function*() {
        const info = yield* host(path, () => NodeFs.lstatSync(path))
        if (info.isFile()) {
          steps.push({ kind: "file", from: path, to: target, size: info.size, mode: info.mode & 0o7777 })
        } else if (info.isDirectory()) {
          steps.push({ kind: "directory", from: path, to: target, size: 0, mode: info.mode & 0o7777 })
          const names = (yield* host(path, () => NodeFs.readdirSync(path))).sort()
          for (const name of names) yield* visit(NodePath.join(path, name), joinVolume(target, name))
        } else if (info.isSymbolicLink()) {
          const linkTarget = yield* host(path, () => NodeFs.readlinkSync(path))
          steps.push({ kind: "symlink", from: path, to: target, size: 0, mode: 0o777, target: linkTarget })
        } else {
          skipped.push(path)
        }
      })
    yield* visit(from, to)
    for (const path of skipped) yield* warn(`skipped ${path}: only regular files, directories and symlinks are copied`)
    return steps
  })

/**
 * Fails before anything is written when the files cannot fit the quota: what they add
 * (their size less the size of the files they replace) against what is free.
 */
const checkQuota = (volume: VolumeHandle, fs: VolumeFs, steps: ReadonlyArray<Step>) =>
  Effect.gen(function*() {
    if (Option.isNone(volume.quotaMib)) return
    const quotaBytes = volume.quotaMib.value * BYTES_PER_MIB
    let requestedBytes = 0
    for (const step of steps) {
      if (step.kind !== "file") continue
      const replaced = yield* fs.stat(step.to).pipe(
        Effect.map((meta) => (meta.kind === "file" ? meta.size : 0)),
        Effect.orElseSucceed(() => 0)
      )
      requestedBytes += step.size - replaced
    }
    if (volume.usedBytes + requestedBytes > quotaBytes) {
      return yield* new QuotaExceeded({ volume: volume.name, quotaBytes, usedBytes: volume.usedBytes, requestedBytes })
    }
  })

export const put = Command.make("put", {
  source: Args.text({ name: "HOST_PATH" }).pipe(Args.withDescription("a host file or directory, or - for stdin")),
  destination: Args.text({ name: "VOLUME_PATH" }).pipe(
    Args.withDescription("where it goes (default /; required with -)"),
    Args.withDefault("/")
  ),
  json: Output.jsonOption
}, (args) =>
  withVolumeFs((fs, volume) =>
    Effect.gen(function*() {
      if (args.source === "-") {
        if (args.destination.endsWith("/")) {
          return yield* new UsageError({ message: "put - needs a file path to write stdin to, e.g. /data/in.bin", command: "volumes fs NAME put" })
        }
        const written = yield* Effect.scoped(Effect.gen(function*() {
          const progress = yield* Progress.make(`put ${args.destination}`, undefined)
          let bytes = 0
          yield* stdin.pipe(
            Stream.tap((chunk) => Effect.sync(() => void (bytes += chunk.length))),
            progress.track,
            Stream.run(fs.sink(args.destination))
          )
          return bytes
        }))
        const step: Step = { kind: "file", from: "-", to: args.destination, size: written, mode: 0o644 }
        return yield* report(args.json, "put", [step], args.destination)
      }
      const source = NodePath.resolve(args.source)
      const into = args.destination.endsWith("/") || (yield* isVolumeDirectory(fs, args.destination))
      const target = into ? joinVolume(args.destination, NodePath.basename(source)) : args.destination
      const steps = yield* planHostTree(source, target)
      yield* checkQuota(volume, fs, steps)
      const files = yield* FileSystem.FileSystem
      yield* transfer(`put ${args.source}`, steps, (step, progress) =>
        step.kind === "directory"
          ? fs.mkdir(step.to)
          : step.kind === "symlink"
          ? replaceWithLink(fs, step.target!, step.to)
          : files.stream(step.from).pipe(
            Stream.mapError(hostError(step.from)),
            progress.track,
            Stream.run(fs.sink(step.to, { mode: step.mode }))
          ), (step) => fs.chmod(step.to, step.mode))
      yield* report(args.json, "put", steps, target)
    })
  )).pipe(Command.withDescription("copy a host file or directory tree (or stdin) into the volume"))

/** A link at `path`, replacing a file or link already there (as `put` replaces files). */
const replaceWithLink = (fs: VolumeFs, target: string, path: string) =>
  fs.symlink(target, path).pipe(
    Effect.catchIf(
      (e) => e._tag === "VolumeFsError" && e.reason === "AlreadyExists",
      () => Effect.zipRight(fs.remove(path), fs.symlink(target, path))
    )
  )

/** Volume files, directories and symlinks below `from`. */
const planVolumeTree = (fs: VolumeFs, from: string, to: string) =>
  Effect.gen(function*() {
    const steps: Array<Step> = []
    const skipped: Array<string> = []
    const root = yield* fs.stat(from)
    const visitDirectory = (path: string, target: string): Effect.Effect<void, VolumeFsFailure> =>
      Effect.gen(function*() {
        for (const entry of yield* fs.list(path)) {
          const next = NodePath.join(target, baseName(entry.path))
          if (entry.kind === "directory") {
            steps.push({ kind: "directory", from: entry.path, to: next, size: 0, mode: entry.mode })
            yield* visitDirectory(entry.path, next)
          } else if (entry.kind === "file") {
            steps.push({ kind: "file", from: entry.path, to: next, size: entry.size, mode: entry.mode })
          } else if (entry.kind === "symlink" && Option.isSome(entry.target)) {
            steps.push({ kind: "symlink", from: entry.path, to: next, size: 0, mode: entry.mode, target: entry.target.value })
          } else {
            skipped.push(entry.path)
          }
        }
      })
    if (root.kind === "directory") {
      steps.push({ kind: "directory", from: root.path, to, size: 0, mode: root.mode })
      yield* visitDirectory(root.path, to)
    } else if (root.kind === "file") {
      steps.push({ kind: "file", from: root.path, to, size: root.size, mode: root.mode })
    } else if (root.kind === "symlink" && Option.isSome(root.target)) {
      steps.push({ kind: "symlink", from: root.path, to, size: 0, mode: root.mode, target: root.target.value })
    } else {
      skipped.push(root.path)
    }
    for (const path of skipped) yield* warn(`skipped ${path}: only regular files, directories and symlinks are copied`)
    return steps
  })

export const get = Command.make("get", {
  source: Args.text({ name: "VOLUME_PATH" }).pipe(Args.withDescription("a file or directory of the volume")),
  destination: Args.text({ name: "HOST_PATH" }).pipe(
    Args.withDescription("where it goes on the host (default .), or - for stdout"),
    Args.withDefault(".")
  ),
  json: Output.jsonOption
}, (args) =>
  withVolumeFs((fs) =>
    Effect.gen(function*() {
      if (args.destination === "-") return yield* Stream.runForEach(fs.readStream(args.source), writeStdout)
      const destination = NodePath.resolve(args.destination)
      const existing = yield* host(destination, () => NodeFs.statSync(destination, { throwIfNoEntry: false }))
      const into = args.destination.endsWith("/") || existing?.isDirectory() === true
      const name = baseName(args.source)
      const target = into && name !== "" ? NodePath.join(destination, name) : destination
      const steps = yield* planVolumeTree(fs, args.source, target)
      const files = yield* FileSystem.FileSystem
      // A destination ending in `/` receives the source under its own name, whether or not it exists yet.
      if (into && existing === undefined) yield* host(destination, () => NodeFs.mkdirSync(destination, { recursive: true }))
      yield* transfer(`get ${args.source}`, steps, (step, progress) =>
        step.kind === "directory"
          ? host(step.to, () => NodeFs.mkdirSync(step.to, { recursive: true, mode: 0o700 }))
          : step.kind === "symlink"
          ? host(step.to, () => {
            const there = NodeFs.lstatSync(step.to, { throwIfNoEntry: false })
            if (there !== undefined && !there.isDirectory()) NodeFs.unlinkSync(step.to)
            NodeFs.symlinkSync(step.target!, step.to)
          })
          : fs.readStream(step.from).pipe(
            // The platform's file sink refuses zero-length writes.
            Stream.filter((chunk) => chunk.length > 0),
            progress.track,
            Stream.run(files.sink(step.to).pipe(Sink.mapError(hostError(step.to)))),
            Effect.zipRight(host(step.to, () => NodeFs.chmodSync(step.to, step.mode)))
          ), (step) => host(step.to, () => NodeFs.chmodSync(step.to, step.mode)))
      yield* report(args.json, "get", steps, target)
    })
  )).pipe(Command.withDescription("copy a file or directory tree from the volume to the host (or a file to stdout)"))
