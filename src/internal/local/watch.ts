/**
 * `watch` on the local backend through the kernel's inotify, by way of `inotifywait`
 * (inotify-tools). Node's own `fs.watch({ recursive: true })` misses events on Linux with
 * Node 20, and inotify itself needs a watch per directory that is added as directories
 * appear, which `inotifywait -r` already does.
 *
 * Containment: the watched directory is opened by the directory driver's walk (no symlink
 * followed) and handed to `inotifywait` as `/proc/<our pid>/fd/<fd>`, the directory itself
 * rather than a path a sandbox could swap; while recursing, `inotifywait` does not follow
 * symlinked directories. Events only name paths, so nothing outside the volume is read.
 *
 * Lifetime: `inotifywait` runs under a small `sh` that holds our pipe on stdin; when the
 * stream's scope closes we end stdin (and when this process dies, even by SIGKILL, the
 * kernel closes it), `read` returns and the shell kills `inotifywait`. Removal of the volume
 * is noticed by a liveness check every {@link LIVENESS_INTERVAL}, which ends the stream with
 * `VolumeNotFound`.
 */
import { Chunk, Duration, Effect, Option, Queue, Schedule, Stream } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcessByStdio } from "node:child_process"
import * as NodeFs from "node:fs"
import type { Readable, Writable } from "node:stream"
import { VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsFailure } from "../../VolumeError.js"
import type { FsMetadata, WatchEvent } from "../../VolumeFs.js"
import * as Paths from "../paths.js"
import { closeQuietlySync, DIR_FLAGS, hostCall, openDirChainSync, self } from "./fd.js"
import { fsError } from "./errno.js"

/** How often a running watch checks that its volume still exists. */
export const LIVENESS_INTERVAL = Duration.seconds(1)
/** How long a `MOVED_FROM` waits for its `MOVED_TO` before it counts as a removal. */
const PAIR_WAIT = Duration.millis(50)

/** The events asked for: entries appearing, changing, going, moving; the watched directory going. */
const EVENTS = ["create", "modify", "attrib", "delete", "moved_from", "moved_to", "delete_self", "move_self"]

/** Runs `inotifywait "$@"` until stdin ends; `exec` is avoided so the shell can kill it. */
const HOLDER_SCRIPT = "inotifywait \"$@\" & w=$!; read _; kill $w 2>/dev/null; wait $w"

type Watcher = ChildProcessByStdio<Writable, Readable, Readable>

/** One line of `inotifywait` output: its flags, the full path, the rename cookie. */
interface Record {
  readonly flags: ReadonlySet<string>
  readonly path: string
  readonly cookie: string
}

type Item = Record | { readonly end: string }

/** Splits NUL-separated `flags\0path\0cookie\0` triples out of the byte stream. */
const makeParser = (onRecord: (record: Record) => void) => {
  let pending = Buffer.alloc(0)
  let fields: Array<string> = []
  return (chunk: Buffer): void => {
    pending = Buffer.concat([pending, chunk])
    let start = 0
    for (let nul = pending.indexOf(0, start); nul !== -1; nul = pending.indexOf(0, start)) {
      fields.push(pending.subarray(start, nul).toString("utf8"))
      start = nul + 1
      if (fields.length === 3) {
        onRecord({ flags: new Set(fields[0]!.split(",")), path: fields[1]!, cookie: fields[2]! })
        fields = []
      }
    }
    pending = pending.subarray(start)
  }
}

/** Options of {@link watchDirectory}. */
export interface WatchDirectoryOptions {
  /** Trusted host path of the volume's files. */
  readonly root: string
  readonly volume: string
  readonly segments: Paths.Segments
  readonly recursive: boolean
  /** The driver's `stat`, to check the watched path and the volume's liveness. */
  readonly stat: (segments: Paths.Segments) => Effect.Effect<FsMetadata, VolumeFsFailure>
}

/** Opens the watched directory through the contained walk; the descriptor lives as long as the scope. */
const openWatched = (root: string, volume: string, segments: Paths.Segments, path: string) =>
  Effect.acquireRelease(
    Effect.flatMap(
      Effect.try({
        try: () => NodeFs.openSync(root, DIR_FLAGS),
        catch: () => new VolumeNotFound({ volume })
      }),
      (rootfd) =>
        segments.length === 0 ? Effect.succeed(rootfd) : hostCall(path, () => {
          try {
            return openDirChainSync(rootfd, segments, false, path)
          } finally {
            closeQuietlySync(rootfd)
          }
        })
    ),
    (fd) => Effect.sync(() => closeQuietlySync(fd))
  )

