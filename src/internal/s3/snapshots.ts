/**
 * Snapshots, forks and restores of the cloud backend (SPEC §9). Every copy is a
 * server-side CopyObject: no file data passes through this process.
 *
 * ```
 * <prefix>snapshots/<volume-id>/<snapshot-key>       the snapshot's record (written last, If-None-Match: *)
 * <prefix>snapdata/<volume-id>/<id>/<path>           its objects, copied before the record exists
 * ```
 *
 * A snapshot becomes visible when its record is written, after every object is in place,
 * so a reader on any machine sees it whole or not at all, and of concurrent snapshotters
 * of one name the one whose conditional write lands wins (the others delete their copies).
 * The record carries the fields of a volume record, so the ordinary driver reads the
 * snapshot's objects (behind a read-only view). A fork copies the objects below a fresh
 * volume id and then creates the volume's record exclusively, so it too appears whole or
 * not at all. A restore copies the snapshot's objects into a new data generation of the
 * volume and then switches the volume's record to it by compare-and-swap (generations.ts),
 * so a reader on any machine sees the old tree or the restored one, never a mix; the
 * replaced generation is deleted after the switch. Copies left by a crash sit below ids
 * or generations no record names; no reader ever sees them and `cleanup` deletes them. Snapshots are keyed by the volume's
 * incarnation id, which a rename keeps (rename.ts): they move with the volume, and a new
 * volume of the old name starts without any.
 */
import { Clock, DateTime, Effect, Option, Schedule, Schema } from "effect"
import { SnapshotInfo } from "../../VolumeBackend.js"
import type { ForkRequest, OnCopyProgress, RestoreRequest, SnapshotRequest, VolumeInfo, VolumeSnapshotsService } from "../../VolumeBackend.js"
import {
  SnapshotAlreadyExists,
  SnapshotNotFound,
  StorageError,
  Unsupported,
  VolumeAlreadyExists,
  VolumeNotFound
} from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { FsDriver } from "../fsDriver.js"
import * as CopyProgress from "../copyProgress.js"
import * as Rules from "../snapshotRules.js"
import * as ReadOnlyDriver from "../readOnlyDriver.js"
import * as VolumeFsImpl from "../volumeFs.js"
import type { ListedObject, S3 } from "./client.js"
import * as Driver from "./driver.js"
import { lazyDriver } from "./generations.js"
import * as Usage from "./usage.js"
import type { Layout } from "./layout.js"
import * as Records from "./records.js"
import * as Removal from "./removal.js"
import * as Rename from "./rename.js"
import { VolumeRecord } from "./records.js"

/** Parallel CopyObject / GET requests of one operation. */
const COPY_CONCURRENCY = 32

/** The least time between two progress reports of one copy. */
const PROGRESS_EVERY_MS = 200

const BACKEND = "cloud (S3)"

/**
 * The stored form of a snapshot: a volume record (so the driver can serve its files) plus
 * what makes it a snapshot.
 */
class SnapshotRecord extends Schema.Class<SnapshotRecord>("SnapshotRecord")({
  ...VolumeRecord.fields,
  /** Display name of the volume. */
  volume: Schema.String,
  /** The volume incarnation it was taken of (a re-created volume starts without snapshots). */
  volumeId: Schema.String,
  /** Epoch milliseconds. */
  expiresAt: Schema.NullOr(Schema.Number)
}) {}

