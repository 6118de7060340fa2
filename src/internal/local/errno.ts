/**
 * Maps the errno codes of host file-system calls to the typed failures of `VolumeFs`,
 * always naming the volume path the user asked for (never a host path).
 */
import { Effect } from "effect"
import { InvalidPath, PathNotFound, StorageError, VolumeFsError } from "../../VolumeError.js"
import type { VolumeFsErrorReason, VolumeFsFailure } from "../../VolumeError.js"

/** The `code` of a Node.js system error (`"ENOENT"`, ...), if it is one. */
export const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

const reasonByCode: Readonly<Record<string, VolumeFsErrorReason>> = {
  ENOTDIR: "NotADirectory",
  EISDIR: "IsADirectory",
  EEXIST: "AlreadyExists",
  ENOTEMPTY: "DirectoryNotEmpty",
  ENOSPC: "NoSpace",
  EDQUOT: "NoSpace",
  EFBIG: "NoSpace",
  EROFS: "ReadOnly",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied"
}

/** The failure a symlink in the way of an operation gives. */
export const symlinkRefused = (path: string, link: string = path): InvalidPath =>
  new InvalidPath({
    path,
    reason: link === path
      ? "is a symlink; host-side access never follows symlinks inside a volume"
      : `goes through the symlink ${link}; host-side access never follows symlinks inside a volume`
  })

/** A `VolumeFsError` for `path`. */
export const fsError = (path: string, reason: VolumeFsErrorReason, detail?: string): VolumeFsError =>
  new VolumeFsError(detail === undefined ? { path, reason } : { path, reason, detail })

/**
 * The typed failure for an error thrown by a host file-system call on the volume path
 * `path`. Failures that are already typed (raised by our own checks) pass through.
 */
export const fromErrno = (error: unknown, path: string): VolumeFsFailure => {
  if (isVolumeFsFailure(error)) return error
  const code = errnoCode(error)
  if (code === "ENOENT") return new PathNotFound({ path })
  if (code === "ELOOP") return symlinkRefused(path)
  const reason = code === undefined ? undefined : reasonByCode[code]
  if (reason !== undefined) return fsError(path, reason)
  const message = error instanceof Error ? error.message : String(error)
  return fsError(path, "Io", code === undefined ? message : `${code}: ${message}`)
}

const failureTags: ReadonlySet<string> = new Set([
  "VolumeNotFound",
  "VolumeInUse",
  "Unsupported",
  "InvalidPath",
  "PathNotFound",
  "QuotaExceeded",
  "VolumeFsError",
  "StorageError"
])

const isVolumeFsFailure = (error: unknown): error is VolumeFsFailure =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" &&
  failureTags.has(error._tag)

/**
 * What kind of `StorageError` a failed host call is, from its errno code or the reason of
 * a platform `SystemError`: `Busy` (retrying later helps), `Conflict`, `Unavailable` (no
 * space, no permission, read-only, gone), `Corrupt`, or `Unknown`.
 */
export const storageReason = (cause: unknown): "Busy" | "Conflict" | "Unavailable" | "Corrupt" | "Unknown" => {
  const code = errnoCode(cause) ??
    (typeof cause === "object" && cause !== null && "reason" in cause && typeof cause.reason === "string"
      ? cause.reason
      : undefined)
  switch (code) {
    case "EBUSY":
    case "EAGAIN":
    case "Busy":
      return "Busy"
    case "EEXIST":
    case "ENOTEMPTY":
    case "AlreadyExists":
      return "Conflict"
    case "ENOSPC":
    case "EDQUOT":
    case "EROFS":
    case "EACCES":
    case "EPERM":
    case "ENOENT":
    case "EIO":
    case "PermissionDenied":
    case "NotFound":
    case "TimedOut":
      return "Unavailable"
    case "EUCLEAN":
    case "EBADMSG":
      return "Corrupt"
    default:
      return "Unknown"
  }
}

/** A failed call on the home's own files (`what` says which) as a `StorageError`. */
export const storageFailure = (what: string) => (cause: unknown): StorageError =>
  new StorageError({
    message: `${what}: ${
      typeof cause === "object" && cause !== null && "message" in cause && typeof cause.message === "string"
        ? cause.message
        : String(cause)
    }`,
    reason: storageReason(cause),
    operation: "filesystem",
    cause
  })

/**
 * One quick metadata call on the home (mkdir, rename, chmod, an existence check), made
 * synchronously: it costs tens of microseconds, less than a round trip through the thread
 * pool. What it throws is a `StorageError` saying `what` failed.
 */
export const hostStep = <A>(what: string, step: () => A): Effect.Effect<A, StorageError> =>
  Effect.try({ try: step, catch: storageFailure(what) })
