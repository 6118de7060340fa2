/**
 * Intent records of tree operations: before a directory `rename`, `copy` or `removeDir`
 * touches its first object it stores `{ op, from, to }` below the volume's meta prefix, and
 * deletes it when the operation is done. Every tree operation is written to be repeatable
 * (copy each object still at the source, then delete the sources, the source marker last),
 * so finishing an interrupted one means running it again: an intent left behind is **rolled
 * forward** by a retry of the same operation, or by the next tree operation on the volume
 * (any machine) once it is older than `INTENT_GRACE`, followed by a recount of the usage.
 */
import { Clock, Duration, Effect, Option, Schema } from "effect"
import type { StorageError } from "../../VolumeError.js"
import type { S3 } from "./client.js"
import { corrupt } from "./failure.js"
import * as Records from "./records.js"

/** Age after which another operation treats an intent as abandoned and rolls it forward. */
export const INTENT_GRACE = Duration.minutes(1)

export const TreeOp = Schema.Literal("rename", "copy", "removeDir")
export type TreeOp = typeof TreeOp.Type

/** The stored form of an intent. */
export class Intent extends Schema.Class<Intent>("Intent")({
  op: TreeOp,
  from: Schema.Array(Schema.String),
  /** Empty for `removeDir`. */
  to: Schema.Array(Schema.String),
  /** Epoch milliseconds when the operation started. */
  startedAt: Schema.Number
}) {}

const IntentJson = Schema.parseJson(Intent)
const decode = Schema.decodeUnknownEither(IntentJson)
const encode = Schema.encodeSync(IntentJson)

/** An intent as stored, with its key. */
export interface Stored {
  readonly key: string
  readonly intent: Intent
}

const samePath = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => a.length === b.length && a.every((s, i) => s === b[i])

export const same = (intent: Intent, op: TreeOp, from: ReadonlyArray<string>, to: ReadonlyArray<string>) =>
  intent.op === op && samePath(intent.from, from) && samePath(intent.to, to)

export const make = (s3: S3, metaPrefix: string) => {
  const prefix = `${metaPrefix}intent-`

  /** Every intent of the volume (one LIST, plus a GET per intent found). */
  const pending: Effect.Effect<ReadonlyArray<Stored>, StorageError> = Effect.gen(function*() {
    const listing = yield* s3.list(prefix)
    const found = yield* Effect.forEach(listing.objects, (object) =>
      Effect.flatMap(s3.get(object.key), (body) => {
        if (Option.isNone(body)) return Effect.succeed(Option.none<Stored>())
        const decoded = decode(new TextDecoder().decode(body.value.bytes))
        return decoded._tag === "Right"
          ? Effect.succeed(Option.some({ key: object.key, intent: decoded.right }))
          : Effect.fail(corrupt("GetObject", object.key, decoded.left.message, decoded.left))
      }), { concurrency: 8 })
    return found.flatMap(Option.toArray)
  })

  /** Stores the intent of `op`; returns its key. */
  const begin = (op: TreeOp, from: ReadonlyArray<string>, to: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const key = `${prefix}${startedAt.toString(36)}-${Records.token()}`
      const intent = new Intent({ op, from, to, startedAt })
      yield* s3.put(key, new TextEncoder().encode(encode(intent)), "application/json")
      return key
    })

  const end = (key: string) => s3.delete(key)

  /** The intents another operation may roll forward now: older than the grace period. */
  const abandoned = (all: ReadonlyArray<Stored>) =>
    Effect.map(Clock.currentTimeMillis, (now) =>
      all.filter((stored) => now - stored.intent.startedAt > Duration.toMillis(INTENT_GRACE)))

  return { pending, begin, end, abandoned } as const
}

export type Intents = ReturnType<typeof make>
