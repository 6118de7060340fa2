/**
 * Exit codes and the one-line error report of the `volumes` command.
 */
import { Schema } from "effect"
import { formatBytes } from "../Size.js"

/**
 * A file or directory on the host (not in a volume) could not be read or written.
 */
export class HostFileError extends Schema.TaggedError<HostFileError>()("HostFileError", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * The command line asked for something this program cannot do as written (a missing
 * subcommand, a prune without confirmation, ...). Exits with {@link EXIT_USAGE}.
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String,
  /** The command whose `--help` explains the fix, e.g. `volumes prune`. */
  command: Schema.String
}) {}

/**
 * The reader of stdout went away (`volumes fs v cat f | head -c 10`). Raised as a failure
 * so that scopes close (sandboxes stop, records are released) before the process exits.
 */
export class OutputClosed extends Schema.TaggedError<OutputClosed>()("OutputClosed", {}) {}

/**
 * `volumes run`'s command finished with a non-zero status: the status becomes this
 * program's exit code, after every finalizer ran.
 */
export class CommandExited extends Schema.TaggedError<CommandExited>()("CommandExited", {
  exitCode: Schema.Number
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
  UsageError: 2,
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
/** stdout was closed by its reader: 128 + SIGPIPE, what a shell reports for `cat` in `cat f | head`. */
export const EXIT_OUTPUT_CLOSED = 141

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

/** Messages in the words of this command line rather than the library's. */
const reworded = (error: { readonly _tag: unknown }): string | undefined => {
  const fields = error as Record<string, unknown>
  if (error._tag === "QuotaExceeded" && typeof fields.quotaBytes === "number") {
    const [quota, used, requested] = [fields.quotaBytes, Number(fields.usedBytes), Number(fields.requestedBytes)]
    return `volume "${String(fields.volume)}" has ${formatBytes(Math.max(0, quota - used))} free of its ${formatBytes(quota)} quota ` +
      `(${formatBytes(used)} used) and ${formatBytes(requested)} more were to be written; nothing was written; free space or raise the quota`
  }
  if (error._tag === "InvalidPath" && typeof fields.reason === "string" && /needs a path below the volume root/.test(fields.reason)) {
    return `${String(fields.path)}: that is the volume's root directory; give a path inside the volume`
  }
  return undefined
}

/** Exit code and message of a typed error raised by a command. */
export const describe = (error: unknown): { readonly code: number; readonly line: string } => {
  if (error instanceof CommandExited) return { code: error.exitCode, line: "" }
  if (error instanceof OutputClosed) return { code: EXIT_OUTPUT_CLOSED, line: "" }
  if (error instanceof UsageError) {
    return { code: EXIT_USAGE, line: `error: ${oneLine(error.message)}\nSee '${error.command} --help'.` }
  }
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const code = EXIT_CODES[error._tag]
    const message = reworded(error) ?? ("message" in error && typeof error.message === "string" && error.message !== ""
      ? error.message
      : error._tag)
    if (code !== undefined) return { code, line: `error: ${oneLine(message)}` }
    return { code: EXIT_UNEXPECTED, line: `error: ${oneLine(message)} (${error._tag})` }
  }
  return { code: EXIT_UNEXPECTED, line: `error: ${oneLine(error instanceof Error ? error.message : String(error))}` }
}
