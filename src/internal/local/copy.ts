/**
 * Copies inside a volume for the local directory driver: bytes are copied by us (never
 * `copyFile`, which loops forever on a file a sandbox shrinks), symlinks are recreated as
 * symlinks, FIFOs, sockets and devices are skipped.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import * as Paths from "../paths.js"
import { errnoCode } from "./errno.js"
import {
  ASYNC_SLICE_BYTES,
  at,
  C,
  closeQuietly,
  closeQuietlySync,
  DIR_FLAGS,
  hostCall,
  type Name,
  openHandleSync,
  openSubdirSync,
  readdirRaw,
  self,
  SYNC_IO_BYTES,
  TEMP_FLAGS
} from "./fd.js"
import { allocate, readAsync, writeAll, writeAllSync } from "./fileIo.js"
import { walkTree } from "./tree.js"

export interface CopyPair {
  readonly source: number
  readonly target: number
}

/**
 * Copies at most `limit` bytes from `source` to `target` (fewer if the source shrinks).
 * Never trusts the size to be reached: libuv's `copyFile` loops forever when a file
 * shrinks while it copies, which a sandbox could use to hang the host process.
 */
export const copyBytes = (source: number, target: number, limit: number, path: string): Effect.Effect<void, VolumeFsFailure> =>
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
export const copyFileContents = (handle: number, stat: NodeFs.Stats, target: string | Buffer, path: string) => {
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
export const copySymlinkSync = (sourceDir: number, name: Name, target: string | Buffer): void => {
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
export const copyOpened = (
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


/** {@link copyOpened} for an entry found by a directory scan. */
export const copyEntry = (sourceDir: number, name: Buffer, target: Buffer | string, path: string) =>
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
export const copyTree = (top: CopyPair, path: string): Effect.Effect<void, VolumeFsFailure> =>
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
export const copyDirectoryMode = ({ source, target }: CopyPair): void =>
  NodeFs.fchmodSync(target, NodeFs.fstatSync(source).mode & 0o7777)
