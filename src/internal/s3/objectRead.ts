/**
 * Reading one whole object as parallel ranged GETs: the first GET (range 0, unconditional)
 * answers the object's size and ETag along with its first part, so no HEAD is needed; every
 * later part is a ranged GET conditional on that ETag (`If-Match`), so a file replaced or
 * removed mid-read fails the read instead of mixing versions. Up to `readWindow` parts are
 * in flight or held at once, delivered in order: memory stays about `(readWindow + 1) ×
 * readPartBytes` whatever the object's size.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Data, Duration, Effect, Option, Stream } from "effect"
import type { Scope } from "effect"
import type { Readable } from "node:stream"
import { StorageError } from "../../VolumeError.js"
import type { S3 } from "./client.js"

/** Why a read could not deliver one consistent version of the object. */
export class ReadLost extends Data.TaggedError("ReadLost")<{
  /** `missing`: no object at the start; `removed` / `replaced`: it went away or changed meanwhile. */
  readonly how: "missing" | "removed" | "replaced"
}> {}

/** An object opened for reading: its size and its parts in order. */
export interface OpenedObject {
  readonly size: number
  readonly parts: Stream.Stream<Uint8Array, StorageError | ReadLost>
}

/** A body that fails or stops arriving (nothing for the request timeout) fails like an unanswered request. */
const stalled = (s3: S3, key: string) => (cause?: unknown) =>
  new StorageError({
    message: `reading "${key}" from the object store failed${cause === undefined ? `: no data for ${s3.requestTimeoutMillis} ms` : ""}`,
    reason: "Unavailable",
    operation: "GetObject",
    cause
  })

/** Reads `body` whole into one buffer of `length` bytes (more or fewer bytes: the object changed). */
const collect = (s3: S3, key: string, body: Readable, length: number): Effect.Effect<Uint8Array, StorageError | ReadLost> => {
  const failed = stalled(s3, key)
  const into = new Uint8Array(length)
  return NodeStream.fromReadable<StorageError>(() => body, failed).pipe(
    Stream.timeoutFail(() => failed(), Duration.millis(s3.requestTimeoutMillis)),
    Stream.runFoldEffect(0, (offset, chunk: Uint8Array) => {
      if (offset + chunk.byteLength > length) return Effect.fail(new ReadLost({ how: "replaced" }))
      into.set(chunk, offset)
      return Effect.succeed(offset + chunk.byteLength)
    }),
    Effect.flatMap((received) => received === length ? Effect.succeed(into) : Effect.fail(new ReadLost({ how: "replaced" })))
  )
}

/**
 * Opens `key` for reading: `None` if there is no object. The first part's request is open
 * until the scope closes or the part is read.
 */
export const open = (s3: S3, key: string): Effect.Effect<Option.Option<OpenedObject>, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const partBytes = s3.readPartBytes
    const first = yield* s3.getRange(key, 0, partBytes - 1, Option.none())
    if (first._tag === "Missing" || first._tag === "Changed") return Option.none()
    if (first._tag === "Unsatisfiable") return Option.some({ size: 0, parts: Stream.empty })
    const { etag, size } = first
    const lengthAt = (start: number) => Math.min(size, start + partBytes) - start
    /** One part: the open first answer, or a ranged GET pinned to the first answer's ETag. */
    const part = (start: number): Effect.Effect<Uint8Array, StorageError | ReadLost> =>
      start === 0
        ? collect(s3, key, first.body, lengthAt(0))
        : Effect.scoped(Effect.flatMap(s3.getRange(key, start, start + lengthAt(start) - 1, Option.some(etag)), (body) => {
          switch (body._tag) {
            case "Body":
              return collect(s3, key, body.body, lengthAt(start))
            case "Missing":
              return Effect.fail(new ReadLost({ how: "removed" }))
            default:
              // 412, or 416 (it shrank below this part): another version.
              return Effect.fail(new ReadLost({ how: "replaced" }))
          }
        }))
    const starts = Stream.iterate(0, (start) => start + partBytes).pipe(Stream.takeWhile((start) => start < size))
    return Option.some({ size, parts: Stream.mapEffect(starts, part, { concurrency: s3.readWindow }) })
  })