const SnapshotJson = Schema.parseJson(SnapshotRecord)
const decodeSnapshot = Schema.decodeUnknownEither(SnapshotJson)
const encodeSnapshot = Schema.encodeSync(SnapshotJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** How many times a deletion after a failure lists the prefix again for late copies. */
const SETTLE_ROUNDS = 6

export const make = (
  s3: S3,
  layout: Layout,
  toVolumeInfo: (record: VolumeRecord) => VolumeInfo
): VolumeSnapshotsService => {
  // The store-wide prefix the layout was made with ("" or "<prefix>/").
  const base = layout.recordsPrefix.slice(0, -"volumes/".length)
  // Keyed by the owner's incarnation id (`owner.id`), not its name.
  const snapshotKey = (owner: VolumeRecord, snapshot: string) => `${base}snapshots/${owner.id}/${nameKey(snapshot)}`
  const snapshotsPrefix = (owner: VolumeRecord) => `${base}snapshots/${owner.id}/`
  const snapshotData = (owner: VolumeRecord, id: string) => `${base}snapdata/${owner.id}/${id}/`
  const snapshotCounters = Usage.makeCounters(s3)
  /** The data prefix of the volume's current generation. */
  const liveData = (owner: VolumeRecord) => layout.dataPrefix(Records.dataKeyOf(owner), Records.dataDirOf(owner))

  /**
   * Fails unless the volume still has the generation `owner` had: a copy of a generation
   * that a restore replaced meanwhile may have lost objects to its deletion.
   */
  const unchanged = (owner: VolumeRecord) =>
    Effect.flatMap(Records.read(s3, layout.recordKey(owner.name)), (found) =>
      Option.isSome(found) && Records.dataDirOf(found.value.record) === Records.dataDirOf(owner)
        ? Effect.void
        : Effect.fail(
          new StorageError({
            message: `volume "${owner.name}" was restored or removed while it was copied; nothing was made, try again`,
            reason: "Conflict",
            operation: "CopyObject"
          })
        ))

  const loadVolume = (name: string) =>
    Effect.flatMap(Rename.readVisible(s3, layout, layout.recordKey(name)), (found) =>
      Option.isSome(found)
        ? Effect.succeed(found.value.record)
        : Effect.fail(new VolumeNotFound({ volume: name })))

  const readSnapshot = (key: string): Effect.Effect<Option.Option<SnapshotRecord>, StorageError> =>
    Effect.flatMap(s3.get(key), (body) => {
      if (Option.isNone(body)) return Effect.succeed(Option.none())
      const decoded = decodeSnapshot(decoder.decode(body.value.bytes))
      return decoded._tag === "Right"
        ? Effect.succeed(Option.some(decoded.right))
        : Effect.fail(new StorageError({ message: `the snapshot record "${key}" is not valid: ${decoded.left.message}` }))
    })

  /** The snapshot's report, under its owner's current name. */
  const toInfo = (record: SnapshotRecord, owner: VolumeRecord): SnapshotInfo =>
    new SnapshotInfo({
      volume: owner.name,
      name: record.name,
      kind: "directory",
      capacityMib: Option.none(),
      labels: record.labels,
      createdAt: DateTime.unsafeMake(record.createdAt),
      expiresAt: Option.map(Option.fromNullable(record.expiresAt), DateTime.unsafeMake),
      usedBytes: record.usedBytes,
      hostPath: Option.none()
    }, { disableValidation: true })

  /**
   * Copies every object below `from` to the same place below `to`; the total file bytes.
   * `onProgress` hears of the copied objects at most every {@link PROGRESS_EVERY_MS}.
   */
  const copyPrefix = (from: string, to: string, onProgress?: OnCopyProgress) =>
    Effect.gen(function*() {
      const { objects } = yield* s3.list(from)
      const progress = CopyProgress.make(onProgress)
      const total = figuresOf(objects)
      const copied = { bytes: 0, files: 0 }
      let reportedAt = yield* Clock.currentTimeMillis
      yield* progress.report(copied, total)
      yield* Effect.forEach(
        objects,
        // An object deleted meanwhile (None) is not part of the copy.
        (object) =>
          Effect.gen(function*() {
            yield* s3.copy(object.key, to + object.key.slice(from.length))
            if (!progress.active || isMarker(object)) return
            copied.bytes += object.size
            copied.files += 1
            const now = yield* Clock.currentTimeMillis
            if (now - reportedAt < PROGRESS_EVERY_MS) return
            reportedAt = now
            yield* progress.report({ ...copied }, total)
          }),
        { concurrency: COPY_CONCURRENCY, discard: true }
      )
      // The root marker, so the copy lists as a directory even if the source had none.
      yield* s3.put(to, new Uint8Array(0), "application/x-directory")
      yield* progress.done(total)
      return { objects, bytes: total.bytes }
    })

  /** A directory marker: no file of the tree. */
  const isMarker = (object: ListedObject) => object.key.endsWith("/")

  const figuresOf = (objects: ReadonlyArray<ListedObject>) => {
    const files = objects.filter((object) => !isMarker(object))
    return { bytes: files.reduce((sum, object) => sum + object.size, 0), files: files.length }
  }

  const deleteOnce = (prefix: string) =>
    Effect.flatMap(s3.list(prefix), (listing) =>
      Effect.as(s3.deleteMany(listing.objects.map((o) => o.key)), listing.objects.length))

  const deletePrefix = (prefix: string) =>
    deleteOnce(prefix).pipe(
      Effect.catchAll((error) => Effect.logWarning(`could not delete the objects below ${prefix}`, error))
    )

  /**
   * Deletes what a failed or interrupted copy made below `prefix`. Copies the client aborted
   * may still land on the server a moment later, so the prefix is listed again (a few times,
   * spaced) until it stays empty; what lands even later is `cleanup`'s.
   */
  const deleteCopy = (prefix: string) =>
    deleteOnce(prefix).pipe(
      Effect.repeat({ schedule: Schedule.spaced("150 millis"), until: (deleted) => deleted === 0, times: SETTLE_ROUNDS }),
      Effect.catchAll((error) => Effect.logWarning(`could not delete the objects below ${prefix}`, error))
    )

  /** The volume's snapshot `name`, of its current incarnation. */
  const findSnapshot = (volume: string, snapshot: string) =>
    Effect.gen(function*() {
      const owner = yield* loadVolume(volume)
      const found = yield* readSnapshot(snapshotKey(owner, snapshot))
      if (Option.isNone(found) || found.value.volumeId !== owner.id) {
        return yield* new SnapshotNotFound({ volume: owner.name, snapshot })
      }
      return { owner, record: found.value }
    })

  const create = Effect.fn("S3Backend.snapshot")(function*(volume: string, request: SnapshotRequest) {
    const owner = yield* loadVolume(volume)
    const key = snapshotKey(owner, request.name)
    const taken = () => new SnapshotAlreadyExists({ volume: owner.name, snapshot: request.name })
    const existing = yield* readSnapshot(key)
    if (Option.isSome(existing) && existing.value.volumeId === owner.id) return yield* taken()
    const id = Records.token()
    const data = snapshotData(owner, id)
    return yield* Effect.gen(function*() {
      const { bytes } = yield* copyPrefix(liveData(owner), data, request.onProgress)
      yield* unchanged(owner)
      const record = new SnapshotRecord({
        version: 1,
        name: request.name,
        id,
        rev: Records.token(),
        quotaMib: null,
        labels: request.labels,
        createdAt: DateTime.toEpochMillis(request.createdAt),
        usedBytes: bytes,
        isDefault: false,
        volume: owner.name,
        volumeId: owner.id,
        expiresAt: Option.getOrNull(Option.map(request.expiresAt, DateTime.toEpochMillis))
      })
      const body = encoder.encode(encodeSnapshot(record))
      // A leftover of a removed incarnation of the volume may hold the name: replace it.
      const outcome = yield* s3.putConditional(
        key,
        body,
        Option.isSome(existing) ? { ifMatch: yield* currentEtag(key) } : { ifNoneMatch: "*" }
      )
      if (outcome._tag !== "Written") {
        const now = yield* readSnapshot(key)
        // The answer was lost but our record is there: it landed.
        if (!(Option.isSome(now) && now.value.id === id)) return yield* taken()
      }
      return toInfo(record, owner)
    }).pipe(Effect.onError(() => deleteCopy(data)))
  })

  const currentEtag = (key: string) =>
    Effect.map(s3.head(key), Option.match({ onNone: () => "\"none\"", onSome: (head) => head.etag }))

  const list = Effect.fn("S3Backend.snapshots")(function*(volume: string) {
    const owner = yield* loadVolume(volume)
    const listing = yield* s3.list(snapshotsPrefix(owner))
    const records = yield* Effect.forEach(listing.objects, (object) => readSnapshot(object.key), {
      concurrency: COPY_CONCURRENCY
    })
    return records.flatMap((found) =>
      Option.isSome(found) && found.value.volumeId === owner.id ? [toInfo(found.value, owner)] : []
    )
  })

  const get = Effect.fn("S3Backend.getSnapshot")(function*(volume: string, snapshot: string) {
    const { owner, record } = yield* findSnapshot(volume, snapshot)
    return toInfo(record, owner)
  })

  const remove = Effect.fn("S3Backend.removeSnapshot")(function*(volume: string, snapshot: string) {
    const { owner, record } = yield* findSnapshot(volume, snapshot)
    // The record goes first: from then on the snapshot does not exist for anyone.
    yield* s3.delete(snapshotKey(owner, snapshot))
    yield* deletePrefix(snapshotData(owner, record.id))
  })

  const fork = Effect.fn("S3Backend.fork")(function*(
    source: string,
    snapshot: Option.Option<string>,
    request: ForkRequest
  ) {
    const target = yield* Rules.forkSpec(toVolumeInfo(yield* loadVolume(source)), request)
    if (target.kind === "disk") {
      return yield* new Unsupported({ operation: "disk volumes (an object store has no block devices)", backend: BACKEND })
    }
    const { check, from, usedBytes } = Option.isSome(snapshot)
      ? yield* Effect.map(findSnapshot(source, snapshot.value), ({ owner, record }) => ({
        from: snapshotData(owner, record.id),
        usedBytes: record.usedBytes,
        check: Effect.void
      }))
      : yield* Effect.map(loadVolume(source), (owner) => ({
        from: liveData(owner),
        usedBytes: owner.usedBytes,
        check: unchanged(owner)
      }))
    yield* Rules.checkTargetQuota(target, usedBytes)
    const recordKey = layout.recordKey(target.name)
    if (Option.isSome(yield* Records.read(s3, recordKey))) return yield* new VolumeAlreadyExists({ volume: target.name })
    const id = Records.token()
    const data = layout.dataPrefix(target.name, id)
    // The record comes last, so until then the copy is an incarnation without a live record:
    // the pending marker keeps a concurrent sweep (a retried remove, `cleanup`) off it.
    const pending = Removal.pendingKey(layout, target.name, id)
    yield* s3.put(pending, new Uint8Array())
    return yield* Effect.gen(function*() {
      const { bytes } = yield* copyPrefix(from, data, request.onProgress)
      yield* check
      const { record } = yield* Records.create(
        s3,
        recordKey,
        new VolumeRecord({
          version: 1,
          name: target.name,
          id,
          rev: Records.token(),
          quotaMib: Option.getOrNull(target.quotaMib),
          labels: target.labels,
          createdAt: DateTime.toEpochMillis(yield* DateTime.now),
          usedBytes: bytes,
          isDefault: false
        })
      )
      yield* s3.delete(pending).pipe(Effect.ignore)
      return record
    }).pipe(
      Effect.onError(() => Effect.zipRight(deleteCopy(data), s3.delete(pending).pipe(Effect.ignore))),
      Effect.map((record) => toVolumeInfo(record))
    )
  })

  const restore = Effect.fn("S3Backend.restore")(function*(
    volume: string,
    snapshot: string,
    request: RestoreRequest = {}
  ) {
    const { owner, record } = yield* findSnapshot(volume, snapshot)
    // The snapshot's tree is copied into a fresh generation of the volume; until the record
    // points at it, a pending marker keeps sweeps off it (a crash leaves it to `cleanup`).
    const generation = Records.token()
    const dir = `${owner.id}.${generation}`
    const data = layout.dataPrefix(Records.dataKeyOf(owner), dir)
    const pending = Removal.pendingKey(layout, Records.dataKeyOf(owner), dir)
    yield* s3.put(pending, new Uint8Array())
    yield* Effect.gen(function*() {
      yield* copyPrefix(snapshotData(owner, record.id), data, request.onProgress)
      // The switch: one compare-and-swap of the record, so every reader sees the old tree or this one.
      yield* Records.update(
        s3,
        layout.recordKey(owner.name),
        owner.id,
        owner.name,
        (current) => new VolumeRecord({ ...current, generation, usedBytes: record.usedBytes, changes: 0 })
      )
    }).pipe(
      // Unless the switch landed after all (its answer lost), the copy is garbage.
      Effect.onError(() =>
        Records.read(s3, layout.recordKey(owner.name)).pipe(
          Effect.flatMap((found) =>
            Option.isSome(found) && Records.dataDirOf(found.value.record) === dir ? Effect.void : deleteCopy(data)
          ),
          Effect.ignore
        )
      ),
      Effect.ensuring(s3.delete(pending).pipe(Effect.ignore))
    )
    // The replaced generation (and whatever an earlier crashed restore left) is garbage now;
    // a crash before this leaves it to the next restore, removal or `cleanup`.
    yield* Removal.sweep(s3, layout, Records.dataKeyOf(owner)).pipe(
      Effect.catchAll((error) => Effect.logWarning(`could not delete the replaced tree of ${owner.name}`, error))
    )
  })

  const fs = (info: SnapshotInfo) => {
    const display = `${info.volume}@${info.name}`
    // `fs()` is synchronous, so the owner and the id below which the objects live are read
    // per operation (a removed snapshot or volume leaves a driver that finds nothing).
    const driverOf: Effect.Effect<FsDriver, StorageError> = Effect.gen(function*() {
      const owner = yield* loadVolume(info.volume).pipe(
        Effect.map(Option.some),
        Effect.catchTag("VolumeNotFound", () => Effect.succeedNone)
      )
      const key = Option.match(owner, { onNone: () => `${base}snapshots/-/${nameKey(info.name)}`, onSome: (o) => snapshotKey(o, info.name) })
      const found = Option.isSome(owner) ? yield* readSnapshot(key) : Option.none<SnapshotRecord>()
      const target = {
        volume: display,
        recordKey: key,
        id: Option.match(found, { onNone: () => "", onSome: (record) => record.id }),
        dataPrefix: Option.match(Option.all([owner, found]), {
          onNone: () => "",
          onSome: ([o, record]) => snapshotData(o, record.id)
        })
      }
      // The driver is wrapped read-only below, so its usage counter is never moved.
      return Driver.make({ s3, ...target, counter: snapshotCounters.counterOf(target) })
    })
    return VolumeFsImpl.make({
      volume: display,
      driver: ReadOnlyDriver.make(lazyDriver(driverOf)),
      quotaBytes: Option.none(),
      writeLock: Effect.unsafeMakeSemaphore(1)
    })
  }

  return { create, list, get, remove, fork, restore, fs }
}