/** Starts `inotifywait` on `/proc/<pid>/fd/<fd>` and feeds its records (then one end marker) into `queue`. */
const startWatcher = (watched: string, recursive: boolean, queue: Queue.Queue<Item>, path: string) =>
  Effect.acquireRelease(
    Effect.async<Watcher, VolumeFsFailure>((resume) => {
      const args = ["-m", ...(recursive ? ["-r"] : []), "--no-newline", "--format", "%e%0%w%f%0%c%0"]
      for (const event of EVENTS) args.push("-e", event)
      const watcher: Watcher = spawn("sh", ["-c", HOLDER_SCRIPT, "sh", ...args, watched], {
        stdio: ["pipe", "pipe", "pipe"],
        detached: true
      })
      let stderr = ""
      let ready = false
      watcher.stdout.on("data", makeParser((record) => Queue.unsafeOffer(queue, record)))
      watcher.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString("utf8")
        if (!ready && stderr.includes("Watches established.")) {
          ready = true
          resume(Effect.succeed(watcher))
        }
      })
      watcher.once("error", (error) => {
        if (!ready) resume(Effect.fail(fsError(path, "Io", `cannot start inotifywait: ${error.message}`)))
      })
      watcher.once("close", (code, signal) => {
        const why = stderr.replace("Watches established.", "").trim() || `inotifywait exited with ${signal ?? code}`
        if (ready) Queue.unsafeOffer(queue, { end: why })
        else resume(Effect.fail(fsError(path, "Io", `cannot watch: ${why}`)))
      })
    }),
    (watcher) =>
      Effect.async<void>((resume) => {
        if (watcher.exitCode !== null || watcher.signalCode !== null) return resume(Effect.void)
        const timer = setTimeout(() => watcher.pid !== undefined && process.kill(-watcher.pid, "SIGKILL"), 5_000)
        watcher.once("close", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        watcher.stdin.end()
      })
  )

/**
 * Changes below the directory `options.segments`, as {@link WatchEvent}s. Atomic
 * replacements (a temporary file renamed over the target) are reported as `Modified`.
 */
