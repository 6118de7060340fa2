/**
 * Symlinks and permission bits on the local backend's host directories (SPEC §11), with
 * the directory driver's containment: the parent is reached through the component-by-
 * component walk, and the final call never follows a symlink — `symlink(2)` creates (and
 * fails on any existing entry, dangling links included), `readlink(2)` reads the link itself,
 * and `chmod` acts on an `O_PATH | O_NOFOLLOW` handle of the entry that is first checked not
 * to be a symlink (Linux cannot change a link's own mode; following it is what we refuse).
 * Times (`setModified`, for archive imports) are set the same way; a symlink gets its own
 * time through the parent descriptor (`lutimes`), never its target's.
 */
import type { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import type { FsDriver } from "../fsDriver.js"
import * as Paths from "../paths.js"
import * as Usage from "../usage.js"
import type { UsageSink } from "../usage.js"
import { at, HANDLE_FLAGS, hostCall, self } from "./fd.js"
import { errnoCode, fromErrno, fsError, symlinkRefused } from "./errno.js"

/** The stored target of the symlink `name` in `dirfd`, as UTF-8 (never followed). */
export const linkTargetSync = (dirfd: number, name: string | Buffer): string =>
  NodeFs.readlinkSync(at(dirfd, name), { encoding: "utf8" })

/** What the directory driver lends: its contained walks to a parent directory or the root. */
export interface LinkOpsContext {
  readonly withParent: <A>(
    segments: Paths.NonRootSegments,
    create: boolean,
    use: (dirfd: number, name: string, path: string) => Effect.Effect<A, VolumeFsFailure>
  ) => Effect.Effect<A, VolumeFsFailure>
  readonly withRoot: <A>(use: (rootfd: number) => Effect.Effect<A, VolumeFsFailure>) => Effect.Effect<A, VolumeFsFailure>
  /** Hears how a new link changed the volume's usage (a link counts like a file of its target's length). */
  readonly changed?: UsageSink | undefined
}

/** Sets `mode` on the entry `name` of `dirfd` unless it is a symlink. */
const chmodEntrySync = (dirfd: number, name: string, mode: number, path: string): void => {
  const handle = NodeFs.openSync(at(dirfd, name), HANDLE_FLAGS)
  try {
    if (NodeFs.fstatSync(handle).isSymbolicLink()) throw symlinkRefused(path)
    // The magic link of an O_PATH handle names the inode we checked, not a path.
    NodeFs.chmodSync(self(handle), mode)
  } finally {
    NodeFs.closeSync(handle)
  }
}

/** Sets the times of the entry `name` of `dirfd` itself (a symlink's own, never its target's). */
const setTimesSync = (dirfd: number, name: string, mtime: Date): void => {
  const handle = NodeFs.openSync(at(dirfd, name), HANDLE_FLAGS)
  try {
    if (NodeFs.fstatSync(handle).isSymbolicLink()) NodeFs.lutimesSync(at(dirfd, name), mtime, mtime)
    // Through the handle's magic link: the inode checked above, never opened for I/O (a FIFO
    // would block an open).
    else NodeFs.utimesSync(self(handle), mtime, mtime)
  } finally {
    NodeFs.closeSync(handle)
  }
}

/** The operations of this module, which every directory driver has. */
export type LinkOps = Pick<FsDriver, "symlink" | "readlink" | "chmod"> & Required<Pick<FsDriver, "setModified">>

/** `symlink`, `readlink`, `chmod` and `setModified` of the directory driver. */
export const makeLinkOps = (context: LinkOpsContext): LinkOps => {
  const { changed, withParent, withRoot } = context
  return {
    symlink: (target, segments) =>
      withParent(segments, true, (dirfd, name, path) =>
        hostCall(path, () => {
          NodeFs.symlinkSync(target, at(dirfd, name))
          changed?.(Usage.ofStat(NodeFs.lstatSync(at(dirfd, name))))
        })),
    readlink: (segments) =>
      withParent(segments, false, (dirfd, name, path) =>
        hostCall(path, () => {
          try {
            return linkTargetSync(dirfd, name)
          } catch (error) {
            throw errnoCode(error) === "EINVAL" ? fsError(path, "InvalidData", "not a symlink") : fromErrno(error, path)
          }
        })),
    chmod: (segments, mode) =>
      Paths.isNonRoot(segments)
        ? withParent(segments, false, (dirfd, name, path) => hostCall(path, () => chmodEntrySync(dirfd, name, mode, path)))
        : withRoot((rootfd) => hostCall("/", () => NodeFs.fchmodSync(rootfd, mode))),
    setModified: (segments, mtime) =>
      Paths.isNonRoot(segments)
        ? withParent(segments, false, (dirfd, name, path) => hostCall(path, () => setTimesSync(dirfd, name, mtime)))
        : withRoot((rootfd) => hostCall("/", () => NodeFs.futimesSync(rootfd, mtime, mtime)))
  }
}
