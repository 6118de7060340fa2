/**
 * `watch` on the memory backend, natively: every mutation of a tree tells the tree's
 * listeners what it changed (after it succeeded), so a watch sees each change exactly once,
 * from whichever `fs()` handle or commit made it.
 */
import { Duration, Effect, Schedule, Stream } from "effect"
import type { VolumeNotFound } from "../../VolumeError.js"
import type { WatchEvent } from "../../VolumeFs.js"
import * as Paths from "../paths.js"
import type { MemoryTree } from "./memoryDriver.js"

type Listener = (event: WatchEvent) => void

/** Listeners per tree; a removed volume's tree (and its listeners) is collected with it. */
const listeners = new WeakMap<MemoryTree, Set<Listener>>()

/** How often a watch checks that its volume still exists (a removal does not touch the tree). */
const LIVENESS_INTERVAL = Duration.millis(100)

/** Tells the watchers of `tree` about one change. */
export const notify = (tree: MemoryTree, event: WatchEvent): void => {
  const set = listeners.get(tree)
  if (set !== undefined) for (const listener of set) listener(event)
}

/** Whether the event's path (or, for a rename, either path) is one the watch reports. */
const inScope = (path: Paths.Segments, recursive: boolean) => (volumePath: string): boolean => {
  const segments = volumePath.split("/").filter((s) => s !== "")
  if (segments.length <= path.length || !Paths.isWithin(segments, path)) return false
  return recursive || segments.length === path.length + 1
}

/** Options of {@link watchTree}. */
export interface WatchTreeOptions {
  readonly tree: MemoryTree
  /** The watched directory. */
  readonly path: Paths.Segments
  readonly recursive: boolean
  /** Whether the volume still has this tree. */
  readonly alive: () => boolean
  /** The failure that ends the stream once the volume is gone. */
  readonly gone: VolumeNotFound
}

/** The changes below `options.path`, until interrupted or the volume is removed. */
export const watchTree = (options: WatchTreeOptions): Stream.Stream<WatchEvent, VolumeNotFound> => {
  const { alive, gone, path, recursive, tree } = options
  const wanted = inScope(path, recursive)
  const events = Stream.asyncScoped<WatchEvent>((emit) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const listener: Listener = (event) => {
          if (wanted(event.path) || (event._tag === "Renamed" && wanted(event.from))) void emit.single(event)
        }
        let set = listeners.get(tree)
        if (set === undefined) {
          set = new Set()
          listeners.set(tree, set)
        }
        set.add(listener)
        return { set, listener }
      }),
      ({ listener, set }) => Effect.sync(() => void set.delete(listener))
    ), "unbounded")
  const liveness = Stream.execute(
    Effect.suspend(() => (alive() ? Effect.void : Effect.fail(gone))).pipe(Effect.repeat(Schedule.spaced(LIVENESS_INTERVAL)))
  )
  return Stream.merge(events, liveness, { haltStrategy: "left" })
}
