/**
 * Tar export and import of whole volumes. Export walks the tree with `VolumeFs` and
 * encodes ustar/PAX itself; import parses with `tar-stream`, stages everything in a
 * hidden directory inside the volume (a reserved temporary name, see `paths.ts`) and only
 * then moves it into place (see `docs/cli.md`). Every step, modes and times included, goes
 * through the volume's `FsDriver`, so the local backend's descriptor walk contains it.
 */
import { DateTime, Effect, Exit, Fiber, Option, Stream } from "effect"
import * as TarStream from "tar-stream"
import type { Volume } from "../../Volume.js"
import { InvalidPath, PathNotFound, VolumeFsError } from "../../VolumeError.js"
import type { VolumeFsFailure } from "../../VolumeError.js"
import type { FsEntry } from "../../VolumeFs.js"
import * as Paths from "../paths.js"
import { stagingView } from "../volumeFs.js"
import { ArchiveError } from "./archiveError.js"
import * as Tar from "./tarEncode.js"

/** Set-user-ID, set-group-ID and sticky bits, which archives may not plant unless asked to. */
export const SPECIAL_MODE_BITS = 0o7000

const seconds = (entry: FsEntry): number =>
  Option.match(entry.modified, { onNone: () => 0, onSome: (t) => Math.floor(DateTime.toEpochMillis(t) / 1000) })

// ---------------------------------------------------------------------------- export

/** The volume's whole tree as a tar stream (directories before their contents, by name). */
export const exportVolume = (volume: Volume): Stream.Stream<Uint8Array, VolumeFsFailure | ArchiveError> =>
  Stream.suspend(() => {
    const fs = volume.fs()

    const fileData = (entry: FsEntry): Stream.Stream<Uint8Array, VolumeFsFailure | ArchiveError> =>
      Stream.suspend(() => {
        let sent = 0
        const changed = new ArchiveError({
          entry: entry.path,
          message: `${entry.path} changed size while it was exported; export again when nothing writes to the volume`
        })
        return fs.readStream(entry.path).pipe(
          Stream.mapEffect((chunk) => {
            sent += chunk.length
            return sent > entry.size ? Effect.fail(changed) : Effect.succeed(chunk)
          }),
          Stream.concat(Stream.suspend(() => {
            if (sent !== entry.size) return Stream.fail(changed)
            const pad = Tar.padding(entry.size)
            // No empty chunks: some sinks (the platform's file sink) refuse zero-length writes.
            return pad.length === 0 ? Stream.empty : Stream.make(pad)
          }))
        )
      })

    /** A link's target as listed (every backend lists it), else read without following it. */
    const symlinkTarget = (entry: FsEntry): Effect.Effect<string, VolumeFsFailure> =>
      Option.match(entry.target, { onNone: () => fs.readlink(entry.path), onSome: Effect.succeed })

    const entryStream = (entry: FsEntry): Stream.Stream<Uint8Array, VolumeFsFailure | ArchiveError> => {
      const base = { name: entry.path.slice(1), mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: seconds(entry) }
      switch (entry.kind) {
        case "directory":
          return Stream.make(Tar.encodeHeader({ ...base, type: "directory", size: 0 })).pipe(Stream.concat(walk(entry.path)))
        case "file":
          return Stream.make(Tar.encodeHeader({ ...base, type: "file", size: entry.size })).pipe(Stream.concat(fileData(entry)))
        case "symlink":
          return Stream.fromEffect(
            Effect.map(symlinkTarget(entry), (linkname) => Tar.encodeHeader({ ...base, type: "symlink", size: 0, linkname }))
          )
        case "other":
          // Sockets, FIFOs and devices a sandbox left behind carry no data worth keeping.
          return Stream.empty
      }
    }

    const walk = (dir: string): Stream.Stream<Uint8Array, VolumeFsFailure | ArchiveError> =>
      Stream.fromIterableEffect(fs.list(dir)).pipe(Stream.flatMap(entryStream))

    // The root's own entry (`./`) comes first, so its mode and mtime survive a round trip.
    const rootEntry = Stream.fromEffect(Effect.map(fs.stat("/"), (meta) =>
      Tar.encodeHeader({ name: ".", type: "directory", size: 0, mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: seconds(meta) })))

    return rootEntry.pipe(
      Stream.concat(walk("/")),
      Stream.concat(Stream.sync(Tar.trailer)),
      Stream.filter((chunk) => chunk.length > 0)
    )
  })

