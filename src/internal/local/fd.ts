/**
 * Emulated `openat(2)` for the local directory driver: every path is walked from a
 * trusted directory descriptor one component at a time, through
 * `/proc/self/fd/<dirfd>/<name>`, and never follows a symlink (see `directoryDriver.ts`).
 * This module is the only place that turns a volume path into host calls.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import * as Paths from "../paths.js"
import { errnoCode, fromErrno, fsError, symlinkRefused } from "./errno.js"

export const C = NodeFs.constants

/** Linux `O_PATH` (Node does not export it): a handle that allows `fstat` but no I/O. */
export const O_PATH = 0o10000000

/** A directory handle that refuses a symlink as the last component. */
export const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW
/** A handle on the entry itself, whatever it is (a symlink is not followed). */
export const HANDLE_FLAGS = O_PATH | C.O_NOFOLLOW
/** A fresh temporary file: never an existing entry, never through a symlink. */
export const TEMP_FLAGS = C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW
export const FILE_MODE = 0o644
export const DIRECTORY_MODE = 0o777

/** Transfers up to this size run synchronously (see `directoryDriver.ts`). */
export const SYNC_IO_BYTES = 64 * 1024

/** Largest single read or write handed to the thread pool. */
export const ASYNC_SLICE_BYTES = 1024 * 1024
/** Directory-walk steps done between two chances for other fibers to run. */
export const WALK_BATCH = 64
/** How often a `mkdir -p` step or a `removeDir` is retried when a concurrent change gets in the way. */
export const RACE_RETRIES = 3

// ---- emulated openat --------------------------------------------------------------------

export type Name = string | Buffer

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

export const closeQuietly = (fd: number) => Effect.sync(() => closeQuietlySync(fd))

export const unlinkQuietlySync = (dirfd: number, name: Name): void => {
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
export const notEnterable = (dirfd: number, name: string, walked: Paths.Segments, path: string): VolumeFsFailure => {
  const stat = NodeFs.lstatSync(at(dirfd, name), { throwIfNoEntry: false })
  return stat?.isSymbolicLink() === true
    ? symlinkRefused(path, Paths.format(walked))
    : fsError(path, "NotADirectory")
}

/** Opens directory `segments[index]` inside `dirfd`, creating it first when `create` is set. */
export const openChildDirSync = (
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

export const readdirRaw = (dirfd: number): Array<Buffer> => NodeFs.readdirSync(self(dirfd), { encoding: "buffer" })

/** Opens subdirectory `name` of `dirfd`; `undefined` if it vanished or is no longer a directory. */
export const openSubdirSync = (dirfd: number, name: Buffer): number | undefined => {
  try {
    return NodeFs.openSync(at(dirfd, name), DIR_FLAGS)
  } catch (error) {
    const code = errnoCode(error)
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return undefined
    throw error
  }
}

/** Opens `name` in `dirfd` as an `O_PATH` handle, or `undefined` if it vanished. */
export const openHandleSync = (dirfd: number, name: Name): number | undefined => {
  try {
    return NodeFs.openSync(at(dirfd, name), HANDLE_FLAGS)
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined
    throw error
  }
}

