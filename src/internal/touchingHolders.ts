/**
 * `lastUsedAt` moves when a holder acquires or lets go of a volume (SPEC §10): every
 * backend wraps its holder records with this, so the rule lives in one place.
 */
import { Effect } from "effect"
import type { VolumeHolders } from "../VolumeBackend.js"
import type { StorageError } from "../VolumeError.js"

export const touching = (
  holders: VolumeHolders,
  touch: (name: string) => Effect.Effect<void, StorageError>
): VolumeHolders => {
  // A failed stamp never fails or blocks a sandbox: it is bookkeeping only.
  const stamp = (name: string) =>
    touch(name).pipe(Effect.catchAll((error) => Effect.logWarning(`could not record the use of volume "${name}"`, error)))
  return {
    acquire: (name, holder, mode) =>
      holders.acquire(name, holder, mode).pipe(
        Effect.zipRight(stamp(name)),
        // Runs just before the hold is released (finalizers run in reverse).
        Effect.zipRight(Effect.addFinalizer(() => stamp(name)))
      ),
    list: holders.list
  }
}
