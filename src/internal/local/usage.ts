/**
 * The usage account of the local backend's directory volumes (docs/design.md, "Usage and
 * quota accounting"). SQLite holds each volume's `used_bytes`, `allocated_bytes` and
 * `files`, shared by every process on the home; the directory driver reports every change
 * it makes, and this module adds the changes to the account:
 *
 * - Without a quota, changes collect in memory and are added in one statement shortly
 *   after (and before this process's own `get`/`list`, and when the backend closes), so a
 *   small write costs no database write.
 * - With a quota, a change that grows the volume first reserves its bytes with one
 *   conditional statement (`used + growth <= quota`, atomic across processes) and is
 *   settled with its real size right after.
 *
 * Before its first change to a volume a backend instance records a marker row
 * (`usage_writers`). Changes a crashed process never added leave its marker behind; the
 * next `get` sees a marker of a dead process and re-measures. Every re-measurement gives
 * the account a new random `usage_generation`; changes collected under an older one are
 * dropped instead of being added to a figure that already contains them.
 */
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option, Queue, Random } from "effect"
import type { Scope } from "effect"
import { randomUUID } from "node:crypto"
import { QuotaExceeded } from "../../VolumeError.js"
import type { StorageError } from "../../VolumeError.js"
import * as Usage from "../usage.js"
import type { UsageSink } from "../usage.js"
import type { UsageAccount } from "../volumeFs.js"
import { orStorageError } from "./database.js"
import * as Liveness from "../liveness.js"
import * as Grants from "./grants.js"

/** How long changes may wait in memory before they are added to the account. */
const FLUSH_DELAY = "50 millis"

/** This instance's view of one volume's account. */
interface Entry {
  /** Changes not yet added to the account. */
  pending: Usage.Usage
  /** The account generation `pending` belongs to; `undefined` until the marker is recorded. */
  generation: number | undefined
}

/** The stored account of one volume. */
export interface StoredUsage extends Usage.Usage {
  /** Set while (or since) a sandbox held the volume: its writes are not in the account. */
  readonly stale: boolean
}

export interface UsageAccounts {
  /** The account of volume `key` for its `VolumeFs`, and the sink its driver reports to. */
  readonly accountOf: (key: string, volume: string) => { readonly account: UsageAccount; readonly onChange: UsageSink }
  /** Adds this instance's collected changes of `key` to the account now. */
  readonly flush: (key: string) => Effect.Effect<void, StorageError>
  /** Adds every collected change now. */
  readonly flushAll: Effect.Effect<void, StorageError>
  /** Whether the stored figures of `key` cannot be trusted: stale, or a writer died with changes. */
  readonly needsMeasure: (key: string, stored: StoredUsage) => Effect.Effect<boolean, StorageError>
  /**
   * Stores a fresh measurement of `key` under a new generation, plus the unspent quota grants
   * of live file servers (grants.ts); `stale` stays set when a sandbox still holds the
   * volume. Markers of dead writers are deleted. Yields the usage stored.
   */
  readonly store: (key: string, usage: Usage.Usage, stillHeld: boolean) => Effect.Effect<Usage.Usage, StorageError>
  /** Forgets a volume that was removed. */
  readonly forget: (key: string) => void
  /** A fresh generation for a new volume's account. */
  readonly newGeneration: Effect.Effect<number>
}

const generation = Random.nextIntBetween(1, Number.MAX_SAFE_INTEGER)

/**
 * The accounts of one backend instance. Lives in the backend layer's scope: a fiber adds
 * collected changes in the background, and closing the scope adds the rest and deletes
 * this instance's markers.
 */
