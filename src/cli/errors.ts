/**
 * Exit codes and the one-line error report of the `volumes` command.
 */
import { Schema } from "effect"

/**
 * A file or directory on the host (not in a volume) could not be read or written.
 */
export class HostFileError extends Schema.TaggedError<HostFileError>()("HostFileError", {
  path: Schema.String,
  message: Schema.String
}) {}

/** Exit code per error class; documented in docs/cli.md (keep the two in step). */
export const EXIT_CODES: Readonly<Record<string, number>> = {
  InvalidConfig: 3,
  VolumeNotFound: 4,
  VolumeAlreadyExists: 5,
  VolumeInUse: 6,
  InvalidPath: 7,
  PathNotFound: 8,
  QuotaExceeded: 9,
  VolumeFsError: 10,
  Unsupported: 11,
  StorageError: 12,
  SandboxError: 13,
  ArchiveError: 14,
  HostFileError: 15,
  // Snapshots share the codes of the volume errors they mirror.
  SnapshotNotFound: 4,
  SnapshotAlreadyExists: 5
}

/** Something this program did not expect (a bug, or a failure without a typed error). */
export const EXIT_UNEXPECTED = 1
/** Interrupted (Ctrl-C): 128 + SIGINT, as shells report it. */
export const EXIT_INTERRUPTED = 130
/** The command line itself was wrong (unknown command, missing argument, bad option value). */
export const EXIT_USAGE = 2

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

/** Exit code and message of a typed error raised by a command. */
export const describe = (error: unknown): { readonly code: number; readonly line: string } => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const code = EXIT_CODES[error._tag]
    const message = "message" in error && typeof error.message === "string" && error.message !== ""
      ? error.message
      : error._tag
    if (code !== undefined) return { code, line: `error: ${oneLine(message)}` }
    return { code: EXIT_UNEXPECTED, line: `error: ${oneLine(message)} (${error._tag})` }
  }
  return { code: EXIT_UNEXPECTED, line: `error: ${oneLine(error instanceof Error ? error.message : String(error))}` }
}
