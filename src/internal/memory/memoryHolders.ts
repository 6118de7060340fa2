/**
 * Holders of the in-memory backend: a map in the layer instance, changed only inside
 * synchronous effect bodies, so checking the sharing rules and recording a holder is one
 * atomic step (as in the memory backend itself).
 */
import { Effect } from "effect"
import type { HoldMode, VolumeHolders } from "../../VolumeBackend.js"
import { VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeKind } from "../../VolumeSpec.js"
import { nameKey } from "../../VolumeSpec.js"

interface Hold {
  readonly holder: string
  readonly mode: HoldMode
}

export interface MemoryHolders {
  readonly service: VolumeHolders
  /** The holders of `name` right now (synchronous, for the backend's own atomic checks). */
  readonly current: (name: string) => ReadonlyArray<string>
}

/** `kindOf` answers the kind of an existing volume, `undefined` for a missing one. */
export const make = (kindOf: (name: string) => VolumeKind | undefined): MemoryHolders => {
  const holds = new Map<string, Set<Hold>>()
  const current = (name: string) => Array.from(holds.get(nameKey(name)) ?? [], (hold) => hold.holder)

  const take = (name: string, hold: Hold) =>
    Effect.suspend((): Effect.Effect<void, VolumeNotFound | VolumeInUse> => {
      const kind = kindOf(name)
      if (kind === undefined) return Effect.fail(new VolumeNotFound({ volume: name }))
      const key = nameKey(name)
      const set = holds.get(key) ?? new Set<Hold>()
      const conflict = Array.from(set).some((other) =>
        other.mode === "exclusive" || hold.mode === "exclusive" ||
        (kind === "disk" && (other.mode === "rw" || hold.mode === "rw"))
      )
      if (conflict) return Effect.fail(new VolumeInUse({ volume: name, holders: current(name) }))
      set.add(hold)
      holds.set(key, set)
      return Effect.void
    })

  const give = (name: string, hold: Hold) =>
    Effect.sync(() => {
      const key = nameKey(name)
      const set = holds.get(key)
      set?.delete(hold)
      if (set?.size === 0) holds.delete(key)
    })

  return {
    current,
    service: {
      acquire: (name, holder, mode) => {
        const hold: Hold = { holder, mode }
        return Effect.acquireRelease(take(name, hold), () => give(name, hold))
      },
      list: (name) => Effect.sync(() => current(name))
    }
  }
}
