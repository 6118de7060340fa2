/**
 * `volumes fs NAME ls | cat | put | get | mkdir | rm | cp | mv | stat`.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Sink, Stream } from "effect"
import * as Volume from "../Volume.js"
import type { VolumeFsFailure } from "../VolumeError.js"
import type { VolumeFs } from "../VolumeFs.js"
import { HostFileError } from "./errors.js"
import * as Output from "./output.js"
import * as Progress from "./progress.js"
import { writeStdout } from "./stdio.js"

/** The `fs` command; its subcommands read the volume name with `yield* fsParent`. */
export const fsParent = Command.make("fs", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("the volume"))
}).pipe(Command.withDescription("work with the files of a volume (no sandbox needed)"))

const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON (sizes in bytes)"))
const volumePath = (name: string) => Args.text({ name })

/** Runs `f` with the files of the volume named on the command line. */
const withVolumeFs = <A, E, R>(f: (fs: VolumeFs) => Effect.Effect<A, E, R>) =>
  (Effect.gen(function*() {
    const { name } = yield* fsParent
    const volume = yield* Volume.get(name)
    return yield* f(volume.fs())
  }))

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

/** A file or directory to create during a transfer. */
interface Step {
  readonly kind: "file" | "directory"
  readonly from: string
  readonly to: string
  readonly size: number
  readonly mode: number
}

const transfer = <E, R>(
  label: string,
  steps: ReadonlyArray<Step>,
  run: (step: Step, progress: Progress.Progress) => Effect.Effect<void, E, R>
) =>
  Effect.scoped(Effect.gen(function*() {
    const total = steps.reduce((sum, step) => sum + step.size, 0)
    const progress = yield* Progress.make(label, total)
    yield* Effect.forEach(steps, (step) => run(step, progress), { discard: true })
  }))

const ls = Command.make("ls", { path: volumePath("PATH").pipe(Args.withDefault("/")), json }, (args) =>
  withVolumeFs((fs) =>
    Effect.flatMap(fs.list(args.path), (entries) =>
      args.json ? Output.json(entries.map(Output.entryRecord)) : Output.line(Output.entryTable(entries)))
  )).pipe(Command.withDescription("list a directory of the volume"))

const cat = Command.make("cat", { path: volumePath("PATH") }, (args) =>
  withVolumeFs((fs) => Stream.runForEach(fs.readStream(args.path), writeStdout))).pipe(
    Command.withDescription("write a file's raw bytes to stdout")
  )

const stat = Command.make("stat", { path: volumePath("PATH").pipe(Args.withDefault("/")), json }, (args) =>
  withVolumeFs((fs) =>
    Effect.flatMap(fs.stat(args.path), (meta) =>
      args.json ? Output.json(Output.metadataRecord(meta)) : Output.line(Output.metadataDetails(meta)))
  )).pipe(Command.withDescription("show metadata of a path (symlinks are not followed)"))

const mkdir = Command.make("mkdir", { path: volumePath("PATH") }, (args) => withVolumeFs((fs) => fs.mkdir(args.path)))
  .pipe(Command.withDescription("create a directory and its parents"))

const rm = Command.make("rm", {
  path: volumePath("PATH"),
  recursive: Options.boolean("recursive").pipe(Options.withAlias("r"), Options.withDescription("remove directories and their contents"))
}, (args) =>
  withVolumeFs((fs) =>
    args.recursive
      ? Effect.flatMap(fs.stat(args.path), (meta) => meta.kind === "directory" ? fs.removeDir(args.path) : fs.remove(args.path))
      : fs.remove(args.path)
  )).pipe(Command.withDescription("remove a file or symlink (-r: a directory tree)"))

const cp = Command.make("cp", { from: volumePath("FROM"), to: volumePath("TO") }, (args) =>
  withVolumeFs((fs) => fs.copy(args.from, args.to))).pipe(Command.withDescription("copy a file or directory tree inside the volume"))

const mv = Command.make("mv", { from: volumePath("FROM"), to: volumePath("TO") }, (args) =>
  withVolumeFs((fs) => fs.rename(args.from, args.to))).pipe(Command.withDescription("move a file or directory inside the volume"))

/** Whether a volume path is an existing directory. */
const isVolumeDirectory = (fs: VolumeFs, path: string) =>
  fs.stat(path).pipe(
    Effect.map((meta) => meta.kind === "directory"),
    Effect.catchTag("PathNotFound", () => Effect.succeed(false))
  )

/** Host files and directories below `from` (symlinks and special files are skipped with a warning). */
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
        } else {
          skipped.push(path)
        }
      })
    yield* visit(from, to)
    for (const path of skipped) yield* warn(`skipped ${path}: only regular files and directories are copied`)
    return steps
  })

const put = Command.make("put", {
  source: Args.text({ name: "HOST_PATH" }).pipe(Args.withDescription("a host file or directory")),
  destination: volumePath("VOLUME_PATH").pipe(Args.withDefault("/"))
}, (args) =>
  withVolumeFs((fs) =>
    Effect.gen(function*() {
      const source = NodePath.resolve(args.source)
      const into = args.destination.endsWith("/") || (yield* isVolumeDirectory(fs, args.destination))
      const target = into ? joinVolume(args.destination, NodePath.basename(source)) : args.destination
      const steps = yield* planHostTree(source, target)
      const files = yield* FileSystem.FileSystem
      yield* transfer(`put ${args.source}`, steps, (step, progress) =>
        step.kind === "directory"
          ? fs.mkdir(step.to)
          : files.stream(step.from).pipe(
            Stream.mapError(hostError(step.from)),
            progress.track,
            Stream.run(fs.sink(step.to))
          ))
    })
  )).pipe(Command.withDescription("copy a host file or directory tree into the volume"))

/** Volume files and directories below `from`. */
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
    } else {
      skipped.push(root.path)
    }
    for (const path of skipped) yield* warn(`skipped ${path}: only regular files and directories are copied`)
    return steps
  })

const get = Command.make("get", {
  source: volumePath("VOLUME_PATH"),
  destination: Args.text({ name: "HOST_PATH" }).pipe(Args.withDefault("."))
}, (args) =>
  withVolumeFs((fs) =>
    Effect.gen(function*() {
      const destination = NodePath.resolve(args.destination)
      const existing = yield* host(destination, () => NodeFs.statSync(destination, { throwIfNoEntry: false }))
      const into = args.destination.endsWith("/") || existing?.isDirectory() === true
      const name = baseName(args.source)
      const target = into && name !== "" ? NodePath.join(destination, name) : destination
      const steps = yield* planVolumeTree(fs, args.source, target)
      const files = yield* FileSystem.FileSystem
      yield* transfer(`get ${args.source}`, steps, (step, progress) =>
        step.kind === "directory"
          ? host(step.to, () => NodeFs.mkdirSync(step.to, { recursive: true }))
          : fs.readStream(step.from).pipe(
            // The platform's file sink refuses zero-length writes.
            Stream.filter((chunk) => chunk.length > 0),
            progress.track,
            Stream.run(files.sink(step.to).pipe(Sink.mapError(hostError(step.to)))),
            Effect.zipRight(host(step.to, () => NodeFs.chmodSync(step.to, step.mode)))
          ))
    })
  )).pipe(Command.withDescription("copy a file or directory tree from the volume to the host"))

/** The subcommands of `volumes fs NAME`. */
export const fsSubcommands = [ls, cat, put, get, mkdir, rm, cp, mv, stat] as const
