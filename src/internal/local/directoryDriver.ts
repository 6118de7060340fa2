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
import * as Usage from "../usage.js"
import type { UsageSink } from "../usage.js"
import { copyDirectoryMode, copyOpened, copyTree } from "./copy.js"
import { errnoCode, fromErrno, fsError, storageReason, symlinkRefused } from "./errno.js"
import {
  at,
  C,
  closeQuietly,
  closeQuietlySync,
  DIR_FLAGS,
  DIRECTORY_MODE,
  HANDLE_FLAGS,
  hostCall,
  openDirChainSync,
  RACE_RETRIES,
  self,
  SYNC_IO_BYTES,
  unlinkQuietlySync
} from "./fd.js"
import { allocate, makeWriter, notAFile, openFileForReadSync, publishSync, readAll, readAsync, writeAtomicSync } from "./fileIo.js"
import { linkTargetSync, makeLinkOps } from "./links.js"
import type { LinkOps } from "./links.js"
import { eachEntry, emptyTree, measureTree } from "./tree.js"
import { watchDirectory } from "./watch.js"

export { SYNC_IO_BYTES } from "./fd.js"

/**
 * Most bytes one `readStream` read asks for; it is sliced into the requested chunk size.
 * Larger blocks cost less garbage collection per byte (a fresh block per read is external
 * memory the GC tracks) but raised the peak RSS of a 1 GiB stream above that of a 64 MiB
 * one (4 MiB: +31 MiB, 2 MiB: +42 MiB, against +21 MiB at 1 MiB; docs/benchmarks.md), and
 * the RSS must not grow with the file. A smaller file gets a block of its own size.
 */
const READ_BLOCK_BYTES = 1024 * 1024

/** Smallest block a `readStream` reads (a file that grows while read is read in these). */
const MIN_READ_BLOCK_BYTES = 64 * 1024

/** Blocks a `readStream` reads ahead of its consumer (constant memory: at most this many blocks). */
const READ_AHEAD_BLOCKS = 4

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

/**
 * Entries of the directory open as `dirfd`, temporary names hidden. Read in batches with
 * turns of the event loop between them (a sandbox can make a directory of any size).
 */
const listDir = (dirfd: number, segments: Paths.Segments, path: string): Effect.Effect<Array<FsEntry>, VolumeFsFailure> =>
  Effect.suspend(() => {
    const found: Array<{ readonly name: string; readonly stat: NodeFs.Stats }> = []
    // Raw names, so an entry whose name is not UTF-8 can still be stat'ed.
    return eachEntry(dirfd, path, (raw) => {
      const name = raw.toString("utf8")
      if (Paths.isTempName(name)) return
      const stat = NodeFs.lstatSync(at(dirfd, raw), { throwIfNoEntry: false })
      if (stat !== undefined) found.push({ name, stat })
    }).pipe(
      Effect.map(() => found.sort(byName).map(({ name, stat }) =>
        toEntry(Paths.child(segments, name), stat, stat.isSymbolicLink() ? linkTargetSync(dirfd, name) : undefined)
      ))
    )
  })

// ---- the driver -------------------------------------------------------------------------

/**
 * Options of {@link makeDirectoryDriver}.
 */
export interface DirectoryDriverOptions {
  /** Trusted absolute host path of the volume's files; never created by the driver. */
  readonly root: string
  /** Display name of the volume, for `VolumeNotFound`. */
  readonly volume: string
  /**
   * Hears every change of the volume's usage this driver makes (writes, copies, removals,
   * renames over files), synchronously and right after it happened, so the backend can
   * keep the volume's usage account current without walking the tree.
   */
  readonly onChange?: UsageSink | undefined
}

/** The directory driver: an `FsDriver` plus the full usage measurement the backend needs. */
export interface DirectoryDriver extends FsDriver {
  readonly setModified: LinkOps["setModified"]
  /**
   * Usage (bytes, allocated bytes, files) at or below `path`; zero when absent. Walks the
   * tree; with `doomed`, the same walk deletes the temporary files (and unfinished copies)
   * whose name it accepts, and counts what stays.
   */
  readonly measureUsage: (
    path: Paths.Segments,
    doomed?: (name: string) => boolean
  ) => Effect.Effect<Usage.Usage, VolumeFsFailure>
}

/**
 * An `FsDriver` over the host directory `options.root` that never reaches outside it.
 */