export const watchDirectory = (options: WatchDirectoryOptions): Stream.Stream<WatchEvent, VolumeFsFailure> => {
  const { recursive, root, segments, stat, volume } = options
  const path = Paths.format(segments)

  const events = Stream.unwrapScoped(Effect.gen(function*() {
    const meta = yield* stat(segments)
    if (meta.kind !== "directory") return yield* Effect.fail(fsError(path, "NotADirectory", "only directories can be watched"))
    const fd = yield* openWatched(root, volume, segments, path)
    const base = `/proc/${process.pid}/fd/${fd}/`
    const queue = yield* Effect.acquireRelease(Queue.unbounded<Item>(), Queue.shutdown)
    yield* startWatcher(base, recursive, queue, path)

    /** The volume path of a reported host path; `undefined` for the watched directory's own events or temporary names. */
    const volumePath = (reported: string): string | undefined => {
      if (!reported.startsWith(base)) return undefined
      const relative = reported.slice(base.length)
      if (relative === "" || relative.endsWith("/")) return undefined
      const names = relative.split("/")
      if (names.some(Paths.isTempName)) return undefined
      return Paths.format([...segments, ...names])
    }
    const isTemp = (reported: string) => Paths.isTempName(reported.slice(reported.lastIndexOf("/") + 1))

    /**
     * What a new directory already holds when its watch is added: inotify cannot report
     * entries made between the directory's creation and the watch on it (`mkdir -p d && echo
     * > d/f`), so they are read here and reported as `Created`. The walk goes component by
     * component without following links (a sandbox may swap one in meanwhile); what cannot be
     * read any more was removed again and is not reported.
     */
    const alreadyInside = (created: string, names: ReadonlyArray<string>, depth = 0): Array<WatchEvent> => {
      if (depth > 32) return []
      let dirfd: number | undefined
      try {
        dirfd = openDirChainSync(fd, names, false, created)
        const out: Array<WatchEvent> = []
        for (const entry of NodeFs.readdirSync(self(dirfd), { withFileTypes: true })) {
          if (Paths.isTempName(entry.name)) continue
          const child = [...names, entry.name]
          out.push({ _tag: "Created", path: Paths.format([...segments, ...child]) })
          if (entry.isDirectory()) out.push(...alreadyInside(created, child, depth + 1))
        }
        return out
      } catch {
        return []
      } finally {
        if (dirfd !== undefined && dirfd !== fd) closeQuietlySync(dirfd)
      }
    }

    const state: { moved: Record | undefined; ended: Option.Option<string> } = { moved: undefined, ended: Option.none() }

    /** A `MOVED_FROM` whose partner never came: the entry left the watched tree. */
    const flushMove = (): Array<WatchEvent> => {
      const moved = state.moved
      state.moved = undefined
      const from = moved === undefined ? undefined : volumePath(moved.path)
      return from === undefined ? [] : [{ _tag: "Removed", path: from }]
    }

    const toEvents = (record: Record): Array<WatchEvent> => {
      const { flags } = record
      const out: Array<WatchEvent> = []
      if (state.moved !== undefined && !(flags.has("MOVED_TO") && record.cookie === state.moved.cookie)) {
        out.push(...flushMove())
      }
      if (flags.has("DELETE_SELF") || flags.has("MOVE_SELF")) {
        if (record.path === base) state.ended = Option.some("the watched directory went away")
        return out
      }
      if (flags.has("MOVED_FROM")) {
        state.moved = record
        return out
      }
      const target = volumePath(record.path)
      if (target === undefined) return out
      if (flags.has("MOVED_TO")) {
        const from = state.moved
        state.moved = undefined
        if (from === undefined) out.push({ _tag: "Created", path: target })
        else if (isTemp(from.path)) out.push({ _tag: "Modified", path: target })
        else {
          const fromPath = volumePath(from.path)
          out.push(fromPath === undefined ? { _tag: "Created", path: target } : { _tag: "Renamed", from: fromPath, path: target })
        }
      } else if (flags.has("CREATE")) {
        out.push({ _tag: "Created", path: target })
        if (recursive && flags.has("ISDIR")) out.push(...alreadyInside(target, record.path.slice(base.length).split("/")))
      }
      else if (flags.has("DELETE")) out.push({ _tag: "Removed", path: target })
      else out.push({ _tag: "Modified", path: target })
      return out
    }

    /** Why the stream ends: the volume or the directory is gone, or the watcher failed. */
    const endWith = (why: string) =>
      stat(segments).pipe(
        Effect.zipRight(Effect.fail(fsError(path, "Io", why))),
        Effect.mapError(Option.some)
      )

    const pull: Effect.Effect<Chunk.Chunk<WatchEvent>, Option.Option<VolumeFsFailure>> = Effect.gen(function*() {
      if (Option.isSome(state.ended)) return yield* endWith(state.ended.value)
      const next = state.moved === undefined
        ? Option.some(yield* Queue.take(queue))
        : yield* Effect.timeoutOption(Queue.take(queue), PAIR_WAIT)
      if (Option.isNone(next)) return Chunk.unsafeFromArray(flushMove())
      const item = next.value
      if ("end" in item) {
        state.ended = Option.some(item.end)
        return Chunk.unsafeFromArray(flushMove())
      }
      return Chunk.unsafeFromArray(toEvents(item))
    })
    return Stream.repeatEffectChunkOption(pull)
  }))

  /** Fails once the volume is gone (its directory was moved to the trash); emits nothing. */
  const liveness: Stream.Stream<never, VolumeFsFailure> = Stream.execute(
    stat([]).pipe(Effect.repeat(Schedule.spaced(LIVENESS_INTERVAL)))
  )

  return Stream.merge(events, liveness, { haltStrategy: "left" }).pipe(
    // One write(2) after another raises a MODIFY each: report a run of them once.
    Stream.changesWith((a, b) => a._tag === b._tag && a.path === b.path && ("from" in a ? a.from : "") === ("from" in b ? b.from : ""))
  )
}
