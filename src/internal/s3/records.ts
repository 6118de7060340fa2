/**
 * Volume records: one small JSON object per volume. Creation is exclusive through
 * `If-None-Match: *` (or `If-Match` on a tombstone); every later change (the usage counter,
 * removal) is a compare-and-swap with `If-Match`. Each write carries a fresh `rev` token, so
 * when the store's answer is lost (5xx, dropped connection) re-reading the record tells
 * whether our write landed.
 *
 * A removed volume's record is not deleted but replaced by a **tombstone** (an empty
 * object): the store has no conditional DELETE (RGW 16 ignores `If-Match` on DeleteObject),
 * so a delayed delete could remove a newer volume of the same name. A tombstone is replaced
 * by compare-and-swap when the name is created again, and record keys are never deleted.
 */
import { Effect, Either, Option, Schema } from "effect"
import { Mebibytes } from "../../Size.js"
import type { StorageError } from "../../VolumeError.js"
import { VolumeAlreadyExists, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { ConditionalPut, S3 } from "./client.js"
import { corrupt, reasonOf, toStorageError, unsettled } from "./failure.js"

/** The stored form of a volume record. */
export class VolumeRecord extends Schema.Class<VolumeRecord>("VolumeRecord")({
  version: Schema.Literal(1),
  /** The display name, with the case it was created with. */
  name: Schema.String,
  /** Unique per creation of a name: the data prefix is `data/<name-key>/<id>/`. */
  id: Schema.String,
  /** Changes on every write of the record (see the module comment). */
  rev: Schema.String,
  quotaMib: Schema.NullOr(Mebibytes),
  labels: Schema.Array(Schema.Tuple(Schema.String, Schema.String)),
  /** Epoch milliseconds. */
  createdAt: Schema.Number,
  /** Apparent bytes of the volume's files, kept by every write and recounted from a listing. */
  usedBytes: Schema.Number,
  /** Counter changes since the last recount (a recount runs when it reaches a bound). */
  changes: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  /** The store's default volume cannot be removed. */
  isDefault: Schema.Boolean,
  /** Epoch milliseconds after which `prune({ expired: true })` may remove the volume. */
  expiresAt: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null, exact: true }),
  /** Epoch milliseconds of the last time a holder acquired or let go of the volume. */
  lastUsedAt: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null, exact: true }),
  /** The name key the data lives under when it is not this record's own (a renamed volume; rename.ts). */
  dataKey: Schema.optionalWith(Schema.String, { exact: true }),
  /** A rename of this volume in progress (rename.ts). */
  renamingTo: Schema.optionalWith(
    Schema.Struct({ name: Schema.String, token: Schema.String, at: Schema.Number }),
    { exact: true }
  ),
  /** The rename that created this record, until it is complete (rename.ts). */
  renamedFrom: Schema.optionalWith(Schema.Struct({ key: Schema.String, token: Schema.String }), { exact: true }),
  /**
   * The data generation: the volume's files live below `data/<name-key>/<dir>/` where `<dir>`
   * is `<id>` while this is null and `<id>.<generation>` after a restore switched the volume
   * to a new tree in one compare-and-swap of this record (snapshots.ts).
   */
  generation: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null, exact: true })
}) {}

/** The name key below which a record's data and bookkeeping live. */
export const dataKeyOf = (record: VolumeRecord): string => record.dataKey ?? nameKey(record.name)

/** The data directory (below `data/<name-key>/`) that holds the files of `record`'s volume now. */
export const dataDirOf = (record: VolumeRecord): string =>
  record.generation === null ? record.id : `${record.id}.${record.generation}`

/** The incarnation id of a data directory name (`<id>` or `<id>.<generation>`). */
export const incarnationOfDir = (dir: string): string => dir.split(".")[0] ?? ""

/** Whether `dir` has the shape of a data directory name: `<id>` or `<id>.<generation>`. */
export const isDataDir = (dir: string): boolean => /^[0-9a-f]{20}(\.[0-9a-f]{20})?$/.test(dir)

const RecordJson = Schema.parseJson(VolumeRecord)
const decodeJson = Schema.decodeUnknownEither(RecordJson)

/** Most decoded records kept for reuse (about 0.5 KiB each). */
const DECODED_BOUND = 16_384
/**
 * Decoded records by their exact JSON text. Every write of a record carries a fresh `rev`,
 * so equal text is the same version; a `list` of unchanged volumes then costs the reads but
 * not a Schema decode per record (≈50 µs each, a tenth of `list`'s CPU on a local store).
 */
const decoded = new Map<string, VolumeRecord>()

