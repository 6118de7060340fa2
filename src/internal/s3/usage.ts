/**
 * A volume's usage counter: `usedBytes` in its record, moved by compare-and-swap after each
 * change and **recountable from a listing** of the data prefix, which is the source of truth.
 *
 * - Deltas of concurrent writers in one process are coalesced into one compare-and-swap, so
 *   contention on the record grows with the number of machines, not of writers.
 * - Applying a delta is a state transition: it runs uninterruptibly once the object landed.
 * - A delta that cannot be applied (the store busy or unreachable after the object landed)
 *   is not a failed write: it stays pending in this process and travels with the next delta.
 * - The record counts its changes since the last recount; at `RECOUNT_EVERY` (or when a
 *   delta would take the counter below zero, a sure sign of drift) the counter is recounted.
 *   Whatever a crash or a race left wrong is therefore corrected within a bounded number of
 *   changes, and `recount` corrects it on demand.
 */
import { Deferred, Effect, Either, Option } from "effect"
import type { StorageError } from "../../VolumeError.js"
import { VolumeNotFound } from "../../VolumeError.js"
import type { S3 } from "./client.js"
import { unsettled } from "./failure.js"
import * as Records from "./records.js"
import type { Versioned } from "./records.js"

/** Counter changes after which the counter is recounted from a listing. */
export const RECOUNT_EVERY = 128

/** Attempts of a recount whose compare-and-swap keeps losing to concurrent writers. */
const RECOUNT_ATTEMPTS = 5

/** What a listing says a volume holds. */
export interface UsageReport {
  /** Apparent bytes of the volume's files. */
  readonly logicalBytes: number
  /** Logical bytes plus the parts of unfinished multipart uploads (reclaimed by cleanup). */
  readonly allocatedBytes: number
  readonly files: number
  /** Unfinished multipart uploads below the volume. */
  readonly pendingUploads: number
}

/** One volume incarnation's counter. */
export interface Counter {
  /** Moves the counter by `delta` bytes (uninterruptible). */
  readonly add: (delta: number, known?: Option.Option<Versioned>) => Effect.Effect<void, VolumeNotFound | StorageError>
  /** Recounts from a listing and stores the figure; returns what the listing found. */
  readonly recount: Effect.Effect<UsageReport, VolumeNotFound | StorageError>
}

export interface CounterTarget {
  readonly recordKey: string
  readonly id: string
  readonly volume: string
  readonly dataPrefix: string
}

/** Sums a listing of a data prefix: directory markers (keys ending in `/`) hold no bytes. */
export const sumListing = (objects: ReadonlyArray<{ readonly key: string; readonly size: number }>) =>
  objects.reduce(
    (sum, object) => object.key.endsWith("/") ? sum : { bytes: sum.bytes + object.size, files: sum.files + 1 },
    { bytes: 0, files: 0 }
  )

/** What the store holds for a volume, counted from listings (no record is changed). */
export const measure = (s3: S3, dataPrefix: string): Effect.Effect<UsageReport, StorageError> =>
  Effect.gen(function*() {
    const [listing, uploads] = yield* Effect.all([s3.list(dataPrefix), s3.listUploads(dataPrefix)], {
      concurrency: 2
    })
    const parts = yield* Effect.forEach(uploads, s3.uploadedBytes, { concurrency: 8 })
    const { bytes, files } = sumListing(listing.objects)
    return {
      logicalBytes: bytes,
      allocatedBytes: bytes + parts.reduce((a, b) => a + b, 0),
      files,
      pendingUploads: uploads.length
    }
  })

