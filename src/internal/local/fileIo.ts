/**
 * File contents for the local directory driver: opening regular files safely for reading,
 * transfers (small ones synchronous, large ones through the thread pool in slices) and
 * the atomic writer (a temporary file renamed over the target).
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import type { FsWriter } from "../fsDriver.js"
import * as Paths from "../paths.js"
import * as Usage from "../usage.js"
import type { UsageSink } from "../usage.js"
import { fromErrno, fsError, symlinkRefused } from "./errno.js"
import {
  ASYNC_SLICE_BYTES,
  at,
  C,
  closeQuietlySync,
  FILE_MODE,
  HANDLE_FLAGS,
  hostCall,
  type Name,
  self,
  SYNC_IO_BYTES,
  TEMP_FLAGS,
  unlinkQuietlySync
} from "./fd.js"

// ---- file contents ----------------------------------------------------------------------

/** Why a non-regular entry cannot be read or copied as a file. */
export const notAFile = (stat: NodeFs.Stats, path: string): VolumeFsFailure =>
  stat.isDirectory()
    ? fsError(path, "IsADirectory")
    : stat.isSymbolicLink()
    ? symlinkRefused(path)
    : fsError(path, "InvalidData", "not a regular file (FIFO, socket or device); only regular files hold data")

/**
 * Opens `name` in `dirfd` for reading. It is first opened with `O_PATH` and checked to be
 * a regular file; only then is that same inode reopened for I/O.
 */
export const openFileForReadSync = (dirfd: number, name: string, path: string): { readonly fd: number; readonly size: number } => {
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
export const allocate = (size: number): Uint8Array => {
  const buffer = Buffer.allocUnsafeSlow(size)
  return new Uint8Array(buffer.buffer, buffer.byteOffset, size)
}

/** One read into the thread pool; uninterruptible so the descriptor is never closed under it. */
export const readAsync = (fd: number, into: Uint8Array, offset: number, length: number, position: number | null, path: string) =>
  Effect.async<number, VolumeFsFailure>((resume) => {
    NodeFs.read(fd, into, offset, length, position, (error, bytesRead) => {
      resume(error === null ? Effect.succeed(bytesRead) : Effect.fail(fromErrno(error, path)))
    })
  }).pipe(Effect.uninterruptible)

/** One write into the thread pool; uninterruptible for the same reason as {@link readAsync}. */
export const writeAsync = (fd: number, data: Uint8Array, offset: number, length: number, path: string) =>
  Effect.async<number, VolumeFsFailure>((resume) => {
    NodeFs.write(fd, data, offset, length, null, (error, written) => {
      resume(error === null ? Effect.succeed(written) : Effect.fail(fromErrno(error, path)))
    })
  }).pipe(Effect.uninterruptible)

/** The first `size` bytes of `fd` (fewer if the file shrank meanwhile). */
export const readAll = (fd: number, size: number, path: string): Effect.Effect<Uint8Array, VolumeFsFailure> => {
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

export const writeAllSync = (fd: number, data: Uint8Array): void => {
  let offset = 0
  while (offset < data.byteLength) offset += NodeFs.writeSync(fd, data, offset, data.byteLength - offset)
}

export const writeAll = (fd: number, data: Uint8Array, path: string): Effect.Effect<void, VolumeFsFailure> =>
  data.byteLength <= SYNC_IO_BYTES
    ? hostCall(path, () => writeAllSync(fd, data))
    : Effect.gen(function*() {
      let offset = 0
      while (offset < data.byteLength) {
        offset += yield* writeAsync(fd, data, offset, Math.min(data.byteLength - offset, ASYNC_SLICE_BYTES), path)
      }
    })

// ---- atomic replacement -----------------------------------------------------------------

export interface TempFile {
  readonly fd: number
  readonly name: string
}

/** A new temporary file; an explicit `mode` is set exactly (the umask does not apply to it). */
export const createTempSync = (dirfd: number, mode?: number): TempFile => {
  const name = Paths.tempName()
  const fd = NodeFs.openSync(at(dirfd, name), TEMP_FLAGS, FILE_MODE)
  if (mode !== undefined) NodeFs.fchmodSync(fd, mode)
  return { fd, name }
}

/**
 * Makes the finished temporary file `temp` the entry `name` (a symlink there is replaced,
 * not followed) and returns how the volume's usage changed (the new file minus what it
 * replaced; directories count for nothing).
 */
export const publishSync = (dirfd: number, temp: Name, name: Name): Usage.Usage => {
  const added = Usage.ofStat(NodeFs.lstatSync(at(dirfd, temp)))
  const replaced = Usage.ofStat(NodeFs.lstatSync(at(dirfd, name), { throwIfNoEntry: false }))
  NodeFs.renameSync(at(dirfd, temp), at(dirfd, name))
  return Usage.subtract(added, replaced)
}

/** The whole atomic write of a small buffer, as one synchronous step; `changed` hears the usage change. */
export const writeAtomicSync = (
  dirfd: number,
  name: string,
  data: Uint8Array,
  changed?: UsageSink,
  mode?: number
): void => {
  const temp = createTempSync(dirfd, mode)
  let published = false
  try {
    try {
      writeAllSync(temp.fd, data)
    } finally {
      NodeFs.closeSync(temp.fd)
    }
    const change = publishSync(dirfd, temp.name, name)
    published = true
    changed?.(change)
  } finally {
    if (!published) unlinkQuietlySync(dirfd, temp.name)
  }
}

/**
 * An atomic writer into `name` of the directory `dirfd` (which must stay open for the
 * writer's scope). Closing the scope without `commit` closes and removes the temporary file.
 */
export const makeWriter = (
  dirfd: number,
  name: string,
  path: string,
  changed?: UsageSink,
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
            const change = publishSync(dirfd, temp.name, name)
            state.committed = true
            changed?.(change)
          })
          : state.committed
          ? Effect.void
          : closed("commit")
      )
    }
    return writer
  })
