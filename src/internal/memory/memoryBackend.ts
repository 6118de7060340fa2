/**
 * The in-memory `VolumeBackend`: volumes live in a map owned by one layer instance.
 *
 * The map is read and changed only inside synchronous effect bodies, so each lifecycle
 * operation is atomic (JavaScript runs one of them at a time) without a `Ref`; a plain map
 * also lets the synchronous `fs(info)` find the volume's write lock.
 */
import { Clock, DateTime, Effect, Either, Option } from "effect"
import { BYTES_PER_MIB } from "../../Size.js"
import type { VolumeBackendService } from "../../VolumeBackend.js"
import { VolumeInfo } from "../../VolumeBackend.js"
import { Unsupported, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import { nameKey } from "../../VolumeSpec.js"
import * as UseStamps from "../useStamps.js"
import * as VolumeFsImpl from "../volumeFs.js"
import * as MemoryDriver from "./memoryDriver.js"
import * as MemoryHolders from "./memoryHolders.js"
import { planGrow } from "../diskGrow.js"
import { touching } from "../touchingHolders.js"
import type { MemoryTree } from "./memoryDriver.js"
import * as MemorySnapshots from "./snapshots.js"

interface MemoryVolume {
  /** What `create` reported (usage 0); `createdAt` doubles as the identity of this incarnation. */
  readonly info: VolumeInfo
  readonly tree: MemoryTree
  /** Serialises quota-checked writes, shared by every `fs()` of this volume. */
  readonly writeLock: Effect.Semaphore
}

const unsupported = (operation: string) => new Unsupported({ operation, backend: "memory" })

/** `createdAt` in epoch milliseconds: unique per backend, so it identifies one incarnation of a name. */
const identityOf = (info: VolumeInfo): number => DateTime.toEpochMillis(info.createdAt)

const mibToBytes = (mib: number): number => mib * BYTES_PER_MIB

/**
 * A fresh, empty in-memory backend.
 */
export const make: Effect.Effect<VolumeBackendService> = Effect.sync(() => {
  const volumes = new Map<string, MemoryVolume>()
  let lastCreatedMillis = 0
  const holders = MemoryHolders.make((name) => {
    const volume = volumes.get(nameKey(name))
    return volume === undefined ? undefined : volume.info.kind
  })

  const snapshots = MemorySnapshots.make({
    find: (name) => volumes.get(nameKey(name)),
    insert: (spec, tree, now) => Either.map(insert(spec, tree, now), (info) => new VolumeInfo({ ...info, usedBytes: tree.usedBytes }))
  })

  /** `now` (by the Effect clock), but strictly after every earlier creation, so newest-first order is total. */
  const nextCreatedAt = (now: number): DateTime.Utc => {
    lastCreatedMillis = Math.max(now, lastCreatedMillis + 1)
    return DateTime.unsafeMake(lastCreatedMillis)
  }

  /** The volume's report with its usage as of now. */
  const report = (volume: MemoryVolume): VolumeInfo => new VolumeInfo({ ...volume.info, usedBytes: volume.tree.usedBytes })

  /** The incarnation `info` describes, if it still exists (a re-created name is another one). */
  const incarnation = (info: VolumeInfo): MemoryVolume | undefined => {
    const volume = volumes.get(nameKey(info.name))
    return volume !== undefined && identityOf(volume.info) === identityOf(info) ? volume : undefined
  }

  /** Adds a volume holding `tree`, unless the name is taken (one synchronous step). */
  const insert = (spec: ValidSpec, tree: MemoryTree, now: number): Either.Either<VolumeInfo, VolumeAlreadyExists> => {
    const key = nameKey(spec.name)
    if (volumes.has(key)) return Either.left(new VolumeAlreadyExists({ volume: spec.name }))
    const info = new VolumeInfo({
      name: spec.name,
      kind: spec.kind,
      backendKind: "memory",
      quotaMib: spec.kind === "directory" ? spec.quotaMib : Option.none(),
      capacityMib: spec.kind === "disk" ? spec.capacityMib : Option.none(),
      labels: spec.labels,
      createdAt: nextCreatedAt(now),
      usedBytes: 0,
      diskPath: Option.none(),
      local: Option.none(),
      cloud: Option.none()
    })
    volumes.set(key, { info, tree, writeLock: Effect.unsafeMakeSemaphore(1) })
    return Either.right(info)
  }

  const create = Effect.fn("MemoryBackend.create")(function*(spec: ValidSpec) {
    const now = yield* Clock.currentTimeMillis
    return yield* Effect.suspend(() => insert(spec, MemoryDriver.makeTree(DateTime.unsafeMake(now)), now))
  })

  const get = Effect.fn("MemoryBackend.get")(function*(name: string) {
    return yield* Effect.suspend(() => {
      const volume = volumes.get(nameKey(name))
      return volume === undefined ? Effect.fail(new VolumeNotFound({ volume: name })) : Effect.succeed(report(volume))
    })
  })

  const list = Effect.sync(() =>
    Array.from(volumes.values(), report).sort((a, b) => identityOf(b) - identityOf(a))
  ).pipe(Effect.withSpan("MemoryBackend.list"))

  const remove = Effect.fn("MemoryBackend.remove")(function*(name: string) {
    return yield* Effect.suspend((): Effect.Effect<void, VolumeNotFound | VolumeInUse> => {
      const volume = volumes.get(nameKey(name))
      if (volume === undefined) return Effect.fail(new VolumeNotFound({ volume: name }))
      const current = holders.current(name)
      if (current.length > 0) return Effect.fail(new VolumeInUse({ volume: volume.info.name, holders: current }))
      volumes.delete(nameKey(name))
      return Effect.void
    })
  })

  /** One synchronous step: the volume, its snapshots and its identity (`createdAt`) move together. */
  const rename: VolumeBackendService["rename"] = (from, to) =>
    Effect.suspend((): ReturnType<VolumeBackendService["rename"]> => {
      const volume = volumes.get(nameKey(from))
      if (volume === undefined) return Effect.fail(new VolumeNotFound({ volume: from }))
      if (volumes.has(nameKey(to))) return Effect.fail(new VolumeAlreadyExists({ volume: to }))
      const current = holders.current(from)
      if (current.length > 0) return Effect.fail(new VolumeInUse({ volume: volume.info.name, holders: current }))
      const moved = { ...volume, info: new VolumeInfo({ ...volume.info, name: to }, { disableValidation: true }) }
      volumes.delete(nameKey(from))
      volumes.set(nameKey(to), moved)
      snapshots.moveVolume(from, to)
      return Effect.succeed(report(moved))
    }).pipe(Effect.withSpan("MemoryBackend.rename"))

  const update: VolumeBackendService["update"] = (name, change) =>
    Effect.suspend((): ReturnType<VolumeBackendService["update"]> => {
      const key = nameKey(name)
      const volume = volumes.get(key)
      if (volume === undefined) return Effect.fail(new VolumeNotFound({ volume: name }))
      const next = change(report(volume))
      if (Either.isLeft(next)) return Effect.fail(next.left)
      const info = new VolumeInfo({ ...volume.info, ...next.right }, { disableValidation: true })
      volumes.set(key, { ...volume, info })
      return Effect.succeed(report({ ...volume, info }))
    }).pipe(Effect.withSpan("MemoryBackend.update"))

  /** One synchronous step: the rules of `diskGrow.ts`, refused while anyone holds the volume. */
  const grow: VolumeBackendService["grow"] = (name, sizeMib) =>
    Effect.suspend((): ReturnType<VolumeBackendService["grow"]> => {
      const key = nameKey(name)
      const volume = volumes.get(key)
      if (volume === undefined) return Effect.fail(new VolumeNotFound({ volume: name }))
      const plan = planGrow(report(volume), sizeMib)
      if (Either.isLeft(plan)) return Effect.fail(plan.left)
      if (plan.right._tag === "Unchanged") return Effect.succeed(report(volume))
      const current = holders.current(name)
      if (current.length > 0) return Effect.fail(new VolumeInUse({ volume: volume.info.name, holders: current }))
      const info = new VolumeInfo({ ...volume.info, capacityMib: Option.some(plan.right.toMib) }, { disableValidation: true })
      volumes.set(key, { ...volume, info })
      return Effect.succeed(report({ ...volume, info }))
    }).pipe(Effect.withSpan("MemoryBackend.grow"))

  const touch = (name: string) =>
    Effect.flatMap(DateTime.now, (now) =>
      Effect.sync(() => {
        const key = nameKey(name)
        const volume = volumes.get(key)
        if (volume === undefined) return
        volumes.set(key, { ...volume, info: new VolumeInfo({ ...volume.info, lastUsedAt: Option.some(now) }) })
      }))

  /** Host-side changes move `lastUsedAt`, at most once a minute per volume (`useStamps.ts`). */
  const stampUse = UseStamps.make((name) => touch(name))

  const fs = (info: VolumeInfo): VolumeFs => {
    // Bound to this incarnation: once it is removed every operation fails with
    // `VolumeNotFound`, even if a volume of the same name is created later.
    const volume = incarnation(info)
    const spec = volume?.info ?? info
    return VolumeFsImpl.make({
      volume: info.name,
      driver: MemoryDriver.make({
        volume: info.name,
        tree: () => incarnation(info)?.tree,
        capacityBytes: () => Option.map((incarnation(info)?.info ?? spec).capacityMib, mibToBytes)
      }),
      quotaBytes: Option.map(spec.quotaMib, mibToBytes),
      writeLock: volume?.writeLock ?? Effect.unsafeMakeSemaphore(1),
      used: stampUse(info.name)
    })
  }

  return {
    backendKind: "memory",
    create,
    get,
    list,
    remove,
    getDefault: Effect.fail(unsupported("getDefault")),
    fs,
    update,
    grow,
    touch,
    holders: touching(holders.service, touch),
    path: () => Effect.fail(unsupported("path")),
    rename,
    snapshots
  } satisfies VolumeBackendService
})
