/**
 * The local backend's `FsDriver` over a host directory (a directory volume's data
 * directory, or the inside of a mounted disk image).
 *
 * Containment (SPEC §3) is a security boundary here: a sandbox may plant any symlink in
 * the volume and swap it while we run. Node has no `openat(2)`, so it is emulated through
 * `/proc/self/fd/<dirfd>/<name>`: the magic link jumps to the directory we already hold
 * open (not to a path), and `<name>` is a single component resolved inside it. Every
 * operation opens the trusted root once, then walks component by component with
 * `O_DIRECTORY | O_NOFOLLOW` (a symlink in the way fails instead of being followed), and
 * finally acts on `<parent fd>/<leaf>` with calls that never follow a final symlink
 * (`lstat`, `unlink`, `rmdir`, `mkdir`, `rename`, `readlink`, `symlink`, `O_NOFOLLOW`
 * opens, `O_CREAT | O_EXCL` temp files). Files are opened for reading with `O_PATH` first
 * and checked to be regular before they are opened for I/O, so a planted FIFO or device
 * node is never opened (no blocking open, no device side effects).
 *
 * Metadata calls and transfers of at most {@link SYNC_IO_BYTES} run synchronously: each
 * is a few microseconds on a local file system, while a round trip through libuv's
 * thread pool costs tens, and whole-file `write`/`read` must stay within reach of plain
 * `node:fs`. Larger transfers go through the thread pool so big files never stall the
 * event loop.
 *
 * Atomic writes go to a temporary file next to the target that is renamed over it; it is
 * never fsync'ed. A reader never sees a torn file because rename(2) is atomic, which also
 * covers a crash of this process. Power loss is covered by ext4's `auto_da_alloc`
 * (replace-via-rename forces the new data out before the rename commits), and an fsync per
 * write would make small writes an order of magnitude slower than `node:fs`.
 */
import { Chunk, DateTime, Effect, Exit, Option, Stream } from "effect"
import type { Scope } from "effect"
import * as NodeFs from "node:fs"
import { InvalidPath, StorageError, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsFailure } from "../../VolumeError.js"
import { FsEntry, FsMetadata } from "../../VolumeFs.js"
import type { FsDriver, FsWriter } from "../fsDriver.js"
import * as Paths from "../paths.js"
import { errnoCode, fromErrno, fsError, symlinkRefused } from "./errno.js"
import { linkTargetSync, makeLinkOps } from "./links.js"
import { watchDirectory } from "./watch.js"

const C = NodeFs.constants

/** Linux `O_PATH` (Node does not export it): a handle that allows `fstat` but no I/O. */
const O_PATH = 0o10000000

/** A directory handle that refuses a symlink as the last component. */
export const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW
/** A handle on the entry itself, whatever it is (a symlink is not followed). */
export const HANDLE_FLAGS = O_PATH | C.O_NOFOLLOW
/** A fresh temporary file: never an existing entry, never through a symlink. */
const TEMP_FLAGS = C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW
const FILE_MODE = 0o644
const DIRECTORY_MODE = 0o777

/** Transfers up to this size run synchronously (see the module comment). */
export const SYNC_IO_BYTES = 64 * 1024

/** Bytes one `readStream` read asks for; it is sliced into the requested chunk size. */
const READ_BLOCK_BYTES = 1024 * 1024

/** Blocks a `readStream` reads ahead of its consumer (constant memory: at most this many MiB). */
const READ_AHEAD_BLOCKS = 4
/** Largest single read or write handed to the thread pool. */
const ASYNC_SLICE_BYTES = 1024 * 1024
/** Directory-walk steps done between two chances for other fibers to run. */
const WALK_BATCH = 64
/** How often a `mkdir -p` step or a `removeDir` is retried when a concurrent change gets in the way. */
const RACE_RETRIES = 3

// ---- emulated openat --------------------------------------------------------------------

type Name = string | Buffer

/** `name` inside the directory open as `dirfd`; `name` is one component, never `..`. */
export const at = (dirfd: number, name: Name): string | Buffer =>
  typeof name === "string"
    ? `/proc/self/fd/${dirfd}/${name}`
    : Buffer.concat([Buffer.from(`/proc/self/fd/${dirfd}/`), name])

/** The open file or directory `fd` itself, as a path (used to reopen an `O_PATH` handle). */
export const self = (fd: number): string => `/proc/self/fd/${fd}`

export const closeQuietlySync = (fd: number): void => {
  try {
    NodeFs.closeSync(fd)
  } catch {
    // close(2) releases the descriptor even when it reports an error.
  }
}

const closeQuietly = (fd: number) => Effect.sync(() => closeQuietlySync(fd))

const unlinkQuietlySync = (dirfd: number, name: Name): void => {
  try {
    NodeFs.unlinkSync(at(dirfd, name))
  } catch {
    // Already gone, or the directory went away with it.
  }
}

/** Runs host file-system calls for the volume path `path`, typing what they throw. */
export const hostCall = <A>(path: string, f: () => A): Effect.Effect<A, VolumeFsFailure> =>
  Effect.try({ try: f, catch: (error) => fromErrno(error, path) })

