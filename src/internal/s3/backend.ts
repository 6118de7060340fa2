/**
 * The cloud `VolumeBackendService`: volume records and files in one bucket of an
 * S3-compatible store (layout in `layout.ts`, records in `records.ts`, files in
 * `driver.ts`). Nothing is kept in this process but the client and per-volume write locks,
 * so every process pointing at the same bucket and prefix sees the same volumes.
 */
import { Clock, DateTime, Duration, Effect, Either, Option } from "effect"
import type { Scope } from "effect"
import { BYTES_PER_MIB } from "../../Size.js"
import type { Mebibytes } from "../../Size.js"
import type { VolumeBackendService } from "../../VolumeBackend.js"
import { CloudState, VolumeInfo } from "../../VolumeBackend.js"
import { InvalidConfig, StorageError, Unsupported, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import * as UseStamps from "../useStamps.js"
import * as VolumeFsImpl from "../volumeFs.js"
import * as Client from "./client.js"
import type { S3, S3Settings } from "./client.js"
import * as Driver from "./driver.js"
import * as Generations from "./generations.js"
import * as Layout from "./layout.js"
import * as Leases from "./leases.js"
import { planGrow } from "../diskGrow.js"
import { touching } from "../touchingHolders.js"
import * as Records from "./records.js"
import { VolumeRecord } from "./records.js"
import * as Removal from "./removal.js"
import * as Rename from "./rename.js"
import * as Snapshots from "./snapshots.js"
import * as Usage from "./usage.js"
import * as Waves from "./waves.js"

export type { Reclaimed } from "./removal.js"
export type { UsageReport } from "./usage.js"

export interface S3BackendSettings extends S3Settings {
  /** Key prefix of everything this backend stores (default: the bucket root). */
  readonly prefix?: string | undefined
  /** How long a crashed holder's lease keeps blocking remove/rename (default 30 s). */
  readonly leaseTtl?: Duration.DurationInput | undefined
}

/** Name of the store's default volume. */
export const DEFAULT_VOLUME = "default"

const BACKEND = "cloud (S3)"

/** Record reads of `list` in one wave (see `waves.ts`). */
const LIST_CONCURRENCY = 32

export const make = (settings: S3BackendSettings): Effect.Effect<VolumeBackendService, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const s3 = yield* Client.make(settings)
    yield* s3.ensureBucket
    return makeService(s3, Layout.make(settings.prefix), settings)
  })

/** The service over an existing client (tests build several over one client). */
/** What only the cloud backend can do (reached through `S3Backend`'s functions). */
export interface S3Extras {
  /** Reclaims removed volumes' leftovers and uploads abandoned longer than `uploadGrace`. */
  readonly cleanup: (uploadGrace?: Duration.Duration) => Effect.Effect<Removal.Reclaimed, StorageError>
  /** Recounts a volume's usage from a listing and stores it in the record. */
  readonly recount: (volume: Bound) => Effect.Effect<Usage.UsageReport, VolumeNotFound | StorageError>
}

const extras = new WeakMap<VolumeBackendService, S3Extras>()

/** The cloud-only operations of `service`, if it is a cloud backend. */
export const extrasOf = (service: VolumeBackendService): Option.Option<S3Extras> =>
  Option.fromNullable(extras.get(service))

/** What a handle carries about where its volume lives. */
type Bound = Pick<VolumeInfo, "name" | "cloud">

/**
 * The record key, incarnation id and data prefix a handle of `info` is bound to (the data
 * prefix of the generation current when `info` was read: see generations.ts).
 */
const bindingOf = (layout: Layout.Layout, info: Bound) => {
  const dataPrefix = Option.match(info.cloud, { onNone: () => "", onSome: (cloud) => cloud.prefix })
  const id = Records.incarnationOfDir(Layout.dirOfData(dataPrefix))
  return { dataPrefix, id, recordKey: layout.recordKey(info.name), volume: info.name }
}

