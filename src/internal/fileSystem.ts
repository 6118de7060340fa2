/**
 * `@effect/platform`'s `FileSystem` over one volume (SPEC §11), so existing Effect code runs
 * against a volume unchanged. Paths are volume paths (the containment rules of `VolumeFs`
 * apply: nothing outside the volume is reachable, no link is followed); failures are the
 * platform's `SystemError`/`BadArgument`, each with the volume's typed error as `cause`.
 *
 * What a volume has no notion of fails as the platform's contract says: `chown` and hard
 * `link` with `SystemError` `PermissionDenied`, `utimes` with `SystemError` `Unknown`.
 * `open` holds the file's bytes in memory and publishes them atomically on `sync` and when
 * its scope closes; `stream`, `sink`, `readFile` and `writeFile` use the volume's own
 * streaming and atomic writes.
 */
import { Error as PlatformError, FileSystem } from "@effect/platform"
import { Effect, Option, Sink, Stream } from "effect"
import type { InvalidConfig, VolumeFsFailure } from "../VolumeError.js"
import type { FsMetadata, VolumeFs, WatchEvent } from "../VolumeFs.js"
import * as Paths from "./paths.js"

type Failure = VolumeFsFailure | InvalidConfig

const reasonOf = (error: Failure): PlatformError.SystemErrorReason => {
  switch (error._tag) {
    case "PathNotFound":
    case "VolumeNotFound":
      return "NotFound"
    case "VolumeInUse":
      return "Busy"
    case "VolumeFsError":
      switch (error.reason) {
        case "AlreadyExists":
          return "AlreadyExists"
        case "IsADirectory":
        case "NotADirectory":
          return "BadResource"
        case "PermissionDenied":
        case "ReadOnly":
          return "PermissionDenied"
        case "InvalidData":
          return "InvalidData"
        case "NoSpace":
          return "WriteZero"
        default:
          return "Unknown"
      }
    case "QuotaExceeded":
      return "WriteZero"
    case "StorageError":
      return error.reason === "Busy" ? "Busy" : error.reason === "Unavailable" ? "TimedOut" : "Unknown"
    default:
      return "Unknown"
  }
}

/** The platform error for a volume failure of `method` on `path` (platform errors pass through). */
const toPlatform = (method: string, path: string) => (error: Failure | PlatformError.PlatformError): PlatformError.PlatformError =>
  error._tag === "SystemError" || error._tag === "BadArgument"
    ? error
    : error._tag === "InvalidPath" || error._tag === "InvalidConfig"
    ? new PlatformError.BadArgument({ module: "FileSystem", method, description: error.message, cause: error })
    : new PlatformError.SystemError({
      module: "FileSystem",
      method,
      reason: reasonOf(error),
      pathOrDescriptor: path,
      description: error.message,
      cause: error
    })

const systemError = (method: string, path: string, reason: PlatformError.SystemErrorReason, description: string) =>
  new PlatformError.SystemError({ module: "FileSystem", method, reason, pathOrDescriptor: path, description })

const lift = <A>(method: string, path: string, effect: Effect.Effect<A, Failure | PlatformError.PlatformError>) =>
  Effect.mapError(effect, toPlatform(method, path))

const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000

const typeOf = (meta: FsMetadata): FileSystem.File.Type =>
  meta.kind === "file"
    ? "File"
    : meta.kind === "directory"
    ? "Directory"
    : meta.kind === "symlink"
    ? "SymbolicLink"
    : "Unknown"

const typeBits = { File: S_IFREG, Directory: S_IFDIR, SymbolicLink: S_IFLNK } as Record<string, number>

const toInfo = (meta: FsMetadata): FileSystem.File.Info => {
  const type = typeOf(meta)
  const date = (time: typeof meta.modified) => Option.map(time, (t) => new Date(t.epochMillis))
  return {
    type,
    mtime: date(meta.modified),
    atime: date(meta.accessed),
    birthtime: date(meta.created),
    dev: 0,
    ino: Option.none(),
    mode: (typeBits[type] ?? 0) | meta.mode,
    nlink: Option.none(),
    uid: Option.some(meta.uid),
    gid: Option.some(meta.gid),
    rdev: Option.none(),
    size: FileSystem.Size(meta.size),
    blksize: Option.none(),
    blocks: Option.none()
  }
}