/**
 * Why `name` in `dirfd` is not a directory we may enter: a symlink (refused, never
 * followed) or anything else (`NotADirectory`).
 */
const notEnterable = (dirfd: number, name: string, walked: Paths.Segments, path: string): VolumeFsFailure => {
  const stat = NodeFs.lstatSync(at(dirfd, name), { throwIfNoEntry: false })
  return stat?.isSymbolicLink() === true
    ? symlinkRefused(path, Paths.format(walked))
    : fsError(path, "NotADirectory")
}

/** Opens directory `segments[index]` inside `dirfd`, creating it first when `create` is set. */
const openChildDirSync = (
  dirfd: number,
  segments: Paths.Segments,
  index: number,
  create: boolean,
  path: string
): number => {
  const name = segments[index]!
  for (let attempt = 0;; attempt++) {
    try {
      return NodeFs.openSync(at(dirfd, name), DIR_FLAGS)
    } catch (error) {
      const code = errnoCode(error)
      if (code === "ENOTDIR" || code === "ELOOP") throw notEnterable(dirfd, name, segments.slice(0, index + 1), path)
      if (code !== "ENOENT" || !create || attempt >= RACE_RETRIES) throw fromErrno(error, path)
    }
    try {
      NodeFs.mkdirSync(at(dirfd, name), DIRECTORY_MODE)
    } catch (error) {
      // Someone else created it meanwhile: open whatever is there now.
      if (errnoCode(error) !== "EEXIST") throw fromErrno(error, path)
    }
  }
}

/**
 * Opens the directory `segments` below `rootfd` one component at a time (creating missing
 * ones with `create`), so no symlink is ever followed. The result is a new descriptor.
 */
export const openDirChainSync = (rootfd: number, segments: Paths.Segments, create: boolean, path: string): number => {
  let fd = rootfd
  try {
    for (let index = 0; index < segments.length; index++) {
      const previous = fd
      fd = openChildDirSync(fd, segments, index, create, path)
      if (previous !== rootfd) closeQuietlySync(previous)
    }
    return fd
  } catch (error) {
    if (fd !== rootfd) closeQuietlySync(fd)
    throw error
  }
}

// ---- metadata ---------------------------------------------------------------------------

const kindOf = (stat: NodeFs.Stats): FsEntry["kind"] =>
  stat.isFile() ? "file" : stat.isDirectory() ? "directory" : stat.isSymbolicLink() ? "symlink" : "other"

const time = (millis: number): Option.Option<DateTime.Utc> =>
  millis > 0 ? Option.some(DateTime.unsafeMake(millis)) : Option.none()

const entryFields = (path: Paths.Segments, stat: NodeFs.Stats, target: string | undefined) => ({
  path: Paths.format(path),
  kind: kindOf(stat),
  size: stat.size,
  mode: stat.mode & 0o7777,
  uid: stat.uid,
  gid: stat.gid,
  modified: time(stat.mtimeMs),
  target: Option.fromNullable(target)
})

// The fields come straight from the kernel, so schema validation is skipped (it showed in
// the profile of large listings).
const toEntry = (path: Paths.Segments, stat: NodeFs.Stats, target: string | undefined): FsEntry =>
  new FsEntry(entryFields(path, stat, target), true)

const toMetadata = (path: Paths.Segments, stat: NodeFs.Stats, target?: string): FsMetadata =>
  new FsMetadata({
    ...entryFields(path, stat, target),
    readonly: (stat.mode & 0o222) === 0,
    accessed: time(stat.atimeMs),
    created: time(stat.birthtimeMs)
  }, true)

/** Code-unit order, as the memory backend and `Array#sort` use. */
const byName = (a: { readonly name: string }, b: { readonly name: string }): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0

/** Entries of the directory open as `dirfd`, temporary names hidden. */
const listSync = (dirfd: number, path: Paths.Segments): Array<FsEntry> => {
  const found: Array<{ readonly name: string; readonly stat: NodeFs.Stats }> = []
  // Raw names, so an entry whose name is not UTF-8 can still be stat'ed.
  for (const raw of NodeFs.readdirSync(self(dirfd), { encoding: "buffer" })) {
    const name = raw.toString("utf8")
    if (Paths.isTempName(name)) continue
    const stat = NodeFs.lstatSync(at(dirfd, raw), { throwIfNoEntry: false })
    if (stat !== undefined) found.push({ name, stat })
  }
  return found.sort(byName).map(({ name, stat }) =>
    toEntry(Paths.child(path, name), stat, stat.isSymbolicLink() ? linkTargetSync(dirfd, name) : undefined)
  )
}

// ---- file contents ----------------------------------------------------------------------

/** Why a non-regular entry cannot be read or copied as a file. */
const notAFile = (stat: NodeFs.Stats, path: string): VolumeFsFailure =>
  stat.isDirectory()
    ? fsError(path, "IsADirectory")
    : stat.isSymbolicLink()
    ? symlinkRefused(path)
    : fsError(path, "InvalidData", "not a regular file (FIFO, socket or device); only regular files hold data")

/**
 * Opens `name` in `dirfd` for reading. It is first opened with `O_PATH` and checked to be
 * a regular file; only then is that same inode reopened for I/O.
 */
