/**
 * Copies of whole volumes on the host, made with the cheapest correct primitive the file
 * system offers, and the atomic swap that restore uses.
 *
 * Copies run GNU `cp`, which does per file what this module would do by hand: a `FICLONE`
 * reflink where the file system shares extents (Btrfs, XFS with reflink, bcachefs), else
 * `copy_file_range` (an in-kernel copy; no data passes through user space), else
 * read/write — and it keeps holes, modes, times, extended attributes (the guest-owner
 * overlay of `statVirtualization`), symlinks as symlinks and hard links within the tree.
 * It never links a copy to its source. docs/snapshots.md has the measured cost.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as NodeFs from "node:fs"
import { StorageError } from "../../VolumeError.js"
import * as CopyProgress from "../copyProgress.js"
import { toolEnv } from "./diskImage.js"

const BYTES_PER_MIB = 1024 * 1024

interface ToolResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
  readonly error: Error | null
}

/** Runs a tool to its end; interruption kills it. */
const run = (command: string, args: ReadonlyArray<string>): Effect.Effect<ToolResult> =>
  Effect.async((resume) => {
    const child = execFile(command, args, { env: toolEnv(), maxBuffer: 256 * BYTES_PER_MIB }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resume(Effect.succeed({ code, stdout, stderr, error }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A `cp` complaint about a file that vanished while the tree was copied. */
const VANISHED = /No such file or directory/

const failed = (what: string, result: ToolResult): StorageError =>
  new StorageError({
    message: `${what} failed: ${result.stderr.trim() || result.error?.message || `exit code ${result.code}`}`,
    cause: result.error ?? undefined
  })

/** `cp` processes that copy one directory tree at once (each takes a share of its top-level entries). */
const COPY_PROCESSES = 4

/** Top-level entries per `cp` invocation (keeps command lines far below the kernel's limit). */
const ENTRIES_PER_CALL = 256

/** What one `cp` run means: done, or (with `live`) done except for files that vanished meanwhile. */
const copied = (what: string, live: boolean) => (result: ToolResult): Effect.Effect<void, StorageError> => {
  if (result.code === 0) return Effect.void
  const complaints = result.stderr.split("\n").filter((line) => line.trim() !== "")
  if (live && complaints.length > 0 && complaints.every((line) => VANISHED.test(line))) return Effect.void
  return Effect.fail(failed(what, result))
}

/** Whether some non-directory below `dir` has more than one link (a hard link inside the tree). */
const hasHardLinks = (dir: string): Effect.Effect<boolean, StorageError> =>
  Effect.flatMap(run("find", [dir, "!", "-type", "d", "-links", "+1", "-print", "-quit"]), (result) =>
    result.code === 0 ? Effect.succeed(result.stdout.trim() !== "") : Effect.fail(failed(`looking for hard links in ${dir}`, result)))

/** Mode, times, extended attributes and (where allowed) owner of one directory onto another. */
const COPYSTAT_SCRIPT = [
  "import os, shutil, sys",
  "shutil.copystat(sys.argv[1], sys.argv[2], follow_symlinks=False)",
  "st = os.lstat(sys.argv[1])",
  // As `cp -a`: the owner is kept where this process may set it.
  "try:\n  os.chown(sys.argv[2], st.st_uid, st.st_gid)\nexcept PermissionError:\n  pass"
].join("\n")

/**
 * Copies the directory `from` to `to` (which must not exist) with everything in it. With
 * `live`, files that vanish while the copy runs (a sandbox is writing) are skipped: the copy
 * is crash-consistent, file by file.
 *
 * A tree of many entries is copied by {@link COPY_PROCESSES} `cp` processes at once, each
 * taking a share of the top-level entries, then the root gets the source root's mode, times
 * and extended attributes: on a busy disk, creating files is bound by waiting, not by the
 * CPU, so four copies in flight finish well before one (docs/benchmarks.md). A tree with
 * hard links inside it is copied by one `cp`, the only way they stay links in the copy.
 */
export const copyDirectory = (
  from: string,
  to: string,
  options: { readonly live: boolean; readonly progress: CopyProgress.Reporter }
): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    const { progress } = options
    const usage = progress.active ? yield* usageByEntry(from) : new Map<string, CopyProgress.Figures>()
    const sum = (names: Iterable<string>) => {
      let bytes = 0
      let files = 0
      for (const name of names) {
        const figures = usage.get(name)
        bytes += figures?.bytes ?? 0
        files += figures?.files ?? 0
      }
      return { bytes, files }
    }
    const total = sum(usage.keys())
    yield* progress.report({ bytes: 0, files: 0 }, total)
    const whole = () =>
      Effect.flatMap(run("cp", ["-a", "--reflink=auto", "--no-target-directory", "--", from, to]), copied(`copying ${from} to ${to}`, options.live))
    const entries = yield* Effect.tryPromise({
      try: () => NodeFs.promises.readdir(from),
      catch: (cause) => new StorageError({ message: `cannot read ${from}: ${String(cause)}`, cause })
    })
    if (entries.length < 2 || (yield* hasHardLinks(from))) return yield* Effect.zipRight(whole(), progress.done(total))
    yield* Effect.tryPromise({
      try: () => NodeFs.promises.mkdir(to, { mode: 0o700 }),
      catch: (cause) => new StorageError({ message: `cannot create ${to}: ${String(cause)}`, cause })
    })
    const calls: Array<Array<string>> = []
    entries.forEach((entry, i) => {
      const call = Math.floor(i / COPY_PROCESSES / ENTRIES_PER_CALL) * COPY_PROCESSES + (i % COPY_PROCESSES)
      ;(calls[call] ??= []).push(`${from}/${entry}`)
    })
    const done: Array<string> = []
    yield* Effect.forEach(
      calls.filter((call) => call !== undefined),
      (sources) =>
        Effect.flatMap(run("cp", ["-a", "--reflink=auto", "-t", to, "--", ...sources]), copied(`copying ${from} to ${to}`, options.live)).pipe(
          Effect.zipRight(Effect.suspend(() => {
            // A share is done: its entries' figures from the walk before the copy.
            for (const source of sources) done.push(source.slice(from.length + 1))
            return progress.report(sum(done), total)
          }))
        ),
      { concurrency: COPY_PROCESSES, discard: true }
    )
    // Last, so creating the entries does not move the root's times again.
    yield* Effect.flatMap(run(PYTHON, ["-c", COPYSTAT_SCRIPT, from, to]), (result) =>
      result.code === 0 ? Effect.void : Effect.fail(failed(`copying the attributes of ${from} to ${to}`, result)))
    yield* progress.done(total)
  })

/**
 * Apparent bytes and number of the regular files and symlinks below each top-level entry
 * of `dir` (a top-level file counts for itself), in one `find` walk: the figures of a
 * copy's progress reports.
 */
const usageByEntry = (dir: string): Effect.Effect<Map<string, CopyProgress.Figures>, StorageError> =>
  Effect.flatMap(run("find", [dir, "-mindepth", "1", "(", "-type", "f", "-o", "-type", "l", ")", "-printf", "%s %P\\0"]), (result) => {
    if (result.code !== 0) return Effect.fail(failed(`measuring ${dir}`, result))
    const usage = new Map<string, CopyProgress.Figures>()
    for (const record of result.stdout.split("\0")) {
      const space = record.indexOf(" ")
      if (space < 0) continue
      const path = record.slice(space + 1)
      const slash = path.indexOf("/")
      const entry = slash < 0 ? path : path.slice(0, slash)
      const before = usage.get(entry) ?? { bytes: 0, files: 0 }
      usage.set(entry, { bytes: before.bytes + Number(record.slice(0, space)), files: before.files + 1 })
    }
    return Effect.succeed(usage)
  })

/**
 * Sum of the apparent sizes of the regular files and symlinks below `dir` (the usage rule
 * of directory volumes), measured by `find` in one process: a copy is measured right after
 * it is made, and a walk from Node costs a good part of the copy itself (10,000 files).
 */
export const apparentBytes = (dir: string): Effect.Effect<number, StorageError> =>
  Effect.flatMap(run("find", [dir, "(", "-type", "f", "-o", "-type", "l", ")", "-printf", "%s\n"]), (result) =>
    result.code === 0
      ? Effect.succeed(result.stdout.split("\n").reduce((sum, line) => sum + (line === "" ? 0 : Number(line)), 0))
      : Effect.fail(failed(`measuring ${dir}`, result)))

/**
 * Copies the disk image `from` to `to`: a reflink where possible, else a sparse copy that
 * leaves every all-zero block a hole, so the copy allocates what the source holds.
 */
export const copyImage = (from: string, to: string): Effect.Effect<void, StorageError> =>
  Effect.flatMap(
    run("cp", ["--reflink=auto", "--sparse=always", "--preserve=mode,timestamps", "--no-target-directory", "--", from, to]),
    (result) => (result.code === 0 ? Effect.void : Effect.fail(failed(`copying the disk image ${from} to ${to}`, result)))
  )

/**
 * `renameat2(RENAME_EXCHANGE)`: swaps two paths in one step, so a reader sees one tree or
 * the other and never neither. Node has no binding for it; the system's Python reaches
 * the C library through ctypes (`AT_FDCWD` = -100, `RENAME_EXCHANGE` = 2).
 */
const EXCHANGE_SCRIPT = [
  "import ctypes, os, sys",
  "libc = ctypes.CDLL(None, use_errno=True)",
  "r = libc.renameat2(-100, os.fsencode(sys.argv[1]), -100, os.fsencode(sys.argv[2]), 2)",
  "e = ctypes.get_errno()",
  "sys.stderr.write('' if r == 0 else os.strerror(e))",
  "sys.exit(0 if r == 0 else 1)"
].join("\n")

/** The system's interpreter (a user-level shim, such as pyenv's, can cost a second per start). */
const PYTHON = NodeFs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

/** Swaps the directories `a` and `b` atomically (both must exist on one file system). */
export const exchange = (a: string, b: string): Effect.Effect<void, StorageError> =>
  Effect.flatMap(run(PYTHON, ["-c", EXCHANGE_SCRIPT, a, b]), (result) =>
    result.code === 0 ? Effect.void : Effect.fail(failed(`swapping ${a} and ${b}`, result)))
