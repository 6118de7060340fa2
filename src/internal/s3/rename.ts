/**
 * Renaming a cloud volume (SPEC §10). A volume's objects live below its incarnation id,
 * which a rename keeps: the new record points at the same data (`dataKey`, the name key
 * the data was created under) and the snapshots, keyed by the id, come along. The store
 * has no transaction over two records, so the rename is three conditional writes:
 *
 * 1. the source record gets `renamingTo { name, token, at }` by compare-and-swap — the
 *    lock: a second renamer finds it and is refused (`VolumeInUse`);
 * 2. the target record is created exclusively (`If-None-Match`, or over a tombstone) with
 *    the same id and `renamedFrom { key, token }` — the decision;
 * 3. the source becomes a tombstone by compare-and-swap, and `renamedFrom` is cleared.
 *
 * A reader that meets a record with either mark resolves it ({@link visible}): after step
 * 2 the target is the volume and the source is not (and the reader finishes step 3); before
 * it, the source is the volume. So a crash anywhere leaves exactly one of the two names.
 * A marker below the incarnation (`meta/<data-key>/<id>/renamed-<name-key>`) keeps the
 * sweep of the old name (removal.ts) off the data the new name now owns.
 *
 * A lock older than the lease time belongs to a renamer that died before step 2 and may be
 * taken over; a renamer that finds its own lock that old before step 2 gives up, so two
 * renamers never both reach step 2 for one source (machines' clocks must agree to well
 * within the lease time, as for leases).
 */
import { Clock, Duration, Effect, Option } from "effect"
import type { StorageError } from "../../VolumeError.js"
import { Unsupported, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { S3 } from "./client.js"
import type { Layout } from "./layout.js"
import type { Leases } from "./leases.js"
import * as Records from "./records.js"
import type { Versioned } from "./records.js"
import { VolumeRecord } from "./records.js"

/** The marker that the data of incarnation `id` (created as `dataKey`) now belongs to `name` too. */
export const renamedMarker = (layout: Layout, dataKey: string, id: string, name: string): string =>
  `${layout.metaPrefix(dataKey, id)}renamed-${nameKey(name)}`

/** Prefix of every {@link renamedMarker} of an incarnation. */
export const renamedMarkers = (layout: Layout, dataKey: string, id: string): string =>
  `${layout.metaPrefix(dataKey, id)}renamed-`

/** A copy of `record` without the fields named. */
const without = (record: VolumeRecord, ...fields: ReadonlyArray<"renamingTo" | "renamedFrom">): VolumeRecord => {
  const copy: Record<string, unknown> = { ...record }
  for (const field of fields) delete copy[field]
  return new VolumeRecord(copy as ConstructorParameters<typeof VolumeRecord>[0], { disableValidation: true })
}

/** Turns the source of a decided rename into a tombstone (any version of it that still is that source). */
const retireSource = (s3: S3, key: string, id: string, token: string) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 60; attempt++) {
      const current = yield* Records.read(s3, key)
      if (Option.isNone(current)) return true
      const { record } = current.value
      if (record.id !== id) return true
      if (record.renamingTo?.token !== token) return false
      const swapped = yield* Records.swap(s3, key, current.value, "tombstone").pipe(
        Effect.catchTag("VolumeNotFound", () => Effect.succeed(Option.some("tombstone" as const)))
      )
      if (Option.isSome(swapped)) return true
    }
    return false
  })

/**
 * The live record `found` stands for, resolving half-done renames: `None` when it is the
 * source of a decided rename (step 3 is finished on the way) or a target whose rename was
 * given up.
 */
export const visible = (
  s3: S3,
  layout: Layout,
  found: Versioned
): Effect.Effect<Option.Option<Versioned>, StorageError> =>
  Effect.gen(function*() {
    const { record } = found
    if (record.renamingTo !== undefined) {
      const lock = record.renamingTo
      const target = yield* Records.read(s3, layout.recordKey(lock.name))
      const decided = Option.exists(target, (t) => t.record.id === record.id && t.record.renamedFrom?.token === lock.token)
      if (!decided) return Option.some(found)
      yield* retireSource(s3, layout.recordKey(record.name), record.id, lock.token)
      return Option.none()
    }
    if (record.renamedFrom !== undefined) {
      const from = record.renamedFrom
      const source = yield* Records.read(s3, from.key)
      const same = Option.filter(source, (s) => s.record.id === record.id)
      if (Option.isSome(same)) {
        // The source still stands: decided only if it still carries this rename's lock.
        if (same.value.record.renamingTo?.token !== from.token) return Option.none()
        yield* retireSource(s3, from.key, record.id, from.token)
      }
    }
    return Option.some(found)
  })