const openFileForReadSync = (dirfd: number, name: string, path: string): { readonly fd: number; readonly size: number } => {
  const handle = NodeFs.openSync(at(dirfd, name), HANDLE_FLAGS)
  try {
    const stat = NodeFs.fstatSync(handle)
    if (!stat.isFile()) throw notAFile(stat, path)
    return { fd: NodeFs.openSync(self(handle), C.O_RDONLY), size: stat.size }
  } finally {
    NodeFs.closeSync(handle)
  }
}

/** A private buffer (never a slice of Node's shared pool) viewed as a plain `Uint8Array`. */
const allocate = (size: number): Uint8Array => {
  const buffer = Buffer.allocUnsafeSlow(size)
  return new Uint8Array(buffer.buffer, buffer.byteOffset, size)
}

/** One read into the thread pool; uninterruptible so the descriptor is never closed under it. */
const readAsync = (fd: number, into: Uint8Array, offset: number, length: number, position: number | null, path: string) =>
  Effect.async<number, VolumeFsFailure>((resume) => {
    NodeFs.read(fd, into, offset, length, position, (error, bytesRead) => {
      resume(error === null ? Effect.succeed(bytesRead) : Effect.fail(fromErrno(error, path)))
    })
  }).pipe(Effect.uninterruptible)

/** One write into the thread pool; uninterruptible for the same reason as {@link readAsync}. */
const writeAsync = (fd: number, data: Uint8Array, offset: number, length: number, path: string) =>
  Effect.async<number, VolumeFsFailure>((resume) => {
    NodeFs.write(fd, data, offset, length, null, (error, written) => {
      resume(error === null ? Effect.succeed(written) : Effect.fail(fromErrno(error, path)))
    })
  }).pipe(Effect.uninterruptible)

/** The first `size` bytes of `fd` (fewer if the file shrank meanwhile). */
const readAll = (fd: number, size: number, path: string): Effect.Effect<Uint8Array, VolumeFsFailure> => {
  const data = allocate(size)
  if (size <= SYNC_IO_BYTES) {
    return hostCall(path, () => {
      let offset = 0
      while (offset < size) {
        const bytesRead = NodeFs.readSync(fd, data, offset, size - offset, offset)
        if (bytesRead === 0) break
        offset += bytesRead
      }
      return data.subarray(0, offset)
    })
  }
  return Effect.gen(function*() {
    let offset = 0
    while (offset < size) {
      const bytesRead = yield* readAsync(fd, data, offset, Math.min(size - offset, ASYNC_SLICE_BYTES), offset, path)
      if (bytesRead === 0) break
      offset += bytesRead
    }
    return data.subarray(0, offset)
  })
}

const writeAllSync = (fd: number, data: Uint8Array): void => {
  let offset = 0
  while (offset < data.byteLength) offset += NodeFs.writeSync(fd, data, offset, data.byteLength - offset)
}

const writeAll = (fd: number, data: Uint8Array, path: string): Effect.Effect<void, VolumeFsFailure> =>
  data.byteLength <= SYNC_IO_BYTES
    ? hostCall(path, () => writeAllSync(fd, data))
    : Effect.gen(function*() {
      let offset = 0
      while (offset < data.byteLength) {
        offset += yield* writeAsync(fd, data, offset, Math.min(data.byteLength - offset, ASYNC_SLICE_BYTES), path)
      }
    })

// ---- atomic replacement -----------------------------------------------------------------

interface TempFile {
  readonly fd: number
  readonly name: string
}

/** A new temporary file; an explicit `mode` is set exactly (the umask does not apply to it). */
const createTempSync = (dirfd: number, mode?: number): TempFile => {
  const name = Paths.tempName()
  const fd = NodeFs.openSync(at(dirfd, name), TEMP_FLAGS, FILE_MODE)
  if (mode !== undefined) NodeFs.fchmodSync(fd, mode)
  return { fd, name }
}

/** Makes the finished temporary file `temp` the entry `name` (a symlink there is replaced, not followed). */
const publishSync = (dirfd: number, temp: Name, name: Name): void => NodeFs.renameSync(at(dirfd, temp), at(dirfd, name))

/** The whole atomic write of a small buffer, as one synchronous step. */
const writeAtomicSync = (dirfd: number, name: string, data: Uint8Array, mode?: number): void => {
  const temp = createTempSync(dirfd, mode)
  let published = false
  try {
    try {
      writeAllSync(temp.fd, data)
    } finally {
      NodeFs.closeSync(temp.fd)
    }
    publishSync(dirfd, temp.name, name)
    published = true
  } finally {
    if (!published) unlinkQuietlySync(dirfd, temp.name)
  }
}

/**
 * An atomic writer into `name` of the directory `dirfd` (which must stay open for the
 * writer's scope). Closing the scope without `commit` closes and removes the temporary file.
 */
