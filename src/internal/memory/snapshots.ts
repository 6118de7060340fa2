/**
 * Snapshots, forks and restores of the in-memory backend (SPEC §9). A snapshot is a copy
 * of the volume's tree that shares every file buffer with it (buffers are never mutated,
 * so sharing is safe); each operation runs in one synchronous step, so it is atomic.
 */
import { Clock, DateTime, Effect, Either, Option } from "effect"
import { SnapshotInfo } from "../../VolumeBackend.js"
import type { ForkRequest, RestoreRequest, SnapshotRequest, VolumeInfo, VolumeSnapshotsService } from "../../VolumeBackend.js"
import { QuotaExceeded, SnapshotAlreadyExists, SnapshotNotFound, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeAlreadyExists } from "../../VolumeError.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import { nameKey } from "../../VolumeSpec.js"
import * as CopyProgress from "../copyProgress.js"
import * as Rules from "../snapshotRules.js"
import * as ReadOnlyDriver from "../readOnlyDriver.js"
import * as VolumeFsImpl from "../volumeFs.js"
import * as MemoryDriver from "./memoryDriver.js"
import type { MemoryTree } from "./memoryDriver.js"

/** What the snapshots need of the memory backend. */
export interface MemoryVolumes {
  /** The current incarnation of a volume. */
  readonly find: (name: string) => { readonly info: VolumeInfo; readonly tree: MemoryTree } | undefined
  /** Adds a volume with the given content, unless the name is taken (synchronous). */
  readonly insert: (spec: ValidSpec, tree: MemoryTree, now: number) => Either.Either<VolumeInfo, VolumeAlreadyExists>
}

interface MemorySnapshot {
  readonly info: SnapshotInfo
  readonly tree: MemoryTree
  /** The `createdAt` of the volume incarnation it belongs to. */
  readonly incarnation: number
}

const identityOf = (info: VolumeInfo): number => DateTime.toEpochMillis(info.createdAt)

/** The memory backend's snapshots, and the move of a volume's snapshots to its new name. */
export interface MemorySnapshots extends VolumeSnapshotsService {
  /** Files the snapshots of volume `from` under the renamed volume `to` (synchronous, part of the rename). */
  readonly moveVolume: (from: string, to: string) => void
}