/** The visible live record at `key`, if any. */
export const readVisible = (s3: S3, layout: Layout, key: string) =>
  Effect.flatMap(Records.read(s3, key), (found) =>
    Option.isNone(found) ? Effect.succeedNone : visible(s3, layout, found.value))

export interface RenameSettings {
  /** Runs the rename under the holders' guard: refused while anyone holds the source. */
  readonly leases: Leases["guard"]
  /** How long a lock protects a rename before step 2. */
  readonly lockTtl: Duration.Duration
  readonly backend: string
}

export const rename = (
  s3: S3,
  layout: Layout,
  settings: RenameSettings,
  from: string,
  to: string
): Effect.Effect<VolumeRecord, VolumeNotFound | VolumeAlreadyExists | VolumeInUse | Unsupported | StorageError> =>
  Effect.gen(function*() {
    const sourceKey = layout.recordKey(from)
    const targetKey = layout.recordKey(to)
    const ttl = Duration.toMillis(settings.lockTtl)
    const token = Records.token()
    // Step 1: the lock, on the version just read.
    let locked: Option.Option<{ readonly versioned: Versioned; readonly at: number }> = Option.none()
    for (let attempt = 0; attempt < 60 && Option.isNone(locked); attempt++) {
      const found = yield* readVisible(s3, layout, sourceKey)
      if (Option.isNone(found)) return yield* new VolumeNotFound({ volume: from })
      const { record } = found.value
      if (record.isDefault) {
        return yield* new Unsupported({ operation: `renaming the default volume "${record.name}"`, backend: settings.backend })
      }
      if (sourceKey === targetKey) return yield* new VolumeAlreadyExists({ volume: to })
      if (Option.isSome(yield* readVisible(s3, layout, targetKey))) return yield* new VolumeAlreadyExists({ volume: to })
      const now = yield* Clock.currentTimeMillis
      if (record.renamingTo !== undefined && now - record.renamingTo.at < ttl) {
        return yield* new VolumeInUse({ volume: record.name, holders: [`a rename to "${record.renamingTo.name}" in progress`] })
      }
      const next = new VolumeRecord({ ...record, rev: Records.token(), renamingTo: { name: to, token, at: now } })
      const swapped = yield* Records.swap(s3, sourceKey, found.value, next)
      if (Option.isSome(swapped) && swapped.value !== "tombstone") locked = Option.some({ versioned: swapped.value, at: now })
    }
    if (Option.isNone(locked)) return yield* new VolumeInUse({ volume: from, holders: ["concurrent updates"] })
    const source = locked.value.versioned.record
    const dataKey = Records.dataKeyOf(source)

    /** Takes the lock off again (only ours), when the rename does not happen. */
    const unlock = Records.update(s3, sourceKey, source.id, from, (record) =>
      record.renamingTo?.token === token ? without(record, "renamingTo") : record).pipe(
        Effect.catchTag("VolumeNotFound", () => Effect.void),
        Effect.asVoid
      )

    const decided = yield* Effect.gen(function*() {
      yield* s3.put(renamedMarker(layout, dataKey, source.id, to), new Uint8Array(0))
      // A lock that aged this long may have been taken over: never decide on it.
      if ((yield* Clock.currentTimeMillis) - locked.value.at > ttl / 2) {
        return yield* new VolumeInUse({ volume: from, holders: ["a rename that took too long to start"] })
      }
      // Step 2: the decision.
      const target = new VolumeRecord({
        ...without(source, "renamingTo", "renamedFrom"),
        name: to,
        rev: Records.token(),
        dataKey,
        renamedFrom: { key: sourceKey, token }
      })
      return yield* Records.create(s3, targetKey, target)
    }).pipe(Effect.tapError(() => unlock))

    // Step 3: the source goes; a source whose lock someone else took means this rename lost.
    const retired = yield* retireSource(s3, sourceKey, source.id, token)
    if (!retired) {
      const current = yield* Records.read(s3, targetKey)
      if (Option.isSome(current) && current.value.record.renamedFrom?.token === token) {
        yield* Records.swap(s3, targetKey, current.value, "tombstone").pipe(Effect.ignore)
      }
      return yield* new VolumeInUse({ volume: from, holders: ["another rename that took over"] })
    }
    const done = yield* Records.update(s3, targetKey, source.id, to, (record) => without(record, "renamedFrom"), Option.some(decided))
    return done.record
  }).pipe((effect) => settings.leases(from, effect), Effect.withSpan("S3Backend.rename"))
