/**
 * Volume records: one small JSON object per volume. Creation is exclusive through
 * `If-None-Match: *`; every later change (the usage counter) is a compare-and-swap with
 * `If-Match`. Each write carries a fresh `rev` token, so when the store's answer is lost
 * (5xx, dropped connection) re-reading the record tells whether our write landed.
 */
import { Effect, Option, Schema } from "effect"
import { Mebibytes } from "../../Size.js"
import { StorageError, VolumeAlreadyExists, VolumeNotFound } from "../../VolumeError.js"
import type { ConditionalPut, S3 } from "./client.js"

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
  /** Apparent bytes of the volume's files, kept by every write. */
  usedBytes: Schema.Number,
  /** The store's default volume cannot be removed. */
  isDefault: Schema.Boolean,
  /** Epoch milliseconds after which `prune({ expired: true })` may remove the volume. */
  expiresAt: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null, exact: true }),
  /** Epoch milliseconds of the last time a holder acquired or let go of the volume. */
  lastUsedAt: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null, exact: true })
}) {}

const RecordJson = Schema.parseJson(VolumeRecord)
const decode = Schema.decodeUnknownEither(RecordJson)
const encode = Schema.encodeSync(RecordJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh random token (ids and revisions). */
export const token = (): string => crypto.randomUUID().replace(/-/g, "").slice(0, 20)

export const encodeRecord = (record: VolumeRecord): Uint8Array => encoder.encode(encode(record))

/** A record as read, with the ETag a CAS update must match. */
export interface Versioned {
  readonly record: VolumeRecord
  readonly etag: string
}

/** The record at `key`, if there is one. */
export const read = (s3: S3, key: string): Effect.Effect<Option.Option<Versioned>, StorageError> =>
  Effect.flatMap(s3.get(key), (body) => {
    if (Option.isNone(body)) return Effect.succeed(Option.none())
    const decoded = decode(decoder.decode(body.value.bytes))
    return decoded._tag === "Right"
      ? Effect.succeed(Option.some({ record: decoded.right, etag: body.value.etag }))
      : Effect.fail(
        new StorageError({ message: `the volume record "${key}" is not valid: ${decoded.left.message}`, cause: decoded.left })
      )
  })

/** Pause between attempts of a contended CAS loop (grows, with jitter, to about 200 ms). */
const contentionPause = (attempt: number) =>
  Effect.sleep(Math.min(200, 5 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random()))

/** Most attempts of one CAS loop; each lost race means someone else made progress. */
const MAX_ATTEMPTS = 60

/**
 * Creates `record` at `key` unless a record exists there: exactly one of any number of
 * concurrent creators (on any machine) succeeds; the others get `VolumeAlreadyExists`.
 */
export const create = (
  s3: S3,
  key: string,
  record: VolumeRecord
): Effect.Effect<Versioned, VolumeAlreadyExists | StorageError> =>
  Effect.gen(function*() {
    const body = encodeRecord(record)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const outcome: ConditionalPut = yield* s3.putConditional(key, body, { ifNoneMatch: "*" })
      if (outcome._tag === "Written") {
        // RGW returns the ETag of a simple PUT; re-read only if it did not.
        if (Option.isSome(outcome.etag)) return { record, etag: outcome.etag.value }
      }
      // Lost the race, or the answer was lost: whoever's record is there now decides.
      const current = yield* read(s3, key)
      if (Option.isSome(current)) {
        if (current.value.record.id === record.id) return current.value
        return yield* new VolumeAlreadyExists({ volume: record.name })
      }
      // Nothing there: our PUT did not land (or the winner was removed meanwhile); try again.
      yield* contentionPause(attempt)
    }
    return yield* new StorageError({ message: `creating the volume record "${key}" did not settle after ${MAX_ATTEMPTS} attempts` })
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
      const outcome = yield* s3.putConditional(key, encodeRecord(next), { ifMatch: current.value.etag })
      if (outcome._tag === "Written" && Option.isSome(outcome.etag)) return { record: next, etag: outcome.etag.value }
      if (outcome._tag === "PreconditionFailed") {
        // Someone else changed it first: start again from their version.
        current = Option.none()
        continue
      }
      // Written without an ETag, or the answer was lost: did our revision land?
      const reread = yield* read(s3, key)
      if (Option.isSome(reread) && reread.value.record.rev === next.rev) return reread.value
      current = reread
      yield* contentionPause(attempt)
    }
    return yield* new StorageError({ message: `updating the volume record "${key}" did not settle after ${MAX_ATTEMPTS} attempts` })
  })
