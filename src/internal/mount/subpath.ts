/**
 * `m.named(name).subpath("a/b")`: only that directory of the volume is mounted. Checked here
 * at start, so a missing directory or a symlink on the way fails with `InvalidConfig` before
 * anything is mounted: the subpath is walked component by component with `O_NOFOLLOW` (a
 * symlink is refused, never followed). A sandbox sharing the volume may swap a component for
 * a symlink after this check, so the runtime opens the subpath again the same way when it
 * mounts it (the namespace runtime: evfs `--subpath`, with openat2 `RESOLVE_NO_SYMLINKS`) and
 * mounts the directory it opened, never a path string.
 */
import { closeSync, constants, lstatSync, openSync } from "node:fs"
import { Effect } from "effect"
import { InvalidConfig } from "../../VolumeError.js"

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW

/** The components of a subpath that passed `Mount` validation (relative, no `..`). */
export const segments = (subpath: string): ReadonlyArray<string> =>
  subpath.split("/").filter((s) => s !== "" && s !== ".")

const closeQuietly = (fd: number): void => {
  try {
    closeSync(fd)
  } catch {
    // close(2) releases the descriptor even when it reports an error.
  }
}

const codeOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error ? String(error.code) : "EIO"

const problem = (dirfd: number, name: string, code: string): string => {
  const link = code === "ELOOP" ||
    (code === "ENOTDIR" && lstatSync(`/proc/self/fd/${dirfd}/${name}`, { throwIfNoEntry: false })?.isSymbolicLink())
  if (link) return "is a symlink, which a subpath never follows"
  if (code === "ENOENT") return "does not exist in the volume"
  if (code === "ENOTDIR") return "is not a directory"
  return `cannot be opened (${code})`
}

/** Checks that `subpath` is a directory beneath the trusted directory `root`, reached without symlinks. */
export const check = (root: string, subpath: string, guestPath: string): Effect.Effect<void, InvalidConfig> =>
  Effect.suspend(() => {
    const fail = (message: string) =>
      Effect.fail(
        new InvalidConfig({ message: `mount at ${JSON.stringify(guestPath)}: subpath(${JSON.stringify(subpath)}): ${message}` })
      )
    let fd: number
    try {
      fd = openSync(root, DIR_FLAGS)
    } catch (error) {
      return fail(`the volume directory cannot be opened (${codeOf(error)})`)
    }
    const walked: Array<string> = []
    for (const name of segments(subpath)) {
      walked.push(name)
      try {
        const next = openSync(`/proc/self/fd/${fd}/${name}`, DIR_FLAGS)
        closeQuietly(fd)
        fd = next
      } catch (error) {
        const message = `${JSON.stringify(walked.join("/"))} ${problem(fd, name, codeOf(error))}`
        closeQuietly(fd)
        return fail(message)
      }
    }
    closeQuietly(fd)
    return Effect.void
  })