const makeWriter = (
  dirfd: number,
  name: string,
  path: string,
  mode?: number
): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const state = { open: true, committed: false }
    const temp = yield* Effect.acquireRelease(
      hostCall(path, () => createTempSync(dirfd, mode)),
      (temp) =>
        Effect.sync(() => {
          if (state.open) closeQuietlySync(temp.fd)
          state.open = false
          if (!state.committed) unlinkQuietlySync(dirfd, temp.name)
        })
    )
    const closed = (what: string) => Effect.fail(fsError(path, "Io", `${what} after the write was closed`))
    const writer: FsWriter = {
      write: (chunk) => Effect.suspend(() => state.open ? writeAll(temp.fd, chunk, path) : closed("write")),
      commit: Effect.suspend(() =>
        state.open
          ? hostCall(path, () => {
            state.open = false
            NodeFs.closeSync(temp.fd)
            publishSync(dirfd, temp.name, name)
            state.committed = true
          })
          : state.committed
          ? Effect.void
          : closed("commit")
      )
    }
    return writer
  })

// ---- tree walks -------------------------------------------------------------------------

/**
 * A depth-first walk over a directory tree through descriptors (never paths, which a
 * concurrent rename could redirect). Handles are opened by `descend` and closed by
 * `close`; at most one handle per level is open at a time.
 */
interface TreeVisitor<H> {
  /** Handles the entries of `dir`; returns the names of the subdirectories to visit. */
  readonly scan: (dir: H) => Effect.Effect<ReadonlyArray<Buffer>, VolumeFsFailure>
  /** Opens subdirectory `name` of `dir`, or `undefined` to skip it (it vanished or changed kind). */
  readonly descend: (dir: H, name: Buffer) => Effect.Effect<H | undefined, VolumeFsFailure>
  /** Runs after subdirectory `name` of `dir` was visited completely, while `child` is still open. */
  readonly leave: (dir: H, name: Buffer, child: H) => Effect.Effect<void, VolumeFsFailure>
  readonly close: (dir: H) => void
}

interface Frame<H> {
  readonly handle: H
  readonly name: Buffer
  readonly pending: Array<Buffer>
}

/** Visits everything below `top` (whose handle the caller owns and closes). */
const walkTree = <H>(top: H, visitor: TreeVisitor<H>): Effect.Effect<void, VolumeFsFailure> =>
  Effect.suspend(() => {
    const stack: Array<Frame<H>> = []
    const walk = Effect.gen(function*() {
      const pending = [...(yield* visitor.scan(top))]
      let steps = 0
      while (true) {
        const frame = stack[stack.length - 1]
        const queue = frame?.pending ?? pending
        const name = queue.pop()
        if (name === undefined) {
          if (frame === undefined) return
          stack.pop()
          yield* Effect.ensuring(
            visitor.leave(stack[stack.length - 1]?.handle ?? top, frame.name, frame.handle),
            Effect.sync(() => visitor.close(frame.handle))
          )
        } else {
          const child = yield* visitor.descend(frame?.handle ?? top, name)
          if (child === undefined) continue
          const next: Frame<H> = { handle: child, name, pending: [] }
          stack.push(next)
          next.pending.push(...(yield* visitor.scan(child)))
        }
        if (++steps % WALK_BATCH === 0) yield* Effect.yieldNow()
      }
    })
    return Effect.ensuring(
      walk,
      Effect.sync(() => {
        for (const frame of stack) visitor.close(frame.handle)
      })
    )
  })

const readdirRaw = (dirfd: number): Array<Buffer> => NodeFs.readdirSync(self(dirfd), { encoding: "buffer" })

/** Opens subdirectory `name` of `dirfd`; `undefined` if it vanished or is no longer a directory. */
const openSubdirSync = (dirfd: number, name: Buffer): number | undefined => {
  try {
    return NodeFs.openSync(at(dirfd, name), DIR_FLAGS)
  } catch (error) {
    const code = errnoCode(error)
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return undefined
    throw error
  }
}

/** Sums apparent sizes of regular files and symlinks below a directory. */
const measureTree = (dirfd: number, path: string): Effect.Effect<number, VolumeFsFailure> => {
  let total = 0
  return walkTree<number>(dirfd, {
    scan: (dir) =>
      hostCall(path, () => {
        const subdirs: Array<Buffer> = []
        for (const name of readdirRaw(dir)) {
          const stat = NodeFs.lstatSync(at(dir, name), { throwIfNoEntry: false })
          if (stat === undefined) continue
          if (stat.isDirectory()) subdirs.push(name)
          else if (stat.isFile() || stat.isSymbolicLink()) total += stat.size
        }
        return subdirs
      }),
    descend: (dir, name) => hostCall(path, () => openSubdirSync(dir, name)),
    leave: () => Effect.void,
    close: closeQuietlySync
  }).pipe(Effect.map(() => total))
}

/** Deletes everything below a directory (not the directory itself). */
const emptyTree = (dirfd: number, path: string): Effect.Effect<void, VolumeFsFailure> =>
  walkTree<number>(dirfd, {
    // unlink first: one call for the common case, and EISDIR tells directories apart.
    scan: (dir) =>
      hostCall(path, () => {
        const subdirs: Array<Buffer> = []
        for (const name of readdirRaw(dir)) {
          try {
            NodeFs.unlinkSync(at(dir, name))
          } catch (error) {
            const code = errnoCode(error)
            if (code === "EISDIR") subdirs.push(name)
            else if (code !== "ENOENT") throw error
          }
        }
        return subdirs
      }),
    descend: (dir, name) =>
      hostCall(path, () => {
        const child = openSubdirSync(dir, name)
        // Swapped for a file or symlink since the scan: remove that instead.
        if (child === undefined) unlinkQuietlySync(dir, name)
        return child
      }),
    leave: (dir, name) =>
      hostCall(path, () => {
        try {
          NodeFs.rmdirSync(at(dir, name))
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error
        }
      }),
    close: closeQuietlySync
  })