/** The platform's events for one volume event (a rename is the old path removed, the new created). */
const toPlatformEvents = (event: WatchEvent): Array<FileSystem.WatchEvent> => {
  switch (event._tag) {
    case "Created":
      return [FileSystem.WatchEventCreate({ path: event.path })]
    case "Modified":
      return [FileSystem.WatchEventUpdate({ path: event.path })]
    case "Removed":
      return [FileSystem.WatchEventRemove({ path: event.path })]
    case "Renamed":
      return [FileSystem.WatchEventRemove({ path: event.from }), FileSystem.WatchEventCreate({ path: event.path })]
  }
}

const randomName = (prefix: string | undefined) => `${prefix ?? ""}${Math.random().toString(36).slice(2, 12)}`

/** Keeps `bytesToRead` bytes after skipping `offset` of a byte stream. */
const sliceBytes = (offset: number, limit: number) => <E>(stream: Stream.Stream<Uint8Array, E>) =>
  stream.pipe(
    Stream.mapAccum(0, (position, chunk): readonly [number, Uint8Array] => {
      const start = Math.max(0, offset - position)
      const end = Math.max(start, Math.min(chunk.byteLength, offset + limit - position))
      return [position + chunk.byteLength, chunk.subarray(start, end)]
    }),
    Stream.filter((chunk) => chunk.byteLength > 0),
    Stream.takeUntil(() => false)
  )

const concatBytes = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a)
  out.set(b, a.byteLength)
  return out
}

let nextDescriptor = 1000

/** The parts of an opened file's info that do not change while it is open. */
const openedInfo: FileSystem.File.Info = {
  type: "File",
  mtime: Option.none(),
  atime: Option.none(),
  birthtime: Option.none(),
  dev: 0,
  ino: Option.none(),
  mode: S_IFREG | 0o644,
  nlink: Option.none(),
  uid: Option.none(),
  gid: Option.none(),
  rdev: Option.none(),
  size: FileSystem.Size(0),
  blksize: Option.none(),
  blocks: Option.none()
}