// ---------------------------------------------------------------------------- import

/**
 * What an import did.
 */
export interface ImportSummary {
  /** Entries written (files, directories, symlinks, hard links). */
  readonly entries: number
  /** Bytes of file data written. */
  readonly bytes: number
}

/** Lexically normalised segments of an archive entry name; `None` for the root itself. */
const entrySegments = (name: string): Effect.Effect<ReadonlyArray<string>, InvalidPath> =>
  Effect.suspend(() => {
    const out: Array<string> = []
    for (const segment of name.split("/")) {
      if (segment === "" || segment === ".") continue
      if (segment === "..") {
        if (out.length === 0) {
          return Effect.fail(new InvalidPath({ path: name, reason: "archive entry escapes the volume; nothing was imported" }))
        }
        out.pop()
        continue
      }
      out.push(segment)
    }
    return Effect.succeed(out)
  })

/** One archive entry: its header and its data (which must be consumed or skipped). */
interface ArchiveEntry<E> {
  readonly header: TarStream.Header
  readonly data: Stream.Stream<Uint8Array, E | ArchiveError>
  readonly skip: () => void
}

/** The entries of a tar byte stream; a failure of the input wins over the parse error it causes. */
const tarEntries = <E, R>(input: Stream.Stream<Uint8Array, E, R>): Stream.Stream<ArchiveEntry<E>, E | ArchiveError, R> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const extract = yield* Effect.acquireRelease(Effect.sync(() => TarStream.extract()), (x) => Effect.sync(() => x.destroy(null)))
    let inputFailed = false
    const writeChunk = (chunk: Uint8Array) =>
      Effect.async<void>((resume) => {
        if (extract.destroyed || extract.write(chunk)) return resume(Effect.void)
        const done = () => {
          extract.off("drain", done)
          extract.off("close", done)
          resume(Effect.void)
        }
        extract.on("drain", done)
        extract.on("close", done)
      })
    const feeder = yield* input.pipe(
      Stream.runForEach(writeChunk),
      Effect.zipRight(Effect.sync(() => extract.end(null))),
      // Any end of the input but a clean one (a failure, a defect, an interruption) ends the
      // parser too, or the import would wait for entries forever.
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => {
          inputFailed = true
          extract.destroy(new Error("input failed"))
        })
      ),
      Effect.forkScoped
    )
    const explain = (entry: string) => (cause: unknown) =>
      new ArchiveError({
        entry,
        message: `not a valid tar archive${entry === "" ? "" : ` (at ${entry})`}: ${cause instanceof Error ? cause.message : String(cause)}`
      })
    const preferInputFailure = (parseError: ArchiveError): Effect.Effect<never, E | ArchiveError> =>
      inputFailed
        ? Effect.flatMap(Fiber.join(feeder), () => Effect.fail(parseError))
        : Effect.zipRight(Fiber.interrupt(feeder), Effect.fail(parseError))
    return Stream.fromAsyncIterable(extract, explain("")).pipe(
      Stream.map((source): ArchiveEntry<E> => ({
        header: source.header,
        data: Stream.fromAsyncIterable(source as AsyncIterable<Uint8Array>, explain(source.header.name)).pipe(
          Stream.catchAll((error) => Stream.fromEffect(preferInputFailure(error)))
        ),
        skip: () => source.resume()
      })),
      Stream.catchAll((error) => Stream.fromEffect(preferInputFailure(error)))
    )
  }))

type Staged = {
  readonly segments: ReadonlyArray<string>
  readonly type: "file" | "directory" | "symlink"
  readonly mode: number | undefined
  readonly mtime: Date | undefined
}

/**
 * Imports a tar stream into `volume`: every entry is written below a staging directory
 * inside the volume first; only when the whole archive is in (paths checked, quota
 * charged, no conflicts) are the staged entries moved into place. Any failure before that
 * removes the staging directory, leaving the volume as it was. The staging directory has a
 * reserved temporary name carrying this process's pid: no listing shows it, no user path
 * (and so no `VolumeFs` call of anyone else) can name it, and if this process dies the
 * backend's sweep of dead writers' temporary files reclaims it.
 */