export const make = (volumes: MemoryVolumes): MemorySnapshots => {
  /** Snapshots by volume key, then snapshot key. */
  const byVolume = new Map<string, Map<string, MemorySnapshot>>()

  const volumeOf = (name: string) => {
    const found = volumes.find(name)
    return found === undefined ? Either.left(new VolumeNotFound({ volume: name })) : Either.right(found)
  }

  /** The snapshots of the volume's current incarnation (those of a removed one are dropped). */
  const snapshotsOf = (info: VolumeInfo): Map<string, MemorySnapshot> => {
    const key = nameKey(info.name)
    let own = byVolume.get(key)
    if (own === undefined) {
      own = new Map()
      byVolume.set(key, own)
    }
    for (const [snapKey, snapshot] of own) if (snapshot.incarnation !== identityOf(info)) own.delete(snapKey)
    return own
  }

  const findSnapshot = (volume: string, snapshot: string) =>
    Either.flatMap(volumeOf(volume), (found) => {
      const own = snapshotsOf(found.info).get(nameKey(snapshot))
      return own === undefined
        ? Either.left(new SnapshotNotFound({ volume: found.info.name, snapshot }))
        : Either.right({ volume: found, snapshot: own })
    })

  const create = Effect.fn("MemoryBackend.snapshot")(function*(volume: string, request: SnapshotRequest) {
    return yield* Effect.suspend((): Effect.Effect<SnapshotInfo, VolumeNotFound | SnapshotAlreadyExists> => {
      const found = volumeOf(volume)
      if (Either.isLeft(found)) return Effect.fail(found.left)
      const { info, tree } = found.right
      const own = snapshotsOf(info)
      const key = nameKey(request.name)
      if (own.has(key)) return Effect.fail(new SnapshotAlreadyExists({ volume: info.name, snapshot: request.name }))
      const snapshot = Rules.snapshotInfo(info, request, tree.usedBytes, Option.none())
      own.set(key, { info: snapshot, tree: MemoryDriver.copyTree(tree), incarnation: identityOf(info) })
      // The copy is one synchronous step: its one report comes after it.
      return Effect.as(CopyProgress.make(request.onProgress).done(MemoryDriver.figuresOf(tree)), snapshot)
    })
  })

  const list = Effect.fn("MemoryBackend.snapshots")(function*(volume: string) {
    return yield* Effect.suspend(() =>
      Either.match(volumeOf(volume), {
        onLeft: Effect.fail,
        onRight: (found) => Effect.succeed(Array.from(snapshotsOf(found.info).values(), (s) => s.info))
      })
    )
  })

  const get = Effect.fn("MemoryBackend.getSnapshot")(function*(volume: string, snapshot: string) {
    return yield* Effect.suspend(() => Either.map(findSnapshot(volume, snapshot), (found) => found.snapshot.info))
  })

  const remove = Effect.fn("MemoryBackend.removeSnapshot")(function*(volume: string, snapshot: string) {
    return yield* Effect.suspend(() =>
      Either.map(findSnapshot(volume, snapshot), (found) => {
        snapshotsOf(found.volume.info).delete(nameKey(snapshot))
      })
    )
  })

  const fork = Effect.fn("MemoryBackend.fork")(function*(
    source: string,
    snapshot: Option.Option<string>,
    request: ForkRequest
  ) {
    const found = volumes.find(source)
    if (found === undefined) return yield* new VolumeNotFound({ volume: source })
    // Validation is synchronous (no yield), so the steps below stay one atomic step.
    const target = yield* Rules.forkSpec(found.info, request)
    return yield* Effect.suspend((): Effect.Effect<
      VolumeInfo,
      VolumeNotFound | SnapshotNotFound | QuotaExceeded | VolumeAlreadyExists
    > => {
      const content = Option.match(snapshot, {
        onNone: () => Either.map(volumeOf(source), (found) => found.tree),
        onSome: (name) => Either.map(findSnapshot(source, name), (found) => found.snapshot.tree)
      })
      if (Either.isLeft(content)) return Effect.fail(content.left)
      const tree = content.right
      // `insert` changes the map when called: only once the quota check passed.
      return Effect.zipRight(
        Rules.checkTargetQuota(target, tree.usedBytes),
        Effect.flatMap(Clock.currentTimeMillis, (now) => volumes.insert(target, MemoryDriver.copyTree(tree), now))
      ).pipe(Effect.tap(() => CopyProgress.make(request.onProgress).done(MemoryDriver.figuresOf(tree))))
    })
  })

  const restore = Effect.fn("MemoryBackend.restore")(function*(
    volume: string,
    snapshot: string,
    request: RestoreRequest = {}
  ) {
    const at = yield* DateTime.now
    const copied = yield* Effect.suspend(() =>
      Either.map(findSnapshot(volume, snapshot), (found) => {
        MemoryDriver.replaceTree(found.volume.tree, found.snapshot.tree, at)
        return MemoryDriver.figuresOf(found.snapshot.tree)
      })
    )
    yield* CopyProgress.make(request.onProgress).done(copied)
  })

  const fs = (info: SnapshotInfo) => {
    const live = () => {
      const found = findSnapshot(info.volume, info.name)
      // Bound to this snapshot: a removed (or re-taken) one is gone for its handles.
      return Either.isRight(found) && DateTime.Equivalence(found.right.snapshot.info.createdAt, info.createdAt)
        ? found.right.snapshot.tree
        : undefined
    }
    return VolumeFsImpl.make({
      volume: `${info.volume}@${info.name}`,
      driver: ReadOnlyDriver.make(MemoryDriver.make({ volume: info.volume, tree: live, capacityBytes: Option.none })),
      quotaBytes: Option.none(),
      writeLock: Effect.unsafeMakeSemaphore(1)
    })
  }

  const moveVolume = (from: string, to: string) => {
    const own = byVolume.get(nameKey(from))
    byVolume.delete(nameKey(from))
    if (own === undefined) return
    for (const [key, snapshot] of own) {
      own.set(key, { ...snapshot, info: new SnapshotInfo({ ...snapshot.info, volume: to }, { disableValidation: true }) })
    }
    byVolume.set(nameKey(to), own)
  }

  return { create, list, get, remove, fork, restore, fs, moveVolume }
}