interface CopyPair {
  readonly source: number
  readonly target: number
}

/**
 * Copies at most `limit` bytes from `source` to `target` (fewer if the source shrinks).
 * Never trusts the size to be reached: libuv's `copyFile` loops forever when a file
 * shrinks while it copies, which a sandbox could use to hang the host process.
 */
const copyBytes = (source: number, target: number, limit: number, path: string): Effect.Effect<void, VolumeFsFailure> =>
  limit <= SYNC_IO_BYTES
    ? hostCall(path, () => {
      const data = allocate(limit)
      let offset = 0
      while (offset < limit) {
        const bytesRead = NodeFs.readSync(source, data, offset, limit - offset, offset)
        if (bytesRead === 0) break
        offset += bytesRead
      }
      writeAllSync(target, data.subarray(0, offset))
    })
    : Effect.gen(function*() {
      const buffer = allocate(ASYNC_SLICE_BYTES)
      let offset = 0
      while (offset < limit) {
        const bytesRead = yield* readAsync(source, buffer, 0, Math.min(ASYNC_SLICE_BYTES, limit - offset), offset, path)
        if (bytesRead === 0) break
        yield* writeAll(target, buffer.subarray(0, bytesRead), path)
        offset += bytesRead
      }
    })

/**
 * Copies the regular file open as the `O_PATH` handle `handle` (metadata `stat`) to the
 * new entry `target`, with the source's permission bits (umask aside).
 */
const copyFileContents = (handle: number, stat: NodeFs.Stats, target: string | Buffer, path: string) => {
  const mode = stat.mode & 0o7777
  return Effect.acquireUseRelease(
    hostCall(path, () => {
      const source = NodeFs.openSync(self(handle), C.O_RDONLY)
      try {
        return { source, target: NodeFs.openSync(target, TEMP_FLAGS, mode) }
      } catch (error) {
        closeQuietlySync(source)
        throw error
      }
    }),
    (fds) => Effect.zipRight(hostCall(path, () => NodeFs.fchmodSync(fds.target, mode)), copyBytes(fds.source, fds.target, stat.size, path)),
    (fds) =>
      Effect.sync(() => {
        closeQuietlySync(fds.source)
        closeQuietlySync(fds.target)
      })
  )
}

/** Recreates the symlink `name` of `sourceDir` (same target string, never followed) as `target`. */
const copySymlinkSync = (sourceDir: number, name: Name, target: string | Buffer): void => {
  let link: Buffer
  try {
    link = NodeFs.readlinkSync(at(sourceDir, name), { encoding: "buffer" })
  } catch (error) {
    // Swapped for something else since it was inspected: skip it.
    if (errnoCode(error) === "EINVAL" || errnoCode(error) === "ENOENT") return
    throw error
  }
  NodeFs.symlinkSync(link, target)
}

/**
 * Copies the entry `name` of `sourceDir`, already open as the `O_PATH` handle `handle`
 * with metadata `stat`, to `target` (a path that must not exist): a file with its
 * permission bits, a symlink as a symlink, a directory as a new empty private directory
 * (its mode is applied once it is filled). Returns whether it was a directory. FIFOs,
 * sockets and devices are skipped.
 */
const copyOpened = (
  sourceDir: number,
  name: Name,
  handle: number,
  stat: NodeFs.Stats,
  target: string | Buffer,
  path: string
): Effect.Effect<boolean, VolumeFsFailure> => {
  if (stat.isDirectory()) return hostCall(path, () => NodeFs.mkdirSync(target, 0o700)).pipe(Effect.as(true))
  if (stat.isFile()) return copyFileContents(handle, stat, target, path).pipe(Effect.as(false))
  if (stat.isSymbolicLink()) return hostCall(path, () => copySymlinkSync(sourceDir, name, target)).pipe(Effect.as(false))
  return Effect.succeed(false)
}

/** Opens `name` in `dirfd` as an `O_PATH` handle, or `undefined` if it vanished. */
const openHandleSync = (dirfd: number, name: Name): number | undefined => {
  try {
    return NodeFs.openSync(at(dirfd, name), HANDLE_FLAGS)
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined
    throw error
  }
}

/** {@link copyOpened} for an entry found by a directory scan. */
const copyEntry = (sourceDir: number, name: Buffer, target: Buffer | string, path: string) =>
  Effect.acquireUseRelease(
    hostCall(path, () => openHandleSync(sourceDir, name)),
    (handle) =>
      handle === undefined
        ? Effect.succeed(false)
        : Effect.flatMap(
          hostCall(path, () => NodeFs.fstatSync(handle)),
          (stat) => copyOpened(sourceDir, name, handle, stat, target, path)
        ),
    (handle) => handle === undefined ? Effect.void : closeQuietly(handle)
  )

