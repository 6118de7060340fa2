/**
 * `lastUsedAt` on host-side writes (SPEC §10), cheaply: a backend stamps a volume used at
 * most once per {@link USE_STAMP_INTERVAL_MILLIS} (by the Effect `Clock`, so `TestClock`
 * drives it) from each backend instance. Every other write in the interval costs one clock
 * read and one map lookup; the stamp itself is the backend's `touch` (one statement on the
 * local backend). So `lastUsedAt` is exact to the interval, which is what `prune
 * --unused-for` (days, weeks) needs.
 */
import { Clock, Effect } from "effect"
import type { StorageError } from "../VolumeError.js"
import { nameKey } from "../VolumeSpec.js"

/** How often, at most, host-side writes move one volume's `lastUsedAt` (per backend instance). */
export const USE_STAMP_INTERVAL_MILLIS = 60_000

/**
 * The stamper of one backend instance: `stampOf(name)` is the effect a volume's `fs()` runs
 * after each change. It never fails: a stamp that could not be recorded is logged, and the
 * next change after the interval tries again.
 */
export const make = (
  touch: (name: string) => Effect.Effect<void, StorageError>,
  intervalMillis: number = USE_STAMP_INTERVAL_MILLIS
): (name: string) => Effect.Effect<void> => {
  /** When each volume (by key) was last stamped. */
  const stamped = new Map<string, number>()
  return (name) => {
    const key = nameKey(name)
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const last = stamped.get(key)
      // A clock that went back (TestClock, a host clock step) stamps again rather than never.
      if (last !== undefined && now >= last && now - last < intervalMillis) return Effect.void
      stamped.set(key, now)
      return touch(name).pipe(
        Effect.catchAll((error) =>
          Effect.sync(() => stamped.delete(key)).pipe(
            Effect.zipRight(Effect.logWarning(`could not record the use of volume "${name}"`, error))
          )
        )
      )
    })
  }
}