/** A `FileSystem` whose paths are paths inside the volume `fs`. */
export const toFileSystem = (fs: VolumeFs): FileSystem.FileSystem => {
  const stat = (path: string) => lift("stat", path, Effect.map(fs.stat(path), toInfo))

  const modeOf = (path: string) => Effect.map(fs.stat(path), (meta) => meta.mode)

  const writeFile = (path: string, data: Uint8Array, options?: FileSystem.WriteFileOptions) =>
    lift(
      "writeFile",
      path,
      Effect.gen(function*() {
        const append = options?.flag?.startsWith("a") === true
        const exclusive = options?.flag?.includes("x") === true
        if (exclusive && (yield* fs.exists(path))) return yield* systemError("writeFile", path, "AlreadyExists", "file already exists")
        const previous = append ? yield* fs.read(path).pipe(Effect.catchTag("PathNotFound", () => Effect.succeed(new Uint8Array(0)))) : undefined
        const mode = options?.mode ?? (yield* modeOf(path).pipe(Effect.option, Effect.map(Option.getOrUndefined)))
        yield* fs.write(path, previous === undefined ? data : concatBytes(previous, data), mode === undefined ? {} : { mode })
      })
    )

  const readDirectory = (path: string, options?: FileSystem.ReadDirectoryOptions) =>
    lift(
      "readDirectory",
      path,
      Effect.gen(function*() {
        const base = Paths.format(yield* Paths.parse(path))
        const out: Array<string> = []
        const walk = (dir: string): Effect.Effect<void, Failure> =>
          Effect.flatMap(fs.list(dir), (entries) =>
            Effect.forEach(entries, (entry) => {
              out.push(base === "/" ? entry.path.slice(1) : entry.path.slice(base.length + 1))
              return options?.recursive === true && entry.kind === "directory" ? walk(entry.path) : Effect.void
            }, { discard: true }))
        yield* walk(base)
        return out
      })
    )

  const remove = (path: string, options?: FileSystem.RemoveOptions) =>
    lift(
      "remove",
      path,
      Effect.gen(function*() {
        const meta = yield* fs.stat(path).pipe(Effect.option)
        if (Option.isNone(meta)) {
          if (options?.force === true) return
          return yield* fs.stat(path).pipe(Effect.asVoid)
        }
        if (meta.value.kind !== "directory") return yield* fs.remove(path)
        if (options?.recursive !== true && (yield* fs.list(path)).length > 0) {
          return yield* systemError("remove", path, "Unknown", "directory not empty (use recursive)")
        }
        return yield* fs.removeDir(path)
      })
    )

  const makeDirectory = (path: string, options?: FileSystem.MakeDirectoryOptions) =>
    lift(
      "makeDirectory",
      path,
      Effect.gen(function*() {
        const segments = yield* Paths.parse(path)
        if (options?.recursive !== true) {
          if (yield* fs.exists(path)) return yield* systemError("makeDirectory", path, "AlreadyExists", "already exists")
          if (Paths.isNonRoot(segments)) {
            const parent = Paths.format(Paths.split(segments).parent)
            const kind = yield* fs.stat(parent).pipe(Effect.map((meta) => meta.kind))
            if (kind !== "directory") return yield* systemError("makeDirectory", path, "BadResource", "parent is not a directory")
          }
        }
        yield* fs.mkdir(path)
        if (options?.mode !== undefined) yield* fs.chmod(path, options.mode)
      })
    )

  const makeTemp = (kind: "directory" | "file") => (options?: FileSystem.MakeTempDirectoryOptions) => {
    const directory = options?.directory ?? "/tmp"
    const path = `${directory.replace(/\/+$/, "")}/${randomName(options?.prefix)}`
    return lift(
      kind === "directory" ? "makeTempDirectory" : "makeTempFile",
      path,
      Effect.as(kind === "directory" ? fs.mkdir(path) : fs.write(path, new Uint8Array(0), { mode: 0o600 }), path)
    )
  }

  const open = (path: string, options?: FileSystem.OpenFileOptions) =>
    Effect.gen(function*() {
      const flag = options?.flag ?? "r"
      const writable = flag !== "r"
      const existing = yield* fs.read(path).pipe(
        Effect.map(Option.some),
        Effect.catchTag("PathNotFound", (e) => flag.startsWith("r") ? Effect.fail(e) : Effect.succeed(Option.none()))
      )
      if (flag.includes("x") && Option.isSome(existing)) {
        return yield* systemError("open", path, "AlreadyExists", "file already exists")
      }
      const state = {
        data: flag.startsWith("w") ? new Uint8Array(0) : Option.getOrElse(existing, () => new Uint8Array(0)),
        position: 0,
        dirty: writable && (flag.startsWith("w") || Option.isNone(existing))
      }
      const mode = options?.mode ?? (yield* modeOf(path).pipe(Effect.option, Effect.map(Option.getOrUndefined)))
      const publish = Effect.suspend(() => {
        if (!state.dirty) return Effect.void
        state.dirty = false
        return lift("sync", path, fs.write(path, state.data, mode === undefined ? {} : { mode }))
      })
      // Whatever was written is published when the file's scope closes.
      yield* Effect.addFinalizer(() => Effect.ignore(publish))
      const size = (n: FileSystem.SizeInput) => Number(n)
      const writeAt = (bytes: Uint8Array) =>
        Effect.suspend(() => {
          if (!writable) return Effect.fail(systemError("write", path, "PermissionDenied", "opened read-only"))
          const start = flag.startsWith("a") ? state.data.byteLength : state.position
          const end = start + bytes.byteLength
          if (end > state.data.byteLength) {
            const grown = new Uint8Array(end)
            grown.set(state.data)
            state.data = grown
          } else state.data = state.data.slice()
          state.data.set(bytes, start)
          state.position = end
          state.dirty = true
          return Effect.succeed(FileSystem.Size(bytes.byteLength))
        })
      const file: FileSystem.File = {
        [FileSystem.FileTypeId]: FileSystem.FileTypeId,
        fd: FileSystem.FileDescriptor(nextDescriptor++),
        // What the file will be once published (it may not exist in the volume yet).
        stat: Effect.sync(() => ({
          ...openedInfo,
          mode: S_IFREG | (mode ?? 0o644),
          size: FileSystem.Size(state.data.byteLength)
        })),
        seek: (offset, from) =>
          Effect.sync(() => {
            state.position = from === "start" ? size(offset) : state.position + size(offset)
          }),
        sync: publish,
        read: (buffer) =>
          Effect.sync(() => {
            const chunk = state.data.subarray(state.position, state.position + buffer.byteLength)
            buffer.set(chunk)
            state.position += chunk.byteLength
            return FileSystem.Size(chunk.byteLength)
          }),
        readAlloc: (n) =>
          Effect.sync(() => {
            const chunk = state.data.slice(state.position, state.position + size(n))
            state.position += chunk.byteLength
            return chunk.byteLength === 0 ? Option.none() : Option.some(chunk)
          }),
        truncate: (length) =>
          Effect.suspend(() => {
            if (!writable) return Effect.fail(systemError("truncate", path, "PermissionDenied", "opened read-only"))
            const next = new Uint8Array(size(length ?? 0))
            next.set(state.data.subarray(0, next.byteLength))
            state.data = next
            state.dirty = true
            return Effect.void
          }),
        write: writeAt,
        writeAll: (bytes) => Effect.asVoid(writeAt(bytes))
      }
      return file
    }).pipe(Effect.mapError(toPlatform("open", path)))

  const base = FileSystem.make({
    access: (path) => lift("access", path, Effect.asVoid(fs.stat(path))),
    copy: (from, to, options) =>
      lift(
        "copy",
        from,
        Effect.gen(function*() {
          if (options?.overwrite === true && (yield* fs.exists(to)) && (yield* fs.stat(to)).kind === "directory") {
            yield* fs.removeDir(to)
          }
          yield* fs.copy(from, to)
        })
      ),
    copyFile: (from, to) =>
      lift(
        "copyFile",
        from,
        Effect.gen(function*() {
          const meta = yield* fs.stat(from)
          if (meta.kind === "directory") return yield* systemError("copyFile", from, "BadResource", "is a directory")
          yield* fs.copy(from, to)
        })
      ),
    chmod: (path, mode) => lift("chmod", path, fs.chmod(path, mode)),
    chown: (path) => Effect.fail(systemError("chown", path, "PermissionDenied", "a volume's files belong to the backend; chown is not supported")),
    link: (from) => Effect.fail(systemError("link", from, "PermissionDenied", "volumes have no hard links; use symlink")),
    makeDirectory,
    makeTempDirectory: makeTemp("directory"),
    makeTempDirectoryScoped: (options) =>
      Effect.acquireRelease(makeTemp("directory")(options), (path) => Effect.ignore(fs.removeDir(path))),
    makeTempFile: makeTemp("file"),
    makeTempFileScoped: (options) => Effect.acquireRelease(makeTemp("file")(options), (path) => Effect.ignore(fs.remove(path))),
    open,
    readDirectory,
    readFile: (path) => lift("readFile", path, fs.read(path)),
    readLink: (path) => lift("readLink", path, fs.readlink(path)),
    realPath: (path) =>
      lift("realPath", path, Effect.zipRight(fs.stat(path), Effect.map(Paths.parse(path), Paths.format))),
    remove,
    rename: (from, to) => lift("rename", from, fs.rename(from, to)),
    stat,
    symlink: (target, path) => lift("symlink", path, fs.symlink(target, path)),
    truncate: (path, length) =>
      lift(
        "truncate",
        path,
        Effect.gen(function*() {
          const [data, mode] = yield* Effect.all([fs.read(path), modeOf(path)])
          const next = new Uint8Array(Number(length ?? 0))
          next.set(data.subarray(0, next.byteLength))
          yield* fs.write(path, next, { mode })
        })
      ),
    utimes: (path) => Effect.fail(systemError("utimes", path, "Unknown", "volumes do not support setting times")),
    watch: (path, options) =>
      fs.watch(path, { recursive: options?.recursive === true }).pipe(
        Stream.mapConcat(toPlatformEvents),
        Stream.mapError(toPlatform("watch", path))
      ),
    writeFile
  })

  return {
    ...base,
    // The volume's own streaming read and atomic streaming write, rather than `open`.
    stream: (path, options) => {
      const chunkSize = options?.chunkSize === undefined ? undefined : Number(options.chunkSize)
      const read = fs.readStream(path, chunkSize === undefined ? {} : { chunkSize })
      const offset = Number(options?.offset ?? 0)
      const limit = options?.bytesToRead === undefined ? Infinity : Number(options.bytesToRead)
      const sliced = offset === 0 && limit === Infinity ? read : sliceBytes(offset, limit)(read)
      return Stream.mapError(sliced, toPlatform("stream", path))
    },
    sink: (path, options) =>
      options?.flag === undefined || options.flag === "w"
        ? Sink.mapError(
          options?.mode === undefined ? fs.sink(path) : fs.sink(path, { mode: options.mode }),
          toPlatform("sink", path)
        )
        : base.sink(path, options)
  }
}