/** Copies everything below `pair.source` into the empty directory `pair.target`. */
const copyTree = (top: CopyPair, path: string): Effect.Effect<void, VolumeFsFailure> =>
  walkTree<CopyPair>(top, {
    scan: ({ source, target }) =>
      Effect.gen(function*() {
        const subdirs: Array<Buffer> = []
        for (const name of yield* hostCall(path, () => readdirRaw(source))) {
          // Another writer's unfinished temporary file is not part of the tree.
          if (Paths.isTempName(name.toString("utf8"))) continue
          if (yield* copyEntry(source, name, at(target, name), path)) subdirs.push(name)
        }
        return subdirs
      }),
    descend: ({ source, target }, name) =>
      hostCall(path, () => {
        const sourceChild = openSubdirSync(source, name)
        if (sourceChild === undefined) return undefined
        try {
          return { source: sourceChild, target: NodeFs.openSync(at(target, name), DIR_FLAGS) }
        } catch (error) {
          closeQuietlySync(sourceChild)
          throw error
        }
      }),
    leave: (_, __, child) => hostCall(path, () => copyDirectoryMode(child)),
    close: ({ source, target }) => {
      closeQuietlySync(source)
      closeQuietlySync(target)
    }
  })

/** Directories are created private (0700) so the copy can fill them, then given the source's mode. */
const copyDirectoryMode = ({ source, target }: CopyPair): void =>
  NodeFs.fchmodSync(target, NodeFs.fstatSync(source).mode & 0o7777)

// ---- the driver -------------------------------------------------------------------------

/**
 * Options of {@link makeDirectoryDriver}.
 */
export interface DirectoryDriverOptions {
  /** Trusted absolute host path of the volume's files; never created by the driver. */
  readonly root: string
  /** Display name of the volume, for `VolumeNotFound`. */
  readonly volume: string
}

/**
 * An `FsDriver` over the host directory `options.root` that never reaches outside it.
 */