export const make: Effect.Effect<UsageAccounts, never, SqlClient.SqlClient | Scope.Scope> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const self = yield* Liveness.current
  const instance = randomUUID()
  const entries = new Map<string, Entry>()
  const wake = yield* Queue.sliding<void>(1)

  const entryOf = (key: string): Entry => {
    let entry = entries.get(key)
    if (entry === undefined) {
      entry = { pending: Usage.zero, generation: undefined }
      entries.set(key, entry)
    }
    return entry
  }

  /** Records the marker (once per volume and instance) and learns the account's generation. */
  const prepare = (key: string) =>
    Effect.suspend(() => {
      const entry = entryOf(key)
      if (entry.generation !== undefined) return Effect.void
      return Effect.gen(function*() {
        yield* sql`INSERT OR IGNORE INTO usage_writers (key, pid, pid_start, instance)
          VALUES (${key}, ${self.pid}, ${self.start}, ${instance})`.pipe(orStorageError("recording a usage marker"))
        const rows = yield* sql<{ readonly usage_generation: number }>`SELECT usage_generation FROM volumes
          WHERE key = ${key}`.pipe(orStorageError("reading a usage generation"))
        entry.generation = rows[0]?.usage_generation ?? 0
      })
    })

  /** Adds `change` to the stored account (if it is still the generation of `entry`). */
  const apply = (key: string, entry: Entry, change: Usage.Usage) =>
    Effect.gen(function*() {
      if (entry.generation === undefined) return
      const updated = yield* sql<{ readonly key: string }>`UPDATE volumes
        SET used_bytes = used_bytes + ${change.logicalBytes},
            allocated_bytes = allocated_bytes + ${change.allocatedBytes},
            files = files + ${change.files}
        WHERE key = ${key} AND usage_generation = ${entry.generation}
        RETURNING key`.pipe(orStorageError("updating the usage account"))
      // Re-measured (or removed) meanwhile: the measurement already holds these changes.
      if (updated.length === 0) entry.generation = undefined
    })

  const flush = (key: string) =>
    Effect.suspend(() => {
      const entry = entries.get(key)
      if (entry === undefined || Usage.isZero(entry.pending)) return Effect.void
      const change = entry.pending
      entry.pending = Usage.zero
      return apply(key, entry, change).pipe(
        Effect.tapError(() => Effect.sync(() => (entry.pending = Usage.add(entry.pending, change))))
      )
    })

  const flushAll = Effect.suspend(() => Effect.forEach(Array.from(entries.keys()), flush, { discard: true }))

  yield* Queue.take(wake).pipe(
    Effect.zipRight(Effect.sleep(FLUSH_DELAY)),
    Effect.zipRight(flushAll.pipe(Effect.catchAll((error) => Effect.logWarning("could not update usage accounts", error)))),
    Effect.forever,
    Effect.forkScoped
  )
  yield* Effect.addFinalizer(() =>
    flushAll.pipe(
      Effect.zipRight(
        sql`DELETE FROM usage_writers WHERE pid = ${self.pid} AND pid_start = ${self.start} AND instance = ${instance}`.pipe(
          orStorageError("deleting usage markers")
        )
      ),
      // A marker left behind only costs one re-measurement.
      Effect.catchAll((error) => Effect.logWarning("could not close the usage accounts", error))
    )
  )

  const record = (key: string): UsageSink => (change) => {
    const entry = entryOf(key)
    const wasIdle = Usage.isZero(entry.pending)
    entry.pending = Usage.add(entry.pending, change)
    if (wasIdle) Queue.unsafeOffer(wake, undefined)
  }

  const readUsed = (key: string) =>
    sql<{ readonly used_bytes: number; readonly usage_generation: number }>`SELECT used_bytes, usage_generation
      FROM volumes WHERE key = ${key}`.pipe(
      orStorageError("reading the usage account"),
      Effect.map((rows) => Option.fromNullable(rows[0]))
    )

  const accountOf = (key: string, volume: string) => {
    const entry = entryOf(key)
    const used = Effect.map(readUsed(key), (row) =>
      Option.match(row, {
        onNone: () => 0,
        onSome: (r) => r.used_bytes + (r.usage_generation === entry.generation ? entry.pending.logicalBytes : 0)
      }))
    const reserve = (
      growth: number,
      quota: number,
      alsoReserved: number
    ): Effect.Effect<void, StorageError | QuotaExceeded> =>
      Effect.gen(function*() {
        yield* prepare(key)
        // Collected changes go in with the reservation: a removal just made frees its bytes.
        const change = entry.pending
        entry.pending = Usage.zero
        const reserved = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET used_bytes = used_bytes + ${change.logicalBytes + growth},
              allocated_bytes = allocated_bytes + ${change.allocatedBytes},
              files = files + ${change.files}
          WHERE key = ${key} AND usage_generation = ${entry.generation ?? 0}
            AND used_bytes + ${change.logicalBytes + growth + alsoReserved} <= ${quota}
          RETURNING key`.pipe(
          orStorageError("reserving quota"),
          Effect.tapError(() => Effect.sync(() => (entry.pending = Usage.add(entry.pending, change))))
        )
        if (reserved.length > 0) return
        const row = yield* readUsed(key)
        if (Option.isSome(row) && row.value.usage_generation !== entry.generation) {
          // Re-measured meanwhile: the collected changes are in the measurement. Try again.
          entry.generation = row.value.usage_generation
          return yield* reserve(growth, quota, alsoReserved)
        }
        entry.pending = Usage.add(entry.pending, change)
        const usedBytes = Option.match(row, { onNone: () => 0, onSome: (r) => r.used_bytes }) + change.logicalBytes
        return yield* new QuotaExceeded({ volume, quotaBytes: quota, usedBytes, requestedBytes: growth })
      })
    const settle = (growth: number) =>
      Effect.suspend(() => {
        const change = Usage.add(entry.pending, { logicalBytes: -growth, allocatedBytes: 0, files: 0 })
        entry.pending = Usage.zero
        return apply(key, entry, change)
      }).pipe(
        // The reservation stays counted; the next measurement corrects it.
        Effect.catchAll((error) => Effect.logWarning(`could not settle the usage account of volume "${volume}"`, error))
      )
    const account: UsageAccount = {
      prepare: prepare(key),
      used,
      reserve,
      settle
    }
    return { account, onChange: record(key) }
  }

  const needsMeasure = (key: string, stored: StoredUsage) =>
    Effect.gen(function*() {
      if (stored.stale) return true
      const markers = yield* sql<{ readonly pid: number; readonly pid_start: number }>`SELECT pid, pid_start
        FROM usage_writers WHERE key = ${key}`.pipe(orStorageError("reading usage markers"))
      for (const marker of markers) {
        if (!(yield* Liveness.isAlive({ pid: marker.pid, start: marker.pid_start }))) return true
      }
      return false
    })

  const store = (key: string, usage: Usage.Usage, stillHeld: boolean) =>
    Effect.gen(function*() {
      const next = yield* generation
      const now = yield* Clock.currentTimeMillis
      // Bytes granted to file servers and not yet written are not in the walk: still reserved.
      const granted = yield* Grants.liveBalance(key).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      yield* sql`UPDATE volumes
        SET used_bytes = ${usage.logicalBytes + granted}, allocated_bytes = ${usage.allocatedBytes}, files = ${usage.files},
            usage_generation = ${next}, usage_stale = ${stillHeld ? 1 : 0}, measured_at = ${now}
        WHERE key = ${key} AND state = 'ready'`.pipe(orStorageError("storing a usage measurement"))
      const entry = entryOf(key)
      entry.pending = Usage.zero
      entry.generation = undefined
      const markers = yield* sql<{ readonly pid: number; readonly pid_start: number }>`SELECT DISTINCT pid, pid_start
        FROM usage_writers WHERE key = ${key}`.pipe(orStorageError("reading usage markers"))
      for (const marker of markers) {
        if (!(yield* Liveness.isAlive({ pid: marker.pid, start: marker.pid_start }))) {
          yield* sql`DELETE FROM usage_writers WHERE key = ${key} AND pid = ${marker.pid} AND pid_start = ${marker.pid_start}`
            .pipe(orStorageError("deleting the usage markers of a dead process"))
        }
      }
      return { ...usage, logicalBytes: usage.logicalBytes + granted }
    })

  return {
    accountOf,
    flush,
    flushAll,
    needsMeasure,
    store,
    forget: (key) => void entries.delete(key),
    newGeneration: generation
  }
})