export const makeDirectoryDriver = (options: DirectoryDriverOptions): DirectoryDriver => {
  const { root, volume } = options
  const changed: UsageSink = options.onChange ?? (() => {})

  const openRoot = Effect.try({
    try: () => NodeFs.openSync(root, DIR_FLAGS),
    catch: (error) =>
      errnoCode(error) === "ENOENT"
        ? new VolumeNotFound({ volume: volume })
        : new StorageError({
          message: `cannot open the files of volume "${volume}" at ${root}: ${error instanceof Error ? error.message : String(error)}`,
          reason: storageReason(error),
          operation: "open",
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
    return withRoot((rootfd) => withDir(rootfd, segments, false, path, (dirfd) => listDir(dirfd, segments, path)))
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
        ({ fd, size }) => {
          const path = Paths.format(segments)
          // Reads blocks (a fresh buffer each, so chunks handed out are never overwritten),
          // slices them into chunks, and keeps a few blocks read ahead so the disk works
          // while the consumer does: 64 KiB reads one at a time left the stream waiting on
          // the thread pool (docs/benchmarks.md).
          let position = 0
          return Stream.repeatEffectChunkOption(
            Effect.suspend(() => {
              const length = Math.min(READ_BLOCK_BYTES, Math.max(size - position, MIN_READ_BLOCK_BYTES))
              const block = allocate(length)
              return readAsync(fd, block, 0, length, null, path).pipe(
                Effect.mapError(Option.some),
                Effect.flatMap((bytesRead) => {
                  position += bytesRead
                  return bytesRead === 0 ? Effect.fail(Option.none()) : Effect.succeed(sliceBlock(block, bytesRead, chunkSize))
                })
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
      return yield* makeWriter(dirfd, name, path, changed, mode)
    })

  const write = (segments: Paths.NonRootSegments, data: Uint8Array, mode?: number) =>
    withParent(segments, true, (dirfd, name, path) =>
      data.byteLength <= SYNC_IO_BYTES
        ? hostCall(path, () => writeAtomicSync(dirfd, name, data, changed, mode))
        : Effect.scoped(
          Effect.flatMap(makeWriter(dirfd, name, path, changed, mode), (writer) => Effect.zipRight(writer.write(data), writer.commit))
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
    withParent(segments, false, (dirfd, name, path) =>
      hostCall(path, () => {
        const stat = NodeFs.lstatSync(at(dirfd, name))
        // unlink refuses a directory (EISDIR) whatever the lstat said.
        NodeFs.unlinkSync(at(dirfd, name))
        changed(Usage.subtract(Usage.zero, Usage.ofStat(stat)))
      }))

  const removeDir = (segments: Paths.NonRootSegments) =>
    withParent(segments, false, (dirfd, name, path) =>
      Effect.acquireUseRelease(
        // A symlink is not a directory here (ENOTDIR), whatever it points to.
        hostCall(path, () => NodeFs.openSync(at(dirfd, name), DIR_FLAGS)),
        (fd) => emptyTree(fd, path, (removed) => changed(Usage.subtract(Usage.zero, removed))),
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
              try: () => {
                // A file renamed over another one frees the other one's bytes.
                const replaced = NodeFs.lstatSync(at(targetDir, target.name), { throwIfNoEntry: false })
                NodeFs.renameSync(at(sourceDir, source.name), at(targetDir, target.name))
                if (replaced !== undefined && !replaced.isDirectory()) {
                  changed(Usage.subtract(Usage.zero, Usage.ofStat(replaced)))
                }
              },
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
      (temp) =>
        Effect.zipRight(copyTo(at(targetDir, temp)), hostCall(path, () => changed(publishSync(targetDir, temp, name)))),
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
                // What the copy adds, measured on the copy itself before it is published.
                Effect.zipRight(measureTree(pair.target, path)),
                Effect.tap(() => hostCall(path, () => publishSync(targetDir, temp, name))),
                Effect.map(changed)
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

  const measureUsage = (
    segments: Paths.Segments,
    doomed?: (name: string) => boolean
  ): Effect.Effect<Usage.Usage, VolumeFsFailure> => {
    const path = Paths.format(segments)
    const measured = Paths.isNonRoot(segments)
      ? withParent(segments, false, (dirfd, name) =>
        Effect.flatMap(hostCall(path, () => NodeFs.lstatSync(at(dirfd, name))), (stat) =>
          stat.isDirectory()
            ? Effect.acquireUseRelease(
              hostCall(path, () => NodeFs.openSync(at(dirfd, name), DIR_FLAGS)),
              (fd) => measureTree(fd, path, doomed),
              closeQuietly
            )
            : Effect.succeed(Usage.ofStat(stat))))
      : withRoot((rootfd) => measureTree(rootfd, path, doomed))
    return measured.pipe(
      Effect.catchIf(
        (error) => error._tag === "PathNotFound" || (error._tag === "VolumeFsError" && error.reason === "NotADirectory"),
        () => Effect.succeed(Usage.zero)
      )
    )
  }

  const measure = (segments: Paths.Segments) => Effect.map(measureUsage(segments), (usage) => usage.logicalBytes)


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
    measureUsage,
    ...makeLinkOps({ withParent, withRoot, changed }),
    watch: (segments, recursive) => watchDirectory({ root, volume, segments, recursive, stat })
  }
}