export const makeDirectoryDriver = (options: DirectoryDriverOptions): FsDriver => {
  const { root, volume } = options

  const openRoot = Effect.try({
    try: () => NodeFs.openSync(root, DIR_FLAGS),
    catch: (error) =>
      errnoCode(error) === "ENOENT"
        ? new VolumeNotFound({ volume: volume })
        : new StorageError({
          message: `cannot open the files of volume "${volume}" at ${root}: ${error instanceof Error ? error.message : String(error)}`,
          cause: error
        })
  })

  const withRoot = <A>(use: (rootfd: number) => Effect.Effect<A, VolumeFsFailure>) =>
    Effect.acquireUseRelease(openRoot, use, closeQuietly)

  /** Runs `use` with the directory `segments` open (`[]` is the root itself). */
  const withDir = <A>(
    rootfd: number,
    segments: Paths.Segments,
    create: boolean,
    path: string,
    use: (dirfd: number) => Effect.Effect<A, VolumeFsFailure>
  ) =>
    segments.length === 0
      ? use(rootfd)
      : Effect.acquireUseRelease(hostCall(path, () => openDirChainSync(rootfd, segments, create, path)), use, closeQuietly)

  /** Runs `use` with the parent directory of `segments` open, and the leaf name. */
  const withParent = <A>(
    segments: Paths.NonRootSegments,
    create: boolean,
    use: (dirfd: number, name: string, path: string) => Effect.Effect<A, VolumeFsFailure>
  ) => {
    const path = Paths.format(segments)
    const { name, parent } = Paths.split(segments)
    return withRoot((rootfd) => withDir(rootfd, parent, create, path, (dirfd) => use(dirfd, name, path)))
  }

  const stat = (segments: Paths.Segments) =>
    Paths.isNonRoot(segments)
      ? withParent(segments, false, (dirfd, name, path) =>
        hostCall(path, () => {
          const stat = NodeFs.lstatSync(at(dirfd, name))
          return toMetadata(segments, stat, stat.isSymbolicLink() ? linkTargetSync(dirfd, name) : undefined)
        }))
      : withRoot((rootfd) => hostCall("/", () => toMetadata(segments, NodeFs.fstatSync(rootfd))))

  const list = (segments: Paths.Segments) => {
    const path = Paths.format(segments)
    return withRoot((rootfd) => withDir(rootfd, segments, false, path, (dirfd) => hostCall(path, () => listSync(dirfd, segments))))
  }

  const read = (segments: Paths.NonRootSegments) =>
    withParent(segments, false, (dirfd, name, path) =>
      Effect.acquireUseRelease(
        hostCall(path, () => openFileForReadSync(dirfd, name, path)),
        ({ fd, size }) => readAll(fd, size, path),
        ({ fd }) => closeQuietly(fd)
      ))

  /** The first `length` bytes of `block` as chunks of at most `chunkSize` bytes. */
  const sliceBlock = (block: Uint8Array, length: number, chunkSize: number): Chunk.Chunk<Uint8Array> => {
    const chunks: Array<Uint8Array> = []
    for (let offset = 0; offset < length; offset += chunkSize) {
      chunks.push(block.subarray(offset, Math.min(offset + chunkSize, length)))
    }
    return Chunk.unsafeFromArray(chunks)
  }

  const readStream = (segments: Paths.NonRootSegments, chunkSize: number): Stream.Stream<Uint8Array, VolumeFsFailure> =>
    Stream.unwrapScoped(
      Effect.map(
        Effect.acquireRelease(
          withParent(segments, false, (dirfd, name, path) => hostCall(path, () => openFileForReadSync(dirfd, name, path))),
          ({ fd }) => closeQuietly(fd)
        ),
        ({ fd }) => {
          const path = Paths.format(segments)
          // Reads 1 MiB blocks (a fresh buffer each, so chunks handed out are never
          // overwritten), slices them into chunks, and keeps a few blocks read ahead so the
          // disk works while the consumer does: 64 KiB reads one at a time left the stream
          // waiting on the thread pool (docs/benchmarks.md).
          return Stream.repeatEffectChunkOption(
            Effect.suspend(() => {
              const block = allocate(READ_BLOCK_BYTES)
              return readAsync(fd, block, 0, READ_BLOCK_BYTES, null, path).pipe(
                Effect.mapError(Option.some),
                Effect.flatMap((bytesRead) =>
                  bytesRead === 0 ? Effect.fail(Option.none()) : Effect.succeed(sliceBlock(block, bytesRead, chunkSize))
                )
              )
            })
          ).pipe(Stream.bufferChunks({ capacity: READ_AHEAD_BLOCKS }))
        }
      )
    )

  const openWriter = (segments: Paths.NonRootSegments, mode?: number): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
    Effect.gen(function*() {
      const path = Paths.format(segments)
      const { name, parent } = Paths.split(segments)
      const rootfd = yield* Effect.acquireRelease(openRoot, closeQuietly)
      // The parent stays open for the writer's life: the commit renames inside it.
      const dirfd = parent.length === 0
        ? rootfd
        : yield* Effect.acquireRelease(hostCall(path, () => openDirChainSync(rootfd, parent, true, path)), closeQuietly)
      return yield* makeWriter(dirfd, name, path, mode)
    })

  const write = (segments: Paths.NonRootSegments, data: Uint8Array, mode?: number) =>
    withParent(segments, true, (dirfd, name, path) =>
      data.byteLength <= SYNC_IO_BYTES
        ? hostCall(path, () => writeAtomicSync(dirfd, name, data, mode))
        : Effect.scoped(
          Effect.flatMap(makeWriter(dirfd, name, path, mode), (writer) => Effect.zipRight(writer.write(data), writer.commit))
        ))

  const mkdir = (segments: Paths.Segments) =>
    Paths.isNonRoot(segments)
      ? withParent(segments, true, (dirfd, name, path) =>
        hostCall(path, () => {
          try {
            NodeFs.mkdirSync(at(dirfd, name), DIRECTORY_MODE)
          } catch (error) {
            if (errnoCode(error) !== "EEXIST") throw error
            const existing = NodeFs.lstatSync(at(dirfd, name))
            if (existing.isSymbolicLink()) throw symlinkRefused(path)
            if (!existing.isDirectory()) throw fsError(path, "AlreadyExists")
          }
        }))
      : withRoot(() => Effect.void)

  const remove = (segments: Paths.NonRootSegments) =>
    withParent(segments, false, (dirfd, name, path) => hostCall(path, () => NodeFs.unlinkSync(at(dirfd, name))))

  const removeDir = (segments: Paths.NonRootSegments) =>
    withParent(segments, false, (dirfd, name, path) =>
      Effect.acquireUseRelease(
        // A symlink is not a directory here (ENOTDIR), whatever it points to.
        hostCall(path, () => NodeFs.openSync(at(dirfd, name), DIR_FLAGS)),
        (fd) => emptyTree(fd, path),
        closeQuietly
      ).pipe(
        Effect.zipRight(hostCall(path, () => NodeFs.rmdirSync(at(dirfd, name)))),
        // A sandbox writing into the tree meanwhile: empty it again.
        Effect.retry({
          times: RACE_RETRIES,
          while: (error) => error._tag === "VolumeFsError" && error.reason === "DirectoryNotEmpty"
        })
      ))

  /** Display paths and parent/name splits of a rename's or copy's source and target. */
  const twoPaths = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) => ({
    fromPath: Paths.format(from),
    toPath: Paths.format(to),
    source: Paths.split(from),
    target: Paths.split(to)
  })

  const rename = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) =>
    withRoot((rootfd) => {
      const { fromPath, source, target, toPath } = twoPaths(from, to)
      return withDir(rootfd, source.parent, false, fromPath, (sourceDir) =>
        Effect.zipRight(
          // The source must exist before the target's parents are created.
          hostCall(fromPath, () => NodeFs.lstatSync(at(sourceDir, source.name))),
          withDir(rootfd, target.parent, true, toPath, (targetDir) =>
            Effect.try({
              try: () => NodeFs.renameSync(at(sourceDir, source.name), at(targetDir, target.name)),
              catch: (error) => {
                const code = errnoCode(error)
                if (code === "ENOENT") return fromErrno(error, fromPath)
                if (code === "EINVAL") {
                  return new InvalidPath({ path: toPath, reason: `rename target lies inside the source ${fromPath}` })
                }
                return fromErrno(error, toPath)
              }
            }))
        ))
    })

  const copy = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) =>
    withRoot((rootfd) => {
      const { fromPath, source, target, toPath } = twoPaths(from, to)
      return withDir(rootfd, source.parent, false, fromPath, (sourceDir) =>
        Effect.acquireUseRelease(
          hostCall(fromPath, () => NodeFs.openSync(at(sourceDir, source.name), HANDLE_FLAGS)),
          (handle) =>
            Effect.gen(function*() {
              const stat = yield* hostCall(fromPath, () => NodeFs.fstatSync(handle))
              if (!stat.isFile() && !stat.isDirectory() && !stat.isSymbolicLink()) {
                return yield* Effect.fail(notAFile(stat, fromPath))
              }
              // Parents are created only once the source is known to exist.
              return yield* withDir(rootfd, target.parent, true, toPath, (targetDir) =>
                stat.isDirectory()
                  ? copyDirectory(handle, targetDir, target.name, toPath)
                  : replaceWithCopy(targetDir, target.name, toPath, (temp) =>
                    copyOpened(sourceDir, source.name, handle, stat, temp, toPath)))
            }),
          closeQuietly
        ))
    })

  /** Runs `copyTo` into a temporary entry next to `name`, then renames it over `name`. */
  const replaceWithCopy = (
    targetDir: number,
    name: string,
    path: string,
    copyTo: (temp: string | Buffer) => Effect.Effect<unknown, VolumeFsFailure>
  ) =>
    Effect.acquireUseRelease(
      Effect.sync(() => Paths.tempName()),
      (temp) => Effect.zipRight(copyTo(at(targetDir, temp)), hostCall(path, () => publishSync(targetDir, temp, name))),
      (temp, exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => unlinkQuietlySync(targetDir, temp))
    )

  /**
   * Copies a directory tree into a hidden temporary directory next to the target and
   * renames it into place, so the copy appears whole or not at all.
   */
  const copyDirectory = (sourceHandle: number, targetDir: number, name: string, path: string) =>
    Effect.gen(function*() {
      const existing = yield* hostCall(path, () => NodeFs.lstatSync(at(targetDir, name), { throwIfNoEntry: false }))
      if (existing !== undefined) return yield* Effect.fail(fsError(path, "AlreadyExists"))
      yield* Effect.acquireUseRelease(
        hostCall(path, () => {
          const temp = Paths.tempName()
          NodeFs.mkdirSync(at(targetDir, temp), 0o700)
          return temp
        }),
        (temp) =>
          Effect.acquireUseRelease(
            hostCall(path, () => ({
              // The handle's magic link is followed on purpose: it is the source directory itself.
              source: NodeFs.openSync(self(sourceHandle), C.O_RDONLY | C.O_DIRECTORY),
              target: NodeFs.openSync(at(targetDir, temp), DIR_FLAGS)
            })),
            (pair) =>
              copyTree(pair, path).pipe(
                Effect.zipRight(hostCall(path, () => copyDirectoryMode(pair))),
                Effect.zipRight(hostCall(path, () => publishSync(targetDir, temp, name)))
              ),
            ({ source, target }) =>
              Effect.sync(() => {
                closeQuietlySync(source)
                closeQuietlySync(target)
              })
          ),
        (temp, exit) => Exit.isSuccess(exit) ? Effect.void : removeQuietly(targetDir, temp)
      )
    })

  /** Best-effort removal of a tree we created (a failed copy's temporary directory). */
  const removeQuietly = (dirfd: number, name: string) =>
    Effect.acquireUseRelease(
      hostCall("/", () => NodeFs.openSync(at(dirfd, name), DIR_FLAGS)),
      (fd) => emptyTree(fd, "/"),
      closeQuietly
    ).pipe(
      Effect.zipRight(hostCall("/", () => NodeFs.rmdirSync(at(dirfd, name)))),
      Effect.ignore
    )

  const measure = (segments: Paths.Segments) => {
    const path = Paths.format(segments)
    const measured = Paths.isNonRoot(segments)
      ? withParent(segments, false, (dirfd, name) =>
        Effect.flatMap(hostCall(path, () => NodeFs.lstatSync(at(dirfd, name))), (stat) =>
          stat.isDirectory()
            ? Effect.acquireUseRelease(
              hostCall(path, () => NodeFs.openSync(at(dirfd, name), DIR_FLAGS)),
              (fd) => measureTree(fd, path),
              closeQuietly
            )
            : Effect.succeed(stat.isFile() || stat.isSymbolicLink() ? stat.size : 0)))
      : withRoot((rootfd) => measureTree(rootfd, path))
    return measured.pipe(
      Effect.catchIf(
        (error) => error._tag === "PathNotFound" || (error._tag === "VolumeFsError" && error.reason === "NotADirectory"),
        () => Effect.succeed(0)
      )
    )
  }

  return {
    stat,
    list,
    read,
    readStream,
    openWriter,
    write,
    mkdir,
    remove,
    removeDir,
    rename,
    copy,
    measure,
    ...makeLinkOps({ withParent, withRoot }),
    watch: (segments, recursive) => watchDirectory({ root, volume, segments, recursive, stat })
  }
}
