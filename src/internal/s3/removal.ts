/**
 * Removing volumes, resumably, and reclaiming what removals and killed writers left behind.
 *
 * - `remove` turns the record it read into a tombstone by compare-and-swap on the ETag it
 *   read, so a slow remover can never touch a newer volume of the same name (the store has
 *   no conditional DELETE). From the tombstone on, the volume does not exist for anyone.
 * - The data of an incarnation whose id is not the name's live id is garbage: `sweep` lists
 *   the incarnations below a name (data, bookkeeping, unfinished multipart uploads), reads
 *   the record *after* the listing (so a volume created meanwhile is never in the listing),
 *   and deletes every incarnation that is not live. A remove that failed after its tombstone
 *   is finished by retrying it, or by `cleanup`, which sweeps every name.
 * - `cleanup` also aborts the multipart uploads of live volumes that were started longer ago
 *   than a grace period (writers killed mid-upload), which hold parts but never a file.
 */
import { Clock, Duration, Effect, Option } from "effect"
import type { StorageError, VolumeInUse } from "../../VolumeError.js"
import { Unsupported, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { S3 } from "./client.js"
import type { Layout } from "./layout.js"
import type { Leases } from "./leases.js"
import * as Records from "./records.js"
import { renamedMarkers } from "./rename.js"

/** What a sweep or a cleanup reclaimed. */
export interface Reclaimed {
  /** Incarnations (removed volumes) whose leftovers were deleted. */
  readonly incarnations: number
  readonly objects: number
  readonly uploads: number
}

const NONE: Reclaimed = { incarnations: 0, objects: 0, uploads: 0 }

const plus = (a: Reclaimed, b: Reclaimed): Reclaimed => ({
  incarnations: a.incarnations + b.incarnations,
  objects: a.objects + b.objects,
  uploads: a.uploads + b.uploads
})

/** Default age after which a live volume's unfinished multipart upload is considered abandoned. */
export const DEFAULT_UPLOAD_GRACE = Duration.hours(1)

/**
 * How long a pending marker protects an incarnation whose record is not written yet (a fork
 * copying its objects writes the record last). A marker older than this belongs to a writer
 * that died: its incarnation is garbage like any other.
 */
export const PENDING_GRACE = Duration.hours(1)

/** The marker of an incarnation being built before its record exists (see {@link PENDING_GRACE}). */
export const pendingKey = (layout: Layout, name: string, id: string): string => `${layout.metaPrefix(name, id)}pending`

/** Whether incarnation `id` of name key `key` is still being built by a live writer. */
const isPending = (s3: S3, layout: Layout, key: string, id: string, now: number) =>
  Effect.map(
    s3.head(pendingKey(layout, key, id)),
    Option.match({
      onNone: () => false,
      onSome: (head) => now - head.modified.getTime() < Duration.toMillis(PENDING_GRACE)
    })
  )

/** The data directory of the live incarnation of name key `key` (its current generation), if any. */
const liveDir = (s3: S3, layout: Layout, key: string) =>
  Effect.map(Records.read(s3, layout.recordKey(key)), Option.map((found) => Records.dataDirOf(found.record)))

/**
 * The current data directory of the incarnation of data directory `dir` (name key `key`)
 * when a rename gave that incarnation to another name that is live (rename.ts). Its
 * `renamed-` markers live below the incarnation's own meta directory: `metaKeys` when `dir`
 * is that directory, listed otherwise (a generation a restore made).
 */
const liveUnderAnotherName = (s3: S3, layout: Layout, key: string, dir: string, metaKeys: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const id = Records.incarnationOfDir(dir)
    const prefix = renamedMarkers(layout, key, id)
    const markers = dir === id ? metaKeys : (yield* s3.list(prefix)).objects.map((o) => o.key)
    for (const marker of markers.filter((k) => k.startsWith(prefix))) {
      const found = yield* Records.read(s3, layout.recordKey(marker.slice(prefix.length)))
      if (Option.isSome(found) && found.value.record.id === id) return Option.some(Records.dataDirOf(found.value.record))
    }
    return Option.none<string>()
  })

/** Every incarnation id with objects below `prefix` (`…/<name-key>/`). */
const incarnations = (s3: S3, prefix: string) =>
  Effect.map(s3.list(prefix, { delimiter: "/" }), (listing) => listing.prefixes.map((p) => p.slice(prefix.length, -1)))

/**
 * Deletes every incarnation of name key `key` that is not live, and aborts uploads below the
 * live one that were started before `uploadsBefore` (epoch ms; none when undefined).
 */
