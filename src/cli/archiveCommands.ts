/**
 * `volumes export` and `volumes import`: whole volumes as tar streams.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as NodeFs from "node:fs"
import { Effect, Option, Sink, Stream } from "effect"
import * as Archive from "../Archive.js"
import { ArchiveError } from "../internal/archive/archiveError.js"
import { formatBytes } from "../Size.js"
import * as Volume from "../Volume.js"
import { HostFileError } from "./errors.js"
import * as Output from "./output.js"
import { jsonOption } from "./output.js"
import * as Progress from "./progress.js"
import { stdin, writeStdout } from "./stdio.js"

const hostError = (path: string) => (cause: { readonly message: string }) =>
  new HostFileError({ path, message: `${path}: ${cause.message}` })

const GZIP_MAGIC = [0x1f, 0x8b] as const
const isGzip = (bytes: Uint8Array | undefined) => bytes !== undefined && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1]

/** Whether a host file starts with the gzip magic bytes. */
const fileIsGzip = (path: string): boolean => {
  const head = Buffer.alloc(2)
  const fd = NodeFs.openSync(path, "r")
  try {
    return NodeFs.readSync(fd, head, 0, 2, 0) === 2 && isGzip(head)
  } finally {
    NodeFs.closeSync(fd)
  }
}

/** A gzip-compressed tar stream, decompressed. */
const gunzip = <E>(source: Stream.Stream<Uint8Array, E>): Stream.Stream<Uint8Array, E | ArchiveError> =>
  Stream.fromReadableStream({
    evaluate: () => Stream.toReadableStream(Stream.orDie(source)).pipeThrough(new DecompressionStream("gzip")) as ReadableStream<Uint8Array>,
    onError: (cause) => new ArchiveError({ entry: "", message: `the gzip-compressed archive could not be decompressed: ${String(cause)}` })
  })

export const exportCommand = Command.make("export", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("the volume")),
  output: Options.text("output").pipe(
    Options.withAlias("o"),
    Options.withPseudoName("FILE"),
    Options.withDescription("write the tar to this file (default stdout)"),
    Options.optional
  ),
  json: jsonOption
}, (args) =>
  (Effect.scoped(Effect.gen(function*() {
    const volume = yield* Volume.get(args.name)
    if (Option.isNone(args.output) && process.stdout.isTTY === true) {
      return yield* new HostFileError({
        path: "-",
        message: "refusing to write a tar archive to a terminal; pass -o FILE or redirect stdout"
      })
    }
    const progress = yield* Progress.make(`export ${volume.name}`, volume.usedBytes)
    const tar = Archive.exportTar(volume).pipe(progress.track)
    if (Option.isNone(args.output)) return yield* Stream.runForEach(tar, writeStdout)
    // Written next to the target and renamed when complete: a failed export leaves no torn file.
    const target = args.output.value
    const partial = `${target}.partial-${process.pid}`
    const files = yield* FileSystem.FileSystem
    yield* Stream.run(tar, files.sink(partial).pipe(Sink.mapError(hostError(target)))).pipe(
      Effect.zipRight(files.rename(partial, target).pipe(Effect.mapError(hostError(target)))),
      Effect.onError(() => Effect.sync(() => NodeFs.rmSync(partial, { force: true })))
    )
    const bytes = Number((yield* files.stat(target).pipe(Effect.mapError(hostError(target)))).size)
    if (args.json) yield* Output.json({ volume: volume.name, file: target, bytes })
  })))).pipe(Command.withDescription("write a volume as a tar archive (modes, mtimes, symlinks kept)"))

export const importCommand = Command.make("import", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("the volume")),
  input: Options.text("input").pipe(
    Options.withAlias("i"),
    Options.withPseudoName("FILE"),
    Options.withDescription("read the tar (or .tar.gz) from this file (default stdin)"),
    Options.optional
  ),
  create: Options.boolean("create").pipe(
    Options.withDescription("create the volume first (it must not exist); it is removed again if the import fails")
  ),
  json: jsonOption
}, (args) =>
  (Effect.scoped(Effect.gen(function*() {
    if (Option.isNone(args.input) && process.stdin.isTTY === true) {
      return yield* new HostFileError({
        path: "-",
        message: "refusing to read a tar archive from a terminal; pass -i FILE or pipe an archive into stdin"
      })
    }
    const files = yield* FileSystem.FileSystem
    const total = Option.isSome(args.input)
      ? Number((yield* files.stat(args.input.value).pipe(Effect.mapError(hostError(args.input.value)))).size)
      : undefined
    const progress = yield* Progress.make(`import ${args.name}`, total)
    // A .tar.gz file just works; on stdin the first bytes are kept to say what went wrong.
    let first: Uint8Array | undefined
    const tar = Option.match(args.input, {
      onNone: () => progress.track(stdin).pipe(Stream.tap((chunk) => Effect.sync(() => void (first ??= chunk)))),
      onSome: (path) => {
        const bytes = progress.track(files.stream(path).pipe(Stream.mapError(hostError(path))))
        return fileIsGzip(path) ? gunzip(bytes) : bytes
      }
    })
    const summary = yield* Archive.importTar(args.name, tar, { create: args.create }).pipe(
      Effect.catchTag("ArchiveError", (error) =>
        isGzip(first)
          ? new ArchiveError({
            entry: "",
            message: "gzip detected on stdin: decompress it first (gunzip -c FILE.tar.gz | volumes import ...) or pass the file with -i"
          })
          : Effect.fail(error))
    )
    yield* args.json
      ? Output.json({ volume: args.name, entries: summary.entries, bytes: summary.bytes })
      : Output.line(
        `imported ${summary.entries} ${summary.entries === 1 ? "entry" : "entries"} (${formatBytes(summary.bytes)}) into ${args.name}`
      )
  })))).pipe(Command.withDescription("load a tar archive into a volume, atomically"))
