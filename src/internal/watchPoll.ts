/**
 * `watch` by polling, for stores without change notifications (S3): the watched tree is
 * listed every `interval` and compared with the previous listing. A new path is `Created`,
 * a path that went away `Removed`, a changed size, mode, target or modification time
 * `Modified`; a rename shows as `Removed` + `Created`. Changes that come and go between two
 * polls are not seen. The first listing is the baseline (no events).
 */
import { Chunk, Duration, Effect, Option, Stream } from "effect"
import { VolumeFsError } from "../VolumeError.js"
import type { VolumeFsFailure } from "../VolumeError.js"
import type { FsEntry, FsMetadata, WatchEvent } from "../VolumeFs.js"
import * as Paths from "./paths.js"

/** Options of {@link pollWatch}. */
export interface PollWatchOptions {
  readonly list: (path: Paths.Segments) => Effect.Effect<ReadonlyArray<FsEntry>, VolumeFsFailure>
  readonly stat: (path: Paths.Segments) => Effect.Effect<FsMetadata, VolumeFsFailure>
  readonly path: Paths.Segments
  readonly recursive: boolean
  readonly interval: Duration.DurationInput
}

/** What must stay equal for an entry to count as unchanged. */
const signature = (entry: FsEntry): string =>
  JSON.stringify([
    entry.kind,
    entry.kind === "directory" ? 0 : entry.size,
    entry.mode,
    Option.getOrNull(entry.target),
    entry.kind === "directory" ? null : Option.map(entry.modified, (m) => m.epochMillis).pipe(Option.getOrNull)
  ])

/** Every entry below `path` (one level without `recursive`), by volume path. */
const snapshot = (options: PollWatchOptions): Effect.Effect<Map<string, string>, VolumeFsFailure> =>
  Effect.gen(function*() {
    const found = new Map<string, string>()
    const pending: Array<Paths.Segments> = [options.path]
    while (pending.length > 0) {
      const dir = pending.pop()!
      const entries = yield* options.list(dir).pipe(
        // A subdirectory removed while we walk is simply not part of this listing.
        Effect.catchTag("PathNotFound", (error) => dir === options.path ? Effect.fail(error) : Effect.succeed([]))
      )
      for (const entry of entries) {
        found.set(entry.path, signature(entry))
        if (options.recursive && entry.kind === "directory") pending.push(Paths.child(dir, entry.path.slice(entry.path.lastIndexOf("/") + 1)))
      }
    }
    return found
  })

const diff = (before: Map<string, string>, after: Map<string, string>): Array<WatchEvent> => {
  const events: Array<WatchEvent> = []
  for (const [path, sig] of after) {
    const old = before.get(path)
    if (old === undefined) events.push({ _tag: "Created", path })
    else if (old !== sig) events.push({ _tag: "Modified", path })
  }
  for (const path of before.keys()) if (!after.has(path)) events.push({ _tag: "Removed", path })
  return events.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/** Changes below `options.path`, found by listing it every `options.interval`. */
export const pollWatch = (options: PollWatchOptions): Stream.Stream<WatchEvent, VolumeFsFailure> =>
  Stream.unwrap(Effect.gen(function*() {
    const meta = yield* options.stat(options.path)
    if (meta.kind !== "directory") {
      return yield* new VolumeFsError({
        path: Paths.format(options.path),
        reason: "NotADirectory",
        detail: "only directories can be watched"
      })
    }
    let previous = yield* snapshot(options)
    const poll = Effect.gen(function*() {
      yield* Effect.sleep(options.interval)
      const next = yield* snapshot(options)
      const events = diff(previous, next)
      previous = next
      return Chunk.unsafeFromArray(events)
    })
    return Stream.repeatEffectChunk(poll)
  }))
