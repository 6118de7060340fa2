/**
 * Who holds a volume right now: running sandboxes (and host-side disk access) record an
 * attachment for as long as they use a volume, so `remove` and disk-volume `fs()` can
 * refuse, across every process sharing the home. A record names its process by pid and
 * start time; records of processes that died are deleted whenever someone looks.
 *
 * Sharing rules: a directory volume may have any number of holders. A disk volume has
 * either one read-write holder or any number of read-only ones. An exclusive holder (an
 * archive import) is the only holder of a volume of either kind, except for its own
 * process's host-side access to a disk volume (the import's own writes go through it).
 */
import { SqlClient } from "@effect/sql"
import { Clock, Context, Effect } from "effect"
import type { Scope } from "effect"
import { randomUUID } from "node:crypto"
import type { HoldMode } from "../../VolumeBackend.js"
import { StorageError, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import { orStorageError, retryBusy } from "./database.js"
import * as Liveness from "../liveness.js"

export type AttachMode = HoldMode

/** Host-side holder label of disk-volume `fs()` access. */
export const HOST_FS_HOLDER = "host fs"

export interface AttachOptions {
  /** Who holds the volume, for people: `"sandbox api"`, `"host fs"`. */
  readonly holder: string
  readonly mode: AttachMode
}

export interface Attachments {
  /**
   * Records an attachment of volume `key` by this process until the scope closes.
   * Fails with `VolumeInUse` when the sharing rules forbid it and `VolumeNotFound`
   * when the volume does not exist (or is being created or removed).
   */
  readonly acquire: (
    key: string,
    options: AttachOptions
  ) => Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope>
  /** The live holders of volume `key` (read-only: records of dead holders are skipped, not deleted). */
  readonly holders: (key: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Deletes the records of dead holders of `key` (or of every volume). */
  readonly forgetDead: (key?: string) => Effect.Effect<void, StorageError>
}

/**
 * The attachments of the local backend in use. The local backend's layer provides it
 * next to `VolumeBackend`, so a sandbox runtime can find it with `Effect.serviceOption`.
 */
export class LocalAttachments extends Context.Tag("effect-volumes/local/Attachments")<LocalAttachments, Attachments>() {}

interface AttachmentRow {
  readonly id: string
  readonly key: string
  readonly holder: string
  readonly pid: number
  readonly pid_start: number
}

export const make: Effect.Effect<Attachments, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  /** The attachment records of `key` (or of every volume), split by whether their process lives. */
  const records = (key?: string) =>
    Effect.gen(function*() {
      const rows = yield* (key === undefined
        ? sql<AttachmentRow>`SELECT id, key, holder, pid, pid_start FROM attachments`
        : sql<AttachmentRow>`SELECT id, key, holder, pid, pid_start FROM attachments WHERE key = ${key}`).pipe(
          orStorageError("reading attachments")
        )
      const live: Array<AttachmentRow> = []
      const dead: Array<AttachmentRow> = []
      for (const row of rows) {
        const alive = yield* Liveness.isAlive({ pid: row.pid, start: row.pid_start })
        if (alive) live.push(row)
        else dead.push(row)
      }
      return { live, dead }
    })

  const forgetDead = (key?: string) =>
    Effect.gen(function*() {
      const { dead, live } = yield* records(key)
      for (const row of dead) {
        yield* sql`DELETE FROM attachments WHERE id = ${row.id}`.pipe(orStorageError("forgetting a dead holder"))
      }
      return live
    })

  const holders = (key: string) => Effect.map(records(key), ({ live }) => live.map((row) => row.holder))

  /** The display name of a volume for errors (the key if the record is gone). */
  const displayName = (key: string) =>
    sql<{ readonly name: string }>`SELECT name FROM volumes WHERE key = ${key}`.pipe(
      Effect.map((rows) => rows[0]?.name ?? key),
      orStorageError("reading a volume record")
    )

  const insert = (key: string, options: AttachOptions, id: string, self: Liveness.ProcessId, now: number) =>
    // One statement, so the check and the insert are atomic across processes: the
    // volume must be ready, for a disk volume no writer may coexist with anyone, and an
    // exclusive holder coexists with nobody.
    sql<{ readonly id: string }>`INSERT INTO attachments (id, key, holder, pid, pid_start, mode, created_at)
      SELECT ${id}, ${key}, ${options.holder}, ${self.pid}, ${self.start}, ${options.mode}, ${now}
      WHERE EXISTS (SELECT 1 FROM volumes WHERE key = ${key} AND state = 'ready')
        AND NOT EXISTS (
          SELECT 1 FROM attachments a JOIN volumes v ON v.key = a.key
          WHERE a.key = ${key} AND (
            ((a.mode = 'exclusive' OR ${options.mode} = 'exclusive')
              AND NOT (a.pid = ${self.pid} AND a.pid_start = ${self.start}
                AND (a.holder = ${HOST_FS_HOLDER} OR ${options.holder} = ${HOST_FS_HOLDER})))
            OR (v.kind = 'disk' AND (a.mode = 'rw' OR ${options.mode} = 'rw')
              AND NOT (a.mode = 'exclusive' OR ${options.mode} = 'exclusive'))
          )
        )
      RETURNING id`.pipe(orStorageError("recording an attachment"))

  const release = (id: string) =>
    retryBusy(sql`DELETE FROM attachments WHERE id = ${id}`).pipe(
      // A record left behind is forgotten once this process exits.
      Effect.catchAll((error) => Effect.logWarning("could not delete an attachment record", error))
    )

  const attempt = (
    key: string,
    options: AttachOptions,
    retries = 3
  ): Effect.Effect<string, VolumeInUse | VolumeNotFound | StorageError> =>
    Effect.gen(function*() {
      // Records of dead holders are forgotten only when they may be in the way (a refused
      // insert): a directory volume's holders never refuse one another, so its common
      // case is one statement.
      const self = yield* Liveness.current
      const id = randomUUID()
      const inserted = yield* insert(key, options, id, self, yield* Clock.currentTimeMillis)
      if (inserted.length > 0) {
        // What the holder writes is not seen by the usage account: the next `get` re-measures
        // (and keeps doing so until the volume is free again). Disk volumes are measured by
        // their image and need no account.
        yield* sql`UPDATE volumes SET usage_stale = 1 WHERE key = ${key} AND kind = 'directory'`.pipe(
          orStorageError("marking the usage of a held volume stale")
        )
        return id
      }
      const ready = yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM volumes WHERE key = ${key} AND state = 'ready'`
        .pipe(orStorageError("reading a volume record"))
      const name = yield* displayName(key)
      if ((ready[0]?.n ?? 0) === 0) return yield* new VolumeNotFound({ volume: name })
      const live = yield* forgetDead(key)
      // The holders that refused us were dead, or let go in between: ask again.
      if (live.length === 0 && retries > 0) return yield* attempt(key, options, retries - 1)
      return yield* new VolumeInUse({ volume: name, holders: live.map((row) => row.holder) })
    })

  const acquire = (key: string, options: AttachOptions) =>
    Effect.acquireRelease(attempt(key, options), release).pipe(Effect.asVoid)

  return { acquire, holders, forgetDead: (key?: string) => Effect.asVoid(forgetDead(key)) }
})