const makeCounter = (s3: S3, target: CounterTarget): Counter => {
  const { dataPrefix, id, recordKey, volume } = target
  const notFound = () => new VolumeNotFound({ volume })
  const state = {
    /** Bytes added by this process and not yet in the record. */
    pending: 0,
    waiters: [] as Array<Deferred.Deferred<void, VolumeNotFound | StorageError>>
  }
  const lock = Effect.unsafeMakeSemaphore(1)

  const loadLive = Effect.flatMap(Records.read(s3, recordKey), (found) =>
    Option.isSome(found) && found.value.record.id === id ? Effect.succeed(found.value) : Effect.fail(notFound()))

  /** Whether `record` still points at this counter's generation (a restore moves it to a new one). */
  const current = (record: Records.VolumeRecord) => dataPrefix.endsWith(`/${Records.dataDirOf(record)}/`)

  const recount: Counter["recount"] = Effect.gen(function*() {
    for (let attempt = 0; attempt < RECOUNT_ATTEMPTS; attempt++) {
      const known = yield* loadLive
      const report = yield* measure(s3, dataPrefix)
      // A replaced generation's count is not the volume's any more.
      if (!current(known.record)) return report
      const next = new Records.VolumeRecord({
        ...known.record,
        usedBytes: report.logicalBytes,
        changes: 0,
        rev: Records.token()
      })
      // Lost to a concurrent change while listing: list again, so its bytes are included.
      if (Option.isSome(yield* Records.swap(s3, recordKey, known, next))) return report
    }
    return yield* unsettled("recounting the usage", recordKey, RECOUNT_ATTEMPTS)
  })

  /** Applies `delta` to the record; recounts when the counter drifted or is due. */
  const apply = (delta: number, known: Option.Option<Versioned>) =>
    Effect.gen(function*() {
      let drifted = false
      const updated = yield* Records.update(s3, recordKey, id, volume, (record) => {
        // A write that landed in a generation a restore replaced changed nothing that counts.
        if (!current(record)) return record
        drifted = record.usedBytes + delta < 0
        return new Records.VolumeRecord({
          ...record,
          usedBytes: Math.max(0, record.usedBytes + delta),
          changes: record.changes + 1
        })
      }, known)
      if (drifted || updated.record.changes % RECOUNT_EVERY === 0) {
        // Best effort: a recount that keeps losing to writers is tried again RECOUNT_EVERY
        // changes later (a successful one resets `changes` to 0).
        yield* Effect.ignore(Effect.catchTag(recount, "VolumeNotFound", () => Effect.void))
      }
    })

  /**
   * What a writer learns from applying its delta: the volume is gone, or done. A store that
   * is busy or unreachable does not fail the write (its object landed): the delta stays
   * pending in this process and travels with the next one (or the next recount fixes it).
   */
  const settle = (delta: number, result: Either.Either<void, VolumeNotFound | StorageError>) => {
    if (Either.isRight(result)) return Effect.void
    if (result.left._tag === "VolumeNotFound") return Effect.fail(result.left)
    state.pending += delta
    return Effect.void
  }

  /** Applies everything pending; the waiters taken share the outcome. */
  const flush = Effect.suspend(() => {
    const waiters = state.waiters.splice(0)
    if (waiters.length === 0) return Effect.void
    const delta = state.pending
    state.pending = 0
    return Effect.either(delta === 0 ? Effect.void : apply(delta, Option.none())).pipe(
      Effect.flatMap((result) => {
        const outcome = settle(delta, result)
        return Effect.forEach(waiters, (w) => Deferred.complete(w, outcome), { discard: true })
      })
    )
  })

  const add: Counter["add"] = (delta, known = Option.none()) =>
    Effect.uninterruptible(Effect.gen(function*() {
      if (delta === 0 && Option.isSome(known)) return
      // Alone: one direct compare-and-swap from the version the caller just read.
      if (state.waiters.length === 0 && state.pending === 0 && Option.isSome(known)) {
        const direct = yield* lock.withPermitsIfAvailable(1)(Effect.either(apply(delta, known)))
        if (Option.isSome(direct)) return yield* settle(delta, direct.value)
      }
      const done = yield* Deferred.make<void, VolumeNotFound | StorageError>()
      state.pending += delta
      state.waiters.push(done)
      yield* lock.withPermits(1)(flush)
      yield* Deferred.await(done)
    }))

  return { add, recount }
}

/**
 * One counter per volume incarnation and name in this process, shared by every `fs()` of
 * it (a renamed volume keeps its data prefix but its record moves to another key).
 */
export const makeCounters = (s3: S3) => {
  const counters = new Map<string, Counter>()
  const keyOf = (target: CounterTarget) => `${target.recordKey}\n${target.dataPrefix}`
  return {
    counterOf: (target: CounterTarget): Counter => {
      let counter = counters.get(keyOf(target))
      if (counter === undefined) {
        counter = makeCounter(s3, target)
        counters.set(keyOf(target), counter)
      }
      return counter
    },
    forget: (dataPrefix: string) => {
      for (const key of counters.keys()) if (key.endsWith(`\n${dataPrefix}`)) counters.delete(key)
    }
  }
}