const decode = (text: string): ReturnType<typeof decodeJson> => {
  const known = decoded.get(text)
  if (known !== undefined) return Either.right(known)
  const result = decodeJson(text)
  if (result._tag === "Right") {
    if (decoded.size >= DECODED_BOUND) decoded.clear()
    decoded.set(text, result.right)
  }
  return result
}
const encode = Schema.encodeSync(RecordJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh random token (ids and revisions). */
export const token = (): string => crypto.randomUUID().replace(/-/g, "").slice(0, 20)

/** Whether `text` has the shape of a {@link token} (ids of incarnations). */
export const isToken = (text: string): boolean => /^[0-9a-f]{20}$/.test(text)

export const encodeRecord = (record: VolumeRecord): Uint8Array => encoder.encode(encode(record))

/** A record as read, with the ETag a CAS update must match. */
export interface Versioned {
  readonly record: VolumeRecord
  readonly etag: string
}

/** What a record key holds: nothing, a removed volume's tombstone, or a live record. */
export type Slot =
  | { readonly _tag: "Absent" }
  | { readonly _tag: "Tombstone"; readonly etag: string }
  | { readonly _tag: "Live"; readonly versioned: Versioned }

/** What the record key `key` holds. */
export const readSlot = (s3: S3, key: string): Effect.Effect<Slot, StorageError> =>
  Effect.flatMap(s3.get(key), (body): Effect.Effect<Slot, StorageError> => {
    if (Option.isNone(body)) return Effect.succeed({ _tag: "Absent" })
    if (body.value.bytes.byteLength === 0) return Effect.succeed({ _tag: "Tombstone", etag: body.value.etag })
    const decoded = decode(decoder.decode(body.value.bytes))
    return decoded._tag === "Right"
      ? Effect.succeed({ _tag: "Live", versioned: { record: decoded.right, etag: body.value.etag } })
      : Effect.fail(corrupt("GetObject", key, decoded.left.message, decoded.left))
  })

/** The live record at `key`, if there is one. */
export const read = (s3: S3, key: string): Effect.Effect<Option.Option<Versioned>, StorageError> =>
  Effect.map(readSlot(s3, key), (slot) => slot._tag === "Live" ? Option.some(slot.versioned) : Option.none())

/** Pause between attempts of a contended CAS loop (grows, with jitter, to about 200 ms). */
const contentionPause = (attempt: number) =>
  Effect.sleep(Math.min(200, 5 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random()))

/** Most attempts of one CAS loop; each lost race means someone else made progress. */
const MAX_ATTEMPTS = 60

/**
 * Creates `record` at `key` unless a live record exists there: exactly one of any number of
 * concurrent creators (on any machine) succeeds; the others get `VolumeAlreadyExists`. A
 * tombstone is replaced by compare-and-swap.
 */
export const create = (
  s3: S3,
  key: string,
  record: VolumeRecord
): Effect.Effect<Versioned, VolumeAlreadyExists | StorageError> =>
  Effect.gen(function*() {
    const body = encodeRecord(record)
    let condition: { readonly ifNoneMatch: "*" } | { readonly ifMatch: string } = { ifNoneMatch: "*" }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const outcome: ConditionalPut = yield* s3.putConditional(key, body, condition)
      // RGW returns the ETag of a simple PUT; re-read only if it did not.
      if (outcome._tag === "Written" && Option.isSome(outcome.etag)) return { record, etag: outcome.etag.value }
      // Lost the race, or the answer was lost: whoever's record is there now decides.
      const current = yield* readSlot(s3, key)
      switch (current._tag) {
        case "Live":
          if (current.versioned.record.id === record.id) return current.versioned
          return yield* new VolumeAlreadyExists({ volume: record.name })
        case "Tombstone":
          condition = { ifMatch: current.etag }
          break
        case "Absent":
          condition = { ifNoneMatch: "*" }
      }
      if (outcome._tag !== "Written") yield* contentionPause(attempt)
    }
    return yield* unsettled("creating the volume record", key, MAX_ATTEMPTS)
  })

/**
 * One compare-and-swap of the record from `known` to `next`: the new version, or `None`
 * when someone else changed the record first. `VolumeNotFound` when the record is gone.
 */
export const swap = (
  s3: S3,
  key: string,
  known: Versioned,
  next: VolumeRecord | "tombstone"
): Effect.Effect<Option.Option<Versioned | "tombstone">, VolumeNotFound | StorageError> =>
  Effect.gen(function*() {
    const notFound = new VolumeNotFound({ volume: known.record.name })
    const body = next === "tombstone" ? new Uint8Array(0) : encodeRecord(next)
    const outcome = yield* s3.putConditional(key, body, { ifMatch: known.etag })
    switch (outcome._tag) {
      case "Written":
        if (next === "tombstone") return Option.some("tombstone" as const)
        if (Option.isSome(outcome.etag)) return Option.some({ record: next, etag: outcome.etag.value })
        break
      case "PreconditionFailed":
        return Option.none()
      case "Missing":
        return yield* notFound
      case "Unknown":
        break
    }
    // Written without an ETag, or the answer was lost: did our revision land?
    const reread = yield* readSlot(s3, key)
    if (reread._tag === "Absent") return yield* notFound
    if (reread._tag === "Tombstone") {
      if (next === "tombstone") return Option.some("tombstone" as const)
      return yield* notFound
    }
    if (next !== "tombstone" && reread.versioned.record.rev === next.rev) return Option.some(reread.versioned)
    // Not landed. A lost race (RGW answers concurrent losers with 500) is retried by the
    // caller; a store that is throttling or not answering is reported at once.
    if (outcome._tag === "Unknown" && reasonOf(outcome.failure) !== "Unknown") {
      return yield* toStorageError(outcome.failure)
    }
    return Option.none()
  })

/**
 * Applies `change` to the record of the volume incarnation `id` by compare-and-swap,
 * starting from `known` when the caller has just read it. `VolumeNotFound` when the
 * record is gone or belongs to another incarnation.
 */
export const update = (
  s3: S3,
  key: string,
  id: string,
  name: string,
  change: (record: VolumeRecord) => VolumeRecord,
  known: Option.Option<Versioned> = Option.none()
): Effect.Effect<Versioned, VolumeNotFound | StorageError> =>
  Effect.gen(function*() {
    let current = known
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (Option.isNone(current)) current = yield* read(s3, key)
      if (Option.isNone(current) || current.value.record.id !== id) return yield* new VolumeNotFound({ volume: name })
      const next = new VolumeRecord({ ...change(current.value.record), rev: token() })
      const swapped = yield* swap(s3, key, current.value, next)
      if (Option.isSome(swapped) && swapped.value !== "tombstone") return swapped.value
      // Someone else changed it first: start again from their version.
      current = Option.none()
      if (attempt > 0) yield* contentionPause(attempt)
    }
    return yield* unsettled("updating the volume record", key, MAX_ATTEMPTS)
  })