export const makeService = (
  s3: S3,
  layout: Layout.Layout,
  options: { readonly leaseTtl?: Duration.DurationInput | undefined } = {}
): VolumeBackendService => {
  const leaseTtl = Duration.decode(options.leaseTtl ?? Leases.DEFAULT_LEASE_TTL)
  const leases = Leases.make(s3, {
    base: Leases.baseOf(layout.recordsPrefix),
    exists: (name) => Effect.map(Rename.readVisible(s3, layout, layout.recordKey(name)), Option.isSome),
    ttl: leaseTtl
  })
  /** One lock per volume incarnation, shared by every `fs()` of it in this process. */
  const writeLocks = VolumeFsImpl.makeWriteLocks()
  const writeLockOf = writeLocks.lockOf
  const counters = Usage.makeCounters(s3)

  // Records were decoded by Schema already; the constructors need not validate again.
  const toInfo = (record: VolumeRecord): VolumeInfo =>
    new VolumeInfo({
      name: record.name,
      kind: "directory",
      backendKind: "cloud",
      quotaMib: Option.fromNullable(record.quotaMib),
      capacityMib: Option.none(),
      labels: record.labels,
      createdAt: DateTime.unsafeMake(record.createdAt),
      expiresAt: Option.map(Option.fromNullable(record.expiresAt), DateTime.unsafeMake),
      lastUsedAt: Option.map(Option.fromNullable(record.lastUsedAt), DateTime.unsafeMake),
      usedBytes: record.usedBytes,
      diskPath: Option.none(),
      local: Option.none(),
      cloud: Option.some(
        new CloudState(
          { endpoint: s3.endpoint, bucket: s3.bucket, prefix: layout.dataPrefix(Records.dataKeyOf(record), Records.dataDirOf(record)) },
          { disableValidation: true }
        )
      )
    }, { disableValidation: true })

  /** A new volume's record, created now by the Effect `Clock` (so `TestClock` drives it). */
  const newRecord = (spec: { readonly name: string; readonly quotaMib: Option.Option<Mebibytes> }, labels: VolumeRecord["labels"], isDefault: boolean) =>
    Effect.map(Clock.currentTimeMillis, (now) => new VolumeRecord({
      version: 1,
      name: spec.name,
      id: Records.token(),
      rev: Records.token(),
      quotaMib: Option.getOrNull(spec.quotaMib),
      labels,
      createdAt: now,
      usedBytes: 0,
      isDefault
    }))

  const create = Effect.fn("S3Backend.create")(function*(spec: ValidSpec) {
    if (spec.kind === "disk") {
      return yield* new Unsupported({ operation: "disk volumes (an object store has no block devices)", backend: BACKEND })
    }
    const { record } = yield* Records.create(s3, layout.recordKey(spec.name), yield* newRecord(spec, spec.labels, false))
    return toInfo(record)
  })

  const get = Effect.fn("S3Backend.get")(function*(name: string) {
    const found = yield* Rename.readVisible(s3, layout, layout.recordKey(name))
    if (Option.isNone(found)) return yield* new VolumeNotFound({ volume: name })
    return toInfo(found.value.record)
  })

  const list = Effect.gen(function*() {
    const listing = yield* s3.list(layout.recordsPrefix, { delimiter: "/" })
    // Empty objects are tombstones of removed volumes.
    const live = listing.objects.filter((object) => object.size > 0)
    // A record removed between the listing and its read is simply no longer listed.
    const records = yield* Waves.forEach(live, (object) => Rename.readVisible(s3, layout, object.key), LIST_CONCURRENCY)
    return records.flatMap((found) => Option.isSome(found) ? [toInfo(found.value.record)] : [])
      .sort((a, b) => DateTime.toEpochMillis(b.createdAt) - DateTime.toEpochMillis(a.createdAt))
  }).pipe(Effect.withSpan("S3Backend.list"))

  const remove = Effect.fn("S3Backend.remove")(function*(name: string) {
    const removed = yield* Removal.remove(s3, layout, name, BACKEND, leases.guard)
    if (Option.isSome(removed)) {
      writeLocks.forget(Records.incarnationOfDir(Layout.dirOfData(removed.value)))
      counters.forget(removed.value)
    }
  })

  const update: VolumeBackendService["update"] = (name, change) =>
    Effect.gen(function*() {
      const key = layout.recordKey(name)
      const found = yield* Rename.readVisible(s3, layout, key)
      if (Option.isNone(found)) return yield* new VolumeNotFound({ volume: name })
      const first = change(toInfo(found.value.record))
      if (Either.isLeft(first)) return yield* first.left
      // `change` runs again on whatever a concurrent writer left; a refusal then keeps the record.
      let refused: Option.Option<InvalidConfig> = Option.none()
      const updated = yield* Records.update(s3, key, found.value.record.id, name, (record) => {
        const next = change(toInfo(record))
        if (Either.isLeft(next)) {
          refused = Option.some(next.left)
          return record
        }
        refused = Option.none()
        return new VolumeRecord({
          ...record,
          labels: next.right.labels,
          quotaMib: Option.getOrNull(next.right.quotaMib),
          expiresAt: Option.getOrNull(Option.map(next.right.expiresAt, DateTime.toEpochMillis))
        })
      }, found)
      if (Option.isSome(refused)) return yield* refused.value
      return toInfo(updated.record)
    }).pipe(Effect.withSpan("S3Backend.update"))

  /**
   * Every S3 volume is a directory volume (disk volumes are `Unsupported` at create), so
   * `diskGrow.ts` refuses any size with `InvalidConfig`; the same rules as elsewhere.
   */
  const grow: VolumeBackendService["grow"] = (name, sizeMib) =>
    Effect.gen(function*() {
      const found = yield* Records.read(s3, layout.recordKey(name))
      if (Option.isNone(found)) return yield* new VolumeNotFound({ volume: name })
      const current = toInfo(found.value.record)
      const plan = planGrow(current, sizeMib)
      if (Either.isLeft(plan)) return yield* plan.left
      if (plan.right._tag === "Unchanged") return current
      return yield* new InvalidConfig({ message: `volume ${JSON.stringify(name)}: the S3 backend has no disk volumes to grow` })
    }).pipe(Effect.withSpan("S3Backend.grow"))

  const touch = (name: string) =>
    Effect.gen(function*() {
      const key = layout.recordKey(name)
      const found = yield* Rename.readVisible(s3, layout, key)
      if (Option.isNone(found)) return
      const now = yield* Clock.currentTimeMillis
      yield* Records.update(s3, key, found.value.record.id, name, (record) => new VolumeRecord({ ...record, lastUsedAt: now }), found)
        .pipe(Effect.catchTag("VolumeNotFound", () => Effect.void))
    })

  /**
   * Host-side changes move `lastUsedAt`, at most once a minute per volume and process
   * (`useStamps.ts`): a stamp is a conditional write of the record.
   */
  const stampUse = UseStamps.make(touch)

  /** The default volume, created on first use by whichever process asks first. */
  const getDefault = Effect.gen(function*() {
    const key = layout.recordKey(DEFAULT_VOLUME)
    const found = yield* Records.read(s3, key)
    if (Option.isSome(found)) return toInfo(found.value.record)
    const created = yield* Records.create(
      s3,
      key,
      yield* newRecord({ name: DEFAULT_VOLUME, quotaMib: Option.none() }, [], true)
    ).pipe(
      Effect.map((versioned) => versioned.record),
      Effect.catchTag("VolumeAlreadyExists", () =>
        Effect.flatMap(Records.read(s3, key), (again) =>
          Option.isSome(again)
            ? Effect.succeed(again.value.record)
            : Effect.fail(
              new StorageError({
                message: `the default volume record "${key}" vanished while it was created`,
                reason: "Conflict",
                operation: "getDefault"
              })
            )))
    )
    return toInfo(created)
  }).pipe(Effect.withSpan("S3Backend.getDefault"))

  const fs = (info: VolumeInfo): VolumeFs => {
    // Bound to this incarnation through its data prefix, which holds its unique id.
    const binding = bindingOf(layout, info)
    const driverOf = (dataPrefix: string) => {
      const target = { ...binding, dataPrefix }
      return Driver.make({ s3, ...target, counter: counters.counterOf(target) })
    }
    return VolumeFsImpl.make({
      volume: info.name,
      // Every operation follows the volume's current generation (a restore switches it).
      driver: Generations.make({
        s3,
        ...binding,
        prefixOf: (dir) => Layout.siblingData(binding.dataPrefix, dir),
        driverOf,
        initialPrefix: binding.dataPrefix
      }),
      quotaBytes: Option.map(info.quotaMib, (mib) => mib * BYTES_PER_MIB),
      // One lock per incarnation, whatever its generation or name.
      writeLock: writeLockOf(binding.id),
      used: stampUse(info.name)
    })
  }

  const service = {
    backendKind: "cloud",
    create,
    get,
    list,
    remove,
    getDefault,
    fs,
    update,
    grow,
    rename: (from, to) =>
      Effect.map(
        Rename.rename(s3, layout, { leases: leases.guard, lockTtl: leaseTtl, backend: BACKEND }, from, to),
        toInfo
      ),
    touch,
    holders: touching(leases.service, touch),
    path: () => Effect.fail(new Unsupported({ operation: "path() (cloud volumes have no host directory)", backend: BACKEND })),
    snapshots: Snapshots.make(s3, layout, toInfo)
  } satisfies VolumeBackendService
  extras.set(service, {
    cleanup: (uploadGrace) => Removal.cleanup(s3, layout, uploadGrace),
    recount: (info) =>
      Effect.flatMap(Records.read(s3, layout.recordKey(info.name)), (found) => {
        const binding = bindingOf(layout, info)
        if (Option.isNone(found) || found.value.record.id !== binding.id) {
          return Effect.fail(new VolumeNotFound({ volume: info.name }))
        }
        // The current generation, whatever generation `info` was read at.
        const dataPrefix = layout.dataPrefix(Records.dataKeyOf(found.value.record), Records.dataDirOf(found.value.record))
        return counters.counterOf({ ...binding, dataPrefix }).recount
      })
  })
  return service
}