export const sweep = (
  s3: S3,
  layout: Layout,
  key: string,
  uploadsBefore?: number
): Effect.Effect<Reclaimed, StorageError> =>
  Effect.gen(function*() {
    // `…/data/<name-key>/` and `…/meta/<name-key>/` (the layout with an empty id ends in `//`).
    const dataRoot = layout.dataPrefix(key, "").slice(0, -1)
    const metaRoot = layout.metaPrefix(key, "").slice(0, -1)
    // Listed first, the record read after: an incarnation created meanwhile is not listed.
    const [dataIds, metaIds, uploads] = yield* Effect.all(
      [incarnations(s3, dataRoot), incarnations(s3, metaRoot), s3.listUploads(dataRoot)],
      { concurrency: 3 }
    )
    const live = yield* liveDir(s3, layout, key)
    // Only what has the shape of a data directory: never another store's keys that happen
    // to lie below this prefix. A generation a restore replaced is dead like a removed volume.
    const dead = (id: string) => Records.isDataDir(id) && (Option.isNone(live) || live.value !== id)
    const now = yield* Clock.currentTimeMillis
    const candidates = yield* Effect.filter(
      [...new Set([...dataIds, ...metaIds])].filter(dead),
      (id) => Effect.map(isPending(s3, layout, key, id, now), (pending) => !pending),
      { concurrency: 8 }
    )
    // What each candidate holds. The generation a rename gave to another live name is not
    // dead; a replaced generation of such a volume is, but its rename markers stay.
    const listed = yield* Effect.forEach(
      candidates,
      (id) =>
        Effect.gen(function*() {
          const [data, meta] = yield* Effect.all(
            [s3.list(layout.dataPrefix(key, id)), s3.list(layout.metaPrefix(key, id))],
            { concurrency: 2 }
          )
          const renamedTo = yield* liveUnderAnotherName(s3, layout, key, id, meta.objects.map((o) => o.key))
          const markers = renamedMarkers(layout, key, Records.incarnationOfDir(id))
          const keys = [...data.objects, ...meta.objects].map((o) => o.key)
            .filter((k) => Option.isNone(renamedTo) || !k.startsWith(markers))
          return { id, renamed: Option.contains(renamedTo, id), keys }
        }),
      { concurrency: 4 }
    )
    const renamedIds = new Set(listed.filter((entry) => entry.renamed).map((entry) => entry.id))
    const deadIds = new Set(listed.filter((entry) => !entry.renamed).map((entry) => entry.id))
    const stale = uploads.filter((upload) => {
      const id = upload.key.slice(dataRoot.length).split("/")[0] ?? ""
      return (dead(id) && !renamedIds.has(id)) ||
        (Records.isDataDir(id) && !dead(id) && uploadsBefore !== undefined && upload.initiated.getTime() < uploadsBefore)
    })
    yield* Effect.forEach(stale, (upload) => s3.abortUpload(upload.key, upload.uploadId), { concurrency: 8, discard: true })
    const objects = yield* Effect.forEach(
      listed.filter((entry) => !entry.renamed),
      ({ keys }) => Effect.as(s3.deleteMany(keys), keys.length),
      { concurrency: 4 }
    )
    return { incarnations: deadIds.size, objects: objects.reduce((a, b) => a + b, 0), uploads: stale.length }
  })

/**
 * Removes the volume `name`: tombstone first (conditional on the record read), then its
 * data. A retry after a failure finishes the deletion; `VolumeNotFound` only when there is
 * neither a live volume nor anything left to delete. Returns the data prefix of the
 * incarnation tombstoned (its current generation), if any.
 */
export const remove = (
  s3: S3,
  layout: Layout,
  name: string,
  backend: string,
  /** Runs the tombstone write under the holders' guard (leases.ts): refused while anyone holds the volume. */
  guard: Leases["guard"]
): Effect.Effect<Option.Option<string>, VolumeNotFound | VolumeInUse | Unsupported | StorageError> =>
  Effect.gen(function*() {
    const key = layout.recordKey(name)
    let target: Option.Option<string> = Option.none()
    for (let attempt = 0; attempt < 60; attempt++) {
      const slot = yield* Records.readSlot(s3, key)
      const sameTarget = slot._tag === "Live" &&
        Option.match(target, { onNone: () => true, onSome: (id) => id === slot.versioned.record.id })
      if (slot._tag !== "Live" || !sameTarget) {
        // Ours (or someone's) tombstone, or a newer volume: finish what is left, touch nothing live.
        const reclaimed = yield* sweep(s3, layout, nameKey(name))
        if (Option.isNone(target) && reclaimed.incarnations + reclaimed.uploads === 0) {
          return yield* new VolumeNotFound({ volume: name })
        }
        if (Option.isSome(target) && slot._tag === "Live") return yield* new VolumeNotFound({ volume: name })
        return Option.none()
      }
      const { record } = slot.versioned
      if (record.isDefault) {
        return yield* new Unsupported({ operation: `removing the default volume "${record.name}"`, backend })
      }
      target = Option.some(record.id)
      // Lost to a usage update: read again and retry against the newer version.
      if (Option.isSome(yield* guard(name, Records.swap(s3, key, slot.versioned, "tombstone")))) {
        yield* sweep(s3, layout, nameKey(name))
        // A renamed volume's data lives under the name it was created with.
        if (Records.dataKeyOf(record) !== nameKey(name)) yield* sweep(s3, layout, Records.dataKeyOf(record))
        return Option.some(layout.dataPrefix(Records.dataKeyOf(record), Records.dataDirOf(record)))
      }
    }
    return yield* new VolumeNotFound({ volume: name })
  })

/**
 * Sweeps every name below the store's prefix: leftovers of removed volumes, and uploads of
 * live volumes started more than `uploadGrace` ago.
 */
export const cleanup = (
  s3: S3,
  layout: Layout,
  uploadGrace: Duration.Duration = DEFAULT_UPLOAD_GRACE
): Effect.Effect<Reclaimed, StorageError> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    // `…/data/` and `…/meta/`, whose common prefixes are the name keys.
    const dataRoot = layout.dataPrefix("", "").slice(0, -2)
    const metaRoot = layout.metaPrefix("", "").slice(0, -2)
    const [data, meta] = yield* Effect.all([incarnations(s3, dataRoot), incarnations(s3, metaRoot)], {
      concurrency: 2
    })
    const keys = [...new Set([...data, ...meta])]
    const swept = yield* Effect.forEach(
      keys,
      (key) => sweep(s3, layout, key, now - Duration.toMillis(uploadGrace)),
      { concurrency: 4 }
    )
    return swept.reduce(plus, NONE)
  })
