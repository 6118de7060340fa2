/**
 * Entry-level operations on a directory volume's host files that `VolumeFs` does not
 * offer yet (symlink targets, modes, times), for tar import and export. They walk from
 * the trusted root with the same descriptor walk as the directory driver (`fd.ts`), so a
 * symlink swapped in anywhere on the way is refused instead of followed, and act on the
 * last component with calls that do not follow it either.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import * as Paths from "../paths.js"
import { at, C, closeQuietly, DIR_FLAGS, hostCall, openDirChainSync } from "./fd.js"

/** Set-user-ID, set-group-ID and sticky bits. */
export const SPECIAL_MODE_BITS = 0o7000

/** Runs `use` with the parent of `segments` open (walked from `root` without following symlinks). */
const withParent = <A>(
  root: string,
  segments: Paths.NonRootSegments,
  use: (dirfd: number, name: string, path: string) => A
): Effect.Effect<A, VolumeFsFailure> => {
  const path = Paths.format(segments)
  const { name, parent } = Paths.split(segments)
  return Effect.acquireUseRelease(
    hostCall(path, () => NodeFs.openSync(root, DIR_FLAGS)),
    (rootfd) =>
      Effect.acquireUseRelease(
        hostCall(path, () => parent.length === 0 ? NodeFs.openSync(`/proc/self/fd/${rootfd}`, DIR_FLAGS) : openDirChainSync(rootfd, parent, false, path)),
        (dirfd) => hostCall(path, () => use(dirfd, name, path)),
        closeQuietly
      ),
    closeQuietly
  )
}

/** The target of the symlink at `segments` (never followed). */
export const readSymlink = (root: string, segments: Paths.NonRootSegments): Effect.Effect<string, VolumeFsFailure> =>
  withParent(root, segments, (dirfd, name) => NodeFs.readlinkSync(at(dirfd, name), { encoding: "utf8" }))

/** Creates a symlink at `segments` pointing to `target`, replacing a file or symlink there. */
export const writeSymlink = (
  root: string,
  segments: Paths.NonRootSegments,
  target: string
): Effect.Effect<void, VolumeFsFailure> =>
  withParent(root, segments, (dirfd, name) => {
    const existing = NodeFs.lstatSync(at(dirfd, name), { throwIfNoEntry: false })
    if (existing !== undefined && !existing.isDirectory()) NodeFs.unlinkSync(at(dirfd, name))
    NodeFs.symlinkSync(target, at(dirfd, name))
  })

/**
 * Sets the permission bits and modification time of the entry at `segments`. A symlink
 * gets only its time (through the parent descriptor, never followed); a file or directory
 * is opened with `O_NOFOLLOW` and changed through that descriptor, so the entry that was
 * checked is the one that changes.
 */
export const setMetadata = (
  root: string,
  segments: Paths.NonRootSegments,
  metadata: { readonly mode: number | undefined; readonly mtime: Date | undefined }
): Effect.Effect<void, VolumeFsFailure> =>
  withParent(root, segments, (dirfd, name) => {
    const entry = NodeFs.lstatSync(at(dirfd, name))
    if (entry.isSymbolicLink()) {
      if (metadata.mtime !== undefined) NodeFs.lutimesSync(at(dirfd, name), metadata.mtime, metadata.mtime)
      return
    }
    // A FIFO, socket or device is never opened (a FIFO would block).
    if (!entry.isFile() && !entry.isDirectory()) return
    const fd = NodeFs.openSync(at(dirfd, name), C.O_RDONLY | C.O_NOFOLLOW | (entry.isDirectory() ? C.O_DIRECTORY : 0))
    try {
      if (metadata.mode !== undefined) NodeFs.fchmodSync(fd, metadata.mode & 0o7777)
      if (metadata.mtime !== undefined) NodeFs.futimesSync(fd, metadata.mtime, metadata.mtime)
    } finally {
      NodeFs.closeSync(fd)
    }
  })
