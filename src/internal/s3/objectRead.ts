/**
 * Reading one whole object as parallel ranged GETs: the first GET (range 0, unconditional)
 * answers the object's size and ETag along with its first part, so no HEAD is needed; every
 * later part is a ranged GET conditional on that ETag (`If-Match`), so a file replaced or
 * removed mid-read fails the read instead of mixing versions. Up to `readWindow` parts are
 * in flight or held at once, delivered in order: memory stays about `(readWindow + 1) ×
 * readPartBytes` whatever the object's size.
 */
import { Data, Effect, Option, Stream } from "effect"
import type { Scope } from "effect"
import type { Readable } from "node:stream"
import { StorageError } from "../../VolumeError.js"
import type { ObjectMetadata, S3 } from "./client.js"

/** Why a read could not deliver one consistent version of the object. */
export class ReadLost extends Data.TaggedError("ReadLost")<{
  /** The object went away or changed after the first part was answered. */
  readonly how: "removed" | "replaced"
}> {}

/** An object opened for reading: its size, and its bytes either as parts in order or whole. */
export interface OpenedObject {
  readonly size: number
  /** User metadata of the version being read. */
  readonly metadata: ObjectMetadata
  /** Parts of `readPartBytes`, at most `readWindow` fetched ahead of the consumer. */
  readonly parts: Stream.Stream<Uint8Array, StorageError | ReadLost>
  /** The whole object in one buffer, `readWindow` parts at a time, each written in place. */
  readonly whole: Effect.Effect<Uint8Array, StorageError | ReadLost>
}

/** A body that fails or stops arriving (nothing for the request timeout) fails like an unanswered request. */
const stalled = (s3: S3, key: string) => (cause?: unknown) =>
  new StorageError({
    message: `reading "${key}" from the object store failed${cause === undefined ? `: no data for ${s3.requestTimeoutMillis} ms` : ""}`,
    reason: "Unavailable",
    operation: "GetObject",
    cause
  })

/**
 * Reads `body` whole into `into`, which it must fill exactly (more or fewer bytes: the
 * object changed). Plain stream events and one re-armed timer: per-chunk work is a copy, since a
 * socket delivers a 64 MiB part in thousands of pieces.
 */
const collect = (s3: S3, key: string, body: Readable, into: Uint8Array): Effect.Effect<Uint8Array, StorageError | ReadLost> =>
  Effect.async<Uint8Array, StorageError | ReadLost>((resume) => {
    const failed = stalled(s3, key)
    const length = into.byteLength
    let offset = 0
    let settled = false
    const settle = (outcome: Effect.Effect<Uint8Array, StorageError | ReadLost>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      body.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose)
      resume(outcome)
    }
    const stop = (error: StorageError | ReadLost) => {
      settle(Effect.fail(error))
      body.destroy()
    }
    // A body that stops arriving fails like a request that is not answered.
    const timer = setTimeout(() => stop(failed()), s3.requestTimeoutMillis)
    const onData = (chunk: Uint8Array) => {
      if (offset + chunk.byteLength > length) return stop(new ReadLost({ how: "replaced" }))
      into.set(chunk, offset)
      offset += chunk.byteLength
      timer.refresh()
    }
    const onEnd = () => settle(offset === length ? Effect.succeed(into) : Effect.fail(new ReadLost({ how: "replaced" })))
    const onError = (cause: unknown) => settle(Effect.fail(failed(cause)))
    const onClose = () => settle(Effect.fail(failed(new Error("the connection closed before the body ended"))))
    body.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose)
    return Effect.sync(() => stop(new ReadLost({ how: "replaced" })))
  })

/**
 * Opens `key` for reading in parts of `partBytes`: `None` if there is no object. The first
 * part's request is open until the scope closes or the part is read.
 */
export const open = (
  s3: S3,
  key: string,
  partBytes: number = s3.readPartBytes
): Effect.Effect<Option.Option<OpenedObject>, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const first = yield* s3.getRange(key, 0, partBytes - 1, Option.none())
    if (first._tag === "Missing" || first._tag === "Changed") return Option.none()
    if (first._tag === "Unsatisfiable") {
      return Option.some({ size: 0, metadata: {}, parts: Stream.empty, whole: Effect.succeed(new Uint8Array(0)) })
    }
    const { etag, size } = first
    const lengthAt = (start: number) => Math.min(size, start + partBytes) - start
    /** One part into `into`: the open first answer, or a ranged GET pinned to its ETag. */
    const part = (start: number, into: Uint8Array): Effect.Effect<Uint8Array, StorageError | ReadLost> =>
      start === 0
        ? collect(s3, key, first.body, into)
        : Effect.scoped(Effect.flatMap(s3.getRange(key, start, start + into.byteLength - 1, Option.some(etag)), (body) => {
          switch (body._tag) {
            case "Body":
              return collect(s3, key, body.body, into)
            case "Missing":
              return Effect.fail(new ReadLost({ how: "removed" }))
            default:
              // 412, or 416 (it shrank below this part): another version.
              return Effect.fail(new ReadLost({ how: "replaced" }))
          }
        }))
    const starts = Stream.iterate(0, (start) => start + partBytes).pipe(Stream.takeWhile((start) => start < size))
    const concurrency = s3.readWindow
    return Option.some({
      size,
      metadata: first.metadata,
      parts: Stream.mapEffect(starts, (start) => part(start, new Uint8Array(lengthAt(start))), { concurrency }),
      whole: Effect.suspend(() => {
        // Not zero-filled: every byte is written by a part, or the read fails and it is dropped.
        const into: Uint8Array = Buffer.allocUnsafeSlow(size)
        // Most files are one part: no stream machinery for them.
        if (size <= partBytes) return part(0, into)
        return Stream.runForEach(
          Stream.mapEffect(starts, (start) => part(start, into.subarray(start, start + lengthAt(start))), { concurrency }),
          () => Effect.void
        ).pipe(Effect.as(into))
      })
    })
  })
