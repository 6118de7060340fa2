/**
 * `writeStream`'s writer on S3: bytes collect in an 8 MiB part buffer; a write that stays
 * within one part is published by one conditional PUT (`Entries.writeWhole`), a larger one
 * becomes a multipart upload (3 parts in flight) that is visible only on completion and is
 * aborted when the scope closes first. An upload whose process was killed is aborted by
 * `cleanup` or by removing the volume, and counts in the allocated usage until then.
 */
import { Effect, Fiber, Option } from "effect"
import type { Scope } from "effect"
import type { StorageError, VolumeFsFailure } from "../../VolumeError.js"
import type { FsWriter } from "../fsDriver.js"
import type * as Paths from "../paths.js"
import type { ObjectMetadata } from "./client.js"
import type { Entries } from "./entries.js"
import { fsError } from "./entries.js"

/** Size of a multipart upload's parts (S3 wants at least 5 MiB for all but the last). */
export const PART_BYTES = 8 * 1024 * 1024
/** Part uploads of one `writeStream` running at once (memory: this many parts plus one). */
const PARTS_IN_FLIGHT = 3

export const open = (
  entries: Entries,
  path: Paths.NonRootSegments,
  metadata?: ObjectMetadata
): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const { s3 } = entries
    yield* entries.prepareWrite(path)
    const key = entries.fileOf(path)
    const scope = yield* Effect.scope
    const state = {
      open: true,
      /** The part being filled; it grows by doubling up to `PART_BYTES`. */
      buffer: new Uint8Array(0),
      filled: 0,
      total: 0,
      uploadId: Option.none<string>(),
      nextPart: 1,
      parts: [] as Array<{ readonly PartNumber: number; readonly ETag: string }>,
      /** Part uploads still running, oldest first. */
      inflight: [] as Array<Fiber.RuntimeFiber<void, StorageError>>,
      completed: false
    }
    // An upload that was started but not completed is aborted when the scope closes (after
    // the part uploads forked into the scope are interrupted), so its parts are discarded
    // and nothing ever appears at the path.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        state.open = false
        state.buffer = new Uint8Array(0)
        return Option.isSome(state.uploadId) && !state.completed ? s3.abortUpload(key, state.uploadId.value) : Effect.void
      })
    )
    const closed = (what: string) => fsError(path, "Io", `${what} after the write was closed`)

    /** Starts uploading the filled part (and the upload, on the first part); at most a few run at once. */
    const flushPart = Effect.gen(function*() {
      const body = state.buffer.subarray(0, state.filled)
      state.buffer = new Uint8Array(0)
      state.filled = 0
      const uploadId = Option.isSome(state.uploadId) ? state.uploadId.value : yield* s3.createUpload(key, metadata)
      state.uploadId = Option.some(uploadId)
      const partNumber = state.nextPart++
      const upload = Effect.map(s3.uploadPart(key, uploadId, partNumber, body), (etag) => {
        state.parts.push({ PartNumber: partNumber, ETag: etag })
      })
      state.inflight.push(yield* Effect.forkIn(upload, scope))
      if (state.inflight.length >= PARTS_IN_FLIGHT) yield* Fiber.join(state.inflight.shift()!)
    })

    /** Appends to the current part, flushing every full one. */
    const append = (chunk: Uint8Array): Effect.Effect<void, StorageError> =>
      Effect.gen(function*() {
        let offset = 0
        while (offset < chunk.byteLength) {
          const wanted = Math.min(PART_BYTES, state.filled + chunk.byteLength - offset)
          if (state.buffer.byteLength < wanted) {
            const grown = new Uint8Array(Math.min(PART_BYTES, Math.max(wanted, 2 * state.buffer.byteLength, 64 * 1024)))
            grown.set(state.buffer.subarray(0, state.filled))
            state.buffer = grown
          }
          // A private copy: the caller may reuse its buffer.
          const take = Math.min(chunk.byteLength - offset, PART_BYTES - state.filled)
          state.buffer.set(chunk.subarray(offset, offset + take), state.filled)
          state.filled += take
          offset += take
          if (state.filled === PART_BYTES) yield* flushPart
        }
      })

    const writer: FsWriter = {
      write: (chunk) =>
        Effect.suspend((): Effect.Effect<void, VolumeFsFailure> => {
          if (!state.open) return Effect.fail(closed("write"))
          state.total += chunk.byteLength
          return append(chunk)
        }),
      commit: Effect.suspend((): Effect.Effect<void, VolumeFsFailure> => {
        if (!state.open) return Effect.fail(closed("commit"))
        state.open = false
        // Up to one part: a whole-buffer write (conditional, exact usage).
        if (Option.isNone(state.uploadId)) {
          const data = state.buffer.subarray(0, state.filled)
          state.buffer = new Uint8Array(0)
          return entries.writeWhole(path, data, metadata)
        }
        return Effect.gen(function*() {
          if (state.filled > 0) yield* flushPart
          yield* Effect.forEach(state.inflight.splice(0), Fiber.join, { discard: true })
          state.buffer = new Uint8Array(0)
          // Checked again now, just before completing: the target or its parents may have
          // changed while bytes arrived.
          const { parents, target, versioned } = yield* entries.prepareWrite(path)
          yield* entries.createMarkers(parents.missing)
          const parts = [...state.parts].sort((a, b) => a.PartNumber - b.PartNumber)
          const uploadId = state.uploadId.pipe(Option.getOrElse(() => ""))
          // Completion is not conditional on RGW 16: the bytes replaced are those probed just
          // now (a concurrent writer of the same file can make this delta wrong; the
          // periodic recount bounds that drift). From completion on, nothing is interruptible.
          yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              yield* restore(s3.completeUpload(key, uploadId, parts))
              state.completed = true
              const head = yield* s3.head(key)
              const etag = Option.match(head, { onNone: () => "", onSome: (h) => h.etag })
              const undo = target.kind === "missing" ? entries.deleteIfOurs(key, etag) : Effect.void
              yield* entries.guardMarkers(path, parents.missing, undo)
              if (target.kind === "missing") yield* entries.guardNewFile(path, etag)
              const replaced = target.kind === "file" ? target.head.size : 0
              yield* entries.settle(key, state.total - replaced, Option.some(versioned))
            })
          )
        })
      })
    }
    return writer
  })