export const importIntoVolume = <E, R>(
  volume: Volume,
  input: Stream.Stream<Uint8Array, E, R>,
  options: { readonly keepSpecialModes?: boolean | undefined } = {}
): Effect.Effect<ImportSummary, E | VolumeFsFailure | ArchiveError, R> =>
  Effect.gen(function*() {
    const staging = Paths.tempName()
    const fs = yield* Option.match(stagingView(volume.fs(), staging), {
      onNone: () =>
        Effect.fail(
          new ArchiveError({ entry: "", message: `volume "${volume.name}" has no staging area, so nothing can be imported into it` })
        ),
      onSome: Effect.succeed
    })
    /** Archives may not plant set-user-ID, set-group-ID or sticky files unless asked to. */
    const modeOf = (mode: number | undefined) =>
      mode === undefined || options.keepSpecialModes === true ? mode : mode & ~SPECIAL_MODE_BITS
    const stagedPath = (segments: ReadonlyArray<string>) => [staging, ...segments].join("/")
    const staged: Array<Staged> = []
    let bytes = 0

    /** A link through `VolumeFs` (every backend stores links); a later entry replaces an earlier one. */
    const writeSymlink = (segments: ReadonlyArray<string>, target: string) => {
      const path = stagedPath(segments)
      return fs.symlink(target, path).pipe(
        Effect.catchIf(
          (e): e is VolumeFsError => e._tag === "VolumeFsError" && e.reason === "AlreadyExists",
          () => Effect.zipRight(fs.remove(path), fs.symlink(target, path))
        )
      )
    }

    /** The volume root's own metadata, from an archive's `./` entry. */
    let rootMetadata: Option.Option<Pick<Staged, "mode" | "mtime">> = Option.none()

    /**
     * A failure inside the staging directory, told with the archive entry's path: the
     * staging directory is an implementation detail the user never named.
     */
    const unstage = <E2>(error: E2): E2 => {
      if (typeof error !== "object" || error === null || !("path" in error) || typeof error.path !== "string") return error
      const prefix = `/${staging}`
      if (!error.path.startsWith(prefix)) return error
      const path = error.path.slice(prefix.length) || "/"
      const tagged = error as unknown as { readonly _tag: string; readonly constructor: unknown }
      switch (tagged._tag) {
        case "VolumeFsError":
        case "InvalidPath":
        case "PathNotFound": {
          const Class = tagged.constructor as new(fields: object) => E2
          return new Class({ ...error, path })
        }
        default:
          return error
      }
    }

    const stageEntry = (entry: ArchiveEntry<E>) =>
      Effect.gen(function*() {
        const header = entry.header
        const segments = yield* entrySegments(header.name)
        const record = (type: Staged["type"]) =>
          Effect.sync(() => staged.push({ segments, type, mode: header.mode, mtime: header.mtime }))
        if (header.type === "file" || header.type === "contiguous-file") {
          if (segments.length === 0) {
            return yield* new ArchiveError({ entry: header.name, message: `archive entry ${header.name} is a file at the volume root` })
          }
          yield* entry.data.pipe(
            Stream.tap((chunk) => Effect.sync(() => (bytes += chunk.length))),
            Stream.run(fs.sink(stagedPath(segments)))
          )
          return yield* record("file")
        }
        entry.skip()
        switch (header.type) {
          case "directory":
            yield* fs.mkdir(stagedPath(segments))
            if (segments.length > 0) yield* record("directory")
            else rootMetadata = Option.some({ mode: header.mode, mtime: header.mtime })
            return
          case "symlink":
            if (segments.length === 0) {
              return yield* new ArchiveError({ entry: header.name, message: `archive entry ${header.name} is a symlink at the volume root` })
            }
            yield* writeSymlink(segments, header.linkname)
            return yield* record("symlink")
          case "link": {
            const source = yield* entrySegments(header.linkname)
            if (segments.length === 0 || source.length === 0) {
              return yield* new ArchiveError({ entry: header.name, message: `hard link ${header.name} has no usable target` })
            }
            yield* fs.copy(stagedPath(source), stagedPath(segments)).pipe(
              Effect.catchTag("PathNotFound", () =>
                new ArchiveError({
                  entry: header.name,
                  message: `hard link ${header.name} points to ${header.linkname}, which is not earlier in the archive`
                })
              )
            )
            // A hard link to a symlink is that link again, not a file.
            return yield* record((yield* fs.stat(stagedPath(segments))).kind === "symlink" ? "symlink" : "file")
          }
          default:
            return yield* new ArchiveError({
              entry: header.name,
              message: `archive entry ${header.name} is a ${header.type}; only files, directories, symlinks and hard links can be imported`
            })
        }
      })

    /** A header's mode as permission bits, without set-user-ID/set-group-ID/sticky unless asked. */
    const chmod = (path: string, mode: number) =>
      fs.chmod(path, (modeOf(mode) ?? mode) & 0o7777).pipe(Effect.catchTag("InvalidConfig", (e) => Effect.die(e)))

    /**
     * Modes and mtimes through the volume's driver (mtimes where the store keeps them), deepest
     * entries last-recorded first. On the local backend both go through the descriptor walk,
     * never a host path string: a staged directory swapped for a symlink is refused, not followed.
     */
    const applyMetadata = Effect.suspend(() => Effect.forEach(staged.slice().reverse(), (item) =>
      Effect.gen(function*() {
        if (item.type !== "symlink" && item.mode !== undefined) yield* chmod(stagedPath(item.segments), item.mode)
        if (item.mtime !== undefined) yield* fs.setModified(stagedPath(item.segments), item.mtime)
      }), { discard: true }))

    /** The root's mode and mtime from the archive's `./` entry, once everything is in place. */
    const applyRootMetadata = Effect.suspend(() =>
      Option.match(rootMetadata, {
        onNone: () => Effect.void,
        onSome: ({ mode, mtime }) =>
          Effect.gen(function*() {
            if (mode !== undefined) yield* chmod("/", mode)
            if (mtime !== undefined) yield* fs.setModified("/", mtime)
          })
      })
    )

    const targetKind = (path: string) =>
      fs.stat(path).pipe(
        Effect.map((meta) => Option.some(meta.kind)),
        Effect.catchIf((e): e is PathNotFound => e._tag === "PathNotFound", () => Effect.succeed(Option.none()))
      )

    /** Walks staged entries against the volume: checks conflicts, or moves them into place. */
    const reconcile = (from: string, to: string, move: boolean): Effect.Effect<void, VolumeFsFailure | ArchiveError> =>
      Effect.gen(function*() {
        const source = (yield* fs.stat(from)).kind
        const target = yield* targetKind(to)
        if (Option.isNone(target)) {
          if (move) yield* fs.rename(from, to)
          return
        }
        if (source === "directory" && target.value === "directory") {
          const children = yield* fs.list(from)
          yield* Effect.forEach(children, (child) => {
            const name = child.path.slice(child.path.lastIndexOf("/") + 1)
            return reconcile(`${from}/${name}`, `${to}/${name}`, move)
          }, { discard: true })
          return
        }
        if (source === "directory" || target.value === "directory") {
          return yield* new ArchiveError({
            entry: to,
            message: `archive entry ${to} is a ${source} but the volume has a ${target.value} there; nothing was imported`
          })
        }
        if (move) yield* fs.rename(from, to)
      })

    const moveAll = (move: boolean) =>
      Effect.flatMap(fs.list(staging), (children) =>
        Effect.forEach(children, (child) => {
          const name = child.path.slice(child.path.lastIndexOf("/") + 1)
          return reconcile(`${staging}/${name}`, `/${name}`, move)
        }, { discard: true }))

    yield* fs.mkdir(staging)
    yield* Effect.gen(function*() {
      yield* Stream.runForEach(tarEntries(input), stageEntry)
      yield* applyMetadata
      yield* moveAll(false)
      yield* moveAll(true)
    }).pipe(
      Effect.mapError(unstage),
      Effect.ensuring(fs.removeDir(staging).pipe(Effect.ignore))
    )
    // The root's entry is applied after the move: the root may lose its write bit.
    yield* applyRootMetadata
    return { entries: staged.length, bytes }
  })

/** Runs `effect` on a volume created for it, removing the volume again when it fails. */
export const removeOnFailure = <A, E, R, E2, R2>(
  effect: Effect.Effect<A, E, R>,
  remove: Effect.Effect<void, E2, R2>
): Effect.Effect<A, E, R | R2> =>
  Effect.onExit(effect, (exit) => Exit.isFailure(exit) ? Effect.ignore(remove) : Effect.void)
