/**
 * Quota grants of the local backend (`VolumeBackendService.quotaGrants`; docs/design.md,
 * "Usage and quota accounting"): a sandbox's file server is one more writer of a directory
 * volume's usage account. A grant is added to `used_bytes` at once, with one compare-and-set
 * statement, so host-side writes (`reserve` in usage.ts) and other sandboxes see it; the
 * writer's unspent balance is kept in `usage_grants`, so a re-measurement (which sees only
 * the bytes already written) adds it back.
 *
 * Order of the two statements: the balance row never lags behind the account. A grant raises
 * the row first (by what it asks) and lowers it to the real balance after; a give-back lowers
 * the account first and the row after. A measurement between them counts a balance too
 * many, never one too few: the account may briefly say more than the truth, never less.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { QuotaGrants } from "../../VolumeBackend.js"
import { VolumeNotFound } from "../../VolumeError.js"
import type { StorageError } from "../../VolumeError.js"
import { orStorageError } from "./database.js"
import * as Liveness from "../liveness.js"

const BYTES_PER_MIB = 1024 * 1024

/** A writer of the quota of the volume stored under `key`, forgotten when the scope closes. */
export const make = (
  key: string,
  volume: string
): Effect.Effect<QuotaGrants, VolumeNotFound | StorageError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const self = yield* Liveness.current
    const token = randomUUID()
    const setBalance = (bytes: number) =>
      sql`UPDATE usage_grants SET bytes = ${bytes} WHERE token = ${token}`.pipe(
        orStorageError(`recording a quota grant of volume "${volume}"`)
      )
    const readAccount = sql<{ readonly used_bytes: number; readonly quota_mib: number | null }>`SELECT used_bytes, quota_mib
      FROM volumes WHERE key = ${key} AND state = 'ready'`.pipe(orStorageError(`reading the usage of volume "${volume}"`))

    yield* Effect.acquireRelease(
      sql`INSERT INTO usage_grants (token, key, pid, pid_start, bytes)
        VALUES (${token}, ${key}, ${self.pid}, ${self.start}, 0)`.pipe(
        orStorageError(`recording a quota writer of volume "${volume}"`)
      ),
      () =>
        sql`DELETE FROM usage_grants WHERE token = ${token}`.pipe(
          orStorageError(`forgetting a quota writer of volume "${volume}"`),
          // A row left behind is dropped by the next measurement once this process is gone.
          Effect.catchAll((error) => Effect.logWarning(error.message))
        )
    )
    if ((yield* readAccount).length === 0) return yield* new VolumeNotFound({ volume })

    /** Adds up to `want` (at least `min`) to the account; the bytes added and the new usage. */
    const take = (want: number, min: number): Effect.Effect<{ granted: number; usedBytes: number }, StorageError> =>
      Effect.gen(function*() {
        const row = (yield* readAccount)[0]
        if (row === undefined) return { granted: 0, usedBytes: 0 }
        const room = row.quota_mib === null ? want : row.quota_mib * BYTES_PER_MIB - row.used_bytes
        const granted = Math.min(want, room)
        if (granted < Math.max(min, 1)) return { granted: 0, usedBytes: row.used_bytes }
        const updated = yield* sql<{ readonly used_bytes: number }>`UPDATE volumes
          SET used_bytes = used_bytes + ${granted}
          WHERE key = ${key} AND state = 'ready' AND used_bytes = ${row.used_bytes}
          RETURNING used_bytes`.pipe(orStorageError(`granting quota of volume "${volume}"`))
        // Another writer changed the account between the read and the update: again.
        return updated[0] === undefined ? yield* take(want, min) : { granted, usedBytes: updated[0].used_bytes }
      })

    const grant = (want: number, min: number, balance: number) =>
      Effect.gen(function*() {
        yield* setBalance(balance + want)
        const result = yield* take(want, min).pipe(Effect.onError(() => Effect.ignore(setBalance(balance))))
        yield* setBalance(balance + result.granted)
        return result
      }).pipe(Effect.uninterruptible)

    const giveBack = (bytes: number, balance: number) =>
      Effect.gen(function*() {
        const rows = yield* sql<{ readonly used_bytes: number }>`UPDATE volumes
          SET used_bytes = MAX(0, used_bytes - ${bytes}) WHERE key = ${key} RETURNING used_bytes`.pipe(
          orStorageError(`giving back quota of volume "${volume}"`)
        )
        yield* setBalance(balance)
        return rows[0]?.used_bytes ?? 0
      }).pipe(Effect.uninterruptible)

    return { grant, giveBack } satisfies QuotaGrants
  })

/**
 * The unspent grants of live writers of `key` (bytes), after dropping the rows of writers
 * whose process died (their file servers died with them).
 */
export const liveBalance = (key: string): Effect.Effect<number, StorageError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ readonly pid: number; readonly pid_start: number; readonly bytes: number }>`SELECT
      pid, pid_start, SUM(bytes) AS bytes FROM usage_grants WHERE key = ${key} GROUP BY pid, pid_start`.pipe(
      orStorageError("reading quota grants")
    )
    let total = 0
    for (const row of rows) {
      if (yield* Liveness.isAlive({ pid: row.pid, start: row.pid_start })) total += row.bytes
      else {
        yield* sql`DELETE FROM usage_grants WHERE key = ${key} AND pid = ${row.pid} AND pid_start = ${row.pid_start}`
          .pipe(orStorageError("deleting the quota grants of a dead process"))
      }
    }
    return total
  })
