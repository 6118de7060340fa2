/**
 * Renaming a local volume (SPEC §10). A volume's data lives at `volumes/<key>` and its
 * snapshots at `snapshots/<key>/`, keyed by the name, so a rename moves two directories as
 * well as the records. It is journalled, and a crash at any point is finished forward:
 *
 * 1. One transaction decides it: the record moves to the new key as `creating`, a
 *    `removing` placeholder takes the old key (so nobody attaches the volume, re-creates the
 *    old name or discards its directory as an orphan), the snapshot records move to the new
 *    key, and a `renames` row says from where to where. Both records name this process.
 * 2. `volumes/<from>` → `volumes/<to>`, then `snapshots/<from>` → `snapshots/<to>`; a step
 *    already done is skipped.
 * 3. One transaction completes it: the record `ready`, the placeholder and the row deleted.
 *
 * When the renaming process dies between 1 and 3, whoever next meets either record
 * (recovery on open, a create or remove of either name) takes both over and finishes
 * steps 2 and 3 — never both names, never neither.
 */
import { FileSystem } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Effect, Option } from "effect"
import * as NodePath from "node:path"
import type { VolumeInfo } from "../../VolumeBackend.js"
import { StorageError, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { Attachments } from "./attachments.js"
import { retryBusy, sqlFailure } from "./database.js"
import { storageFailure } from "./errno.js"
import * as Layout from "./layout.js"
import * as Liveness from "../liveness.js"
import { snapshotsRoot } from "./snapshots.js"

/** One unfinished rename. */
export interface PendingRename {
  readonly from_key: string
  readonly to_key: string
}

/** The part of a volume record that says who drives it (as in `recovery.ts`). */
interface OwnedRow {
  readonly key: string
  readonly owner_pid: number | null
  readonly owner_start: number | null
}

export interface RenameJournal {
  /** Keys at either end of every unfinished rename (their directories are not orphans). */
  readonly pendingKeys: Effect.Effect<ReadonlySet<string>, StorageError>
  /**
   * Takes over the unfinished rename `row` belongs to, if any, and finishes it. `None`
   * when no rename touches `row`; `Some(false)` while its owner lives.
   */
  readonly takeOver: (row: OwnedRow) => Effect.Effect<Option.Option<boolean>, StorageError>
  /** Steps 2 and 3 of a rename whose records `owner` drives. */
  readonly finish: (rename: PendingRename, owner: Liveness.ProcessId) => Effect.Effect<void, StorageError>
}

/** How the trash is used (`recovery.ts`). */
export interface Trash {
  readonly moveToTrash: (path: string, key: string) => Effect.Effect<Option.Option<string>, StorageError>
  readonly discardTrash: (path: string) => Effect.Effect<void>
}

/** `<home>/snapshots/<key>`: the published snapshots of one volume. */
const snapshotsOf = (layout: Layout.Layout, key: string): string => NodePath.join(snapshotsRoot(layout), key)

/** Runs `body` in one transaction, again from the start while the database is busy. */
const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  what: string,
  body: Effect.Effect<A, E | SqlError.SqlError, R>
): Effect.Effect<A, Exclude<E, SqlError.SqlError> | StorageError, R> =>
  retryBusy(sql.withTransaction(body)).pipe(
    Effect.catchIf(
      (error): error is SqlError.SqlError =>
        typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "SqlError",
      (error) => Effect.fail(sqlFailure(what)(error))
    )
  ) as Effect.Effect<A, Exclude<E, SqlError.SqlError> | StorageError, R>

export const makeJournal = (
  layout: Layout.Layout,
  trash: Trash
): Effect.Effect<RenameJournal, never, SqlClient.SqlClient | FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fs = yield* FileSystem.FileSystem


    /** Moves directory `from` to `to` unless it moved already; whatever sits at `to` before is garbage. */
    const moveDirectory = (from: string, to: string) =>
      Effect.gen(function*() {
        const present = yield* fs.exists(from).pipe(Effect.mapError(storageFailure(`cannot check ${from}`)))
        if (!present) return
        const stale = yield* trash.moveToTrash(to, NodePath.basename(to))
        if (Option.isSome(stale)) yield* trash.discardTrash(stale.value)
        yield* fs.makeDirectory(NodePath.dirname(to), { recursive: true }).pipe(
          Effect.zipRight(fs.rename(from, to)),
          Effect.mapError(storageFailure(`cannot move ${from} to ${to}`))
        )
      })

    const finish = (rename: PendingRename, owner: Liveness.ProcessId) =>
      Effect.gen(function*() {
        const { from_key: from, to_key: to } = rename
        yield* moveDirectory(Layout.volumeDir(layout, from), Layout.volumeDir(layout, to))
        yield* moveDirectory(snapshotsOf(layout, from), snapshotsOf(layout, to))
        yield* transaction(sql,
          `completing the rename of volume "${from}" to "${to}"`,
          Effect.gen(function*() {
            yield* sql`UPDATE volumes SET state = 'ready', owner_pid = NULL, owner_start = NULL
              WHERE key = ${to} AND state = 'creating' AND owner_pid = ${owner.pid} AND owner_start = ${owner.start}`
            yield* sql`DELETE FROM volumes
              WHERE key = ${from} AND state = 'removing' AND owner_pid = ${owner.pid} AND owner_start = ${owner.start}`
            yield* sql`DELETE FROM renames WHERE from_key = ${from} AND to_key = ${to}`
          })
        )
      }).pipe(Effect.uninterruptible)

    const takeOver = (row: OwnedRow) =>
      Effect.gen(function*() {
        const found = yield* transaction(sql,
          "reading the rename journal",
          sql<PendingRename>`SELECT from_key, to_key FROM renames WHERE from_key = ${row.key} OR to_key = ${row.key}`
        )
        const rename = found[0]
        if (rename === undefined) return Option.none()
        if (row.owner_pid === null || row.owner_start === null) return Option.some(false)
        const dead = { pid: row.owner_pid, start: row.owner_start }
        if (yield* Liveness.isAlive(dead)) return Option.some(false)
        const self = yield* Liveness.current
        // Both records in one statement: exactly one process takes the rename over.
        const claimed = yield* transaction(sql,
          `taking over the rename of volume "${rename.from_key}"`,
          sql<{ readonly key: string }>`UPDATE volumes SET owner_pid = ${self.pid}, owner_start = ${self.start}
            WHERE key IN (${rename.from_key}, ${rename.to_key}) AND owner_pid = ${dead.pid} AND owner_start = ${dead.start}
            RETURNING key`
        )
        if (claimed.length > 0) {
          yield* Effect.logDebug(`finishing the rename of "${rename.from_key}" to "${rename.to_key}" left by ${dead.pid}`)
          yield* finish(rename, self)
        }
        return Option.some(true)
      }).pipe(Effect.uninterruptible)

    const pendingKeys = transaction(sql, "reading the rename journal", sql<PendingRename>`SELECT * FROM renames`).pipe(
      Effect.map((rows) => new Set(rows.flatMap((row) => [row.from_key, row.to_key])))
    )

    return { pendingKeys, takeOver, finish }
  })

/** What step 1 found. */
type Decision =
  | { readonly _tag: "Decided" }
  | { readonly _tag: "SourceMissing" }
  | { readonly _tag: "SourceUnready"; readonly row: OwnedRow & { readonly state: "creating" | "ready" | "removing" } }
  | { readonly _tag: "Held" }
  | { readonly _tag: "SnapshotsBusy"; readonly names: ReadonlyArray<string> }
  | { readonly _tag: "TargetExists" }
  | { readonly _tag: "TargetRemoving"; readonly row: OwnedRow & { readonly state: "creating" | "ready" | "removing" } }

/** What the rename needs of the local backend. */
export interface RenameDeps {
  readonly journal: RenameJournal
  readonly attachments: Attachments
  /** Discards an abandoned `creating`/`removing` record; false while its owner lives. */
  readonly takeOverAbandoned: (row: OwnedRow & { readonly state: "creating" | "ready" | "removing" }) => Effect.Effect<boolean, StorageError>
  /** Runs before step 1: this process's unsaved usage of `key` saved, its idle mounts let go. */
  readonly release: (key: string) => Effect.Effect<void, StorageError>
  /** Runs after step 3: this process forgets what it kept about `key`. */
  readonly forget: (key: string) => void
  /** The renamed volume's report. */
  readonly get: (name: string) => Effect.Effect<VolumeInfo, VolumeNotFound | StorageError>
}

/** How often a rename waits for a live process to finish removing the target name. */
const TARGET_WAIT_ATTEMPTS = 500
const TARGET_WAIT = "20 millis"

export const make = (deps: RenameDeps) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { attachments, journal } = deps

    /** Step 1: one transaction that either decides the rename or says why not. */
    const decide = (from: string, to: string, self: Liveness.ProcessId) =>
      transaction(
        sql,
        `renaming volume "${from}" to "${to}"`,
        Effect.gen(function*() {
          const fromKey = nameKey(from)
          const toKey = nameKey(to)
          const rows = yield* sql<OwnedRow & { readonly state: "creating" | "ready" | "removing"; readonly name: string; readonly kind: string; readonly created_at: number }>`SELECT key, name, kind, created_at, state, owner_pid, owner_start
            FROM volumes WHERE key IN (${fromKey}, ${toKey})`
          const source = rows.find((row) => row.key === fromKey)
          const target = rows.find((row) => row.key === toKey)
          if (source === undefined) return { _tag: "SourceMissing" } satisfies Decision
          if (source.state !== "ready") return { _tag: "SourceUnready", row: source } satisfies Decision
          if (target !== undefined) {
            return target.state === "removing"
              ? { _tag: "TargetRemoving", row: target } satisfies Decision
              : { _tag: "TargetExists" } satisfies Decision
          }
          const held = yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM attachments WHERE key = ${fromKey}`
          if ((held[0]?.n ?? 0) > 0) return { _tag: "Held" } satisfies Decision
          const busy = yield* sql<{ readonly name: string }>`SELECT name FROM snapshots
            WHERE volume_key = ${fromKey} AND state <> 'ready'`
          if (busy.length > 0) return { _tag: "SnapshotsBusy", names: busy.map((row) => row.name) } satisfies Decision
          // The record keeps every column it has; only its key, name and state change.
          yield* sql`UPDATE volumes SET key = ${toKey}, name = ${to}, state = 'creating', owner_pid = ${self.pid},
              owner_start = ${self.start}, usage_stale = 1
            WHERE key = ${fromKey}`
          yield* sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
            VALUES (${fromKey}, ${source.name}, ${source.kind}, '[]', ${source.created_at}, 0, 'removing', ${self.pid},
              ${self.start})`
          yield* sql`UPDATE snapshots SET volume_key = ${toKey}, volume = ${to} WHERE volume_key = ${fromKey}`
          // Changes other processes collected under the old key are lost with it: re-measure.
          yield* sql`DELETE FROM usage_writers WHERE key = ${fromKey}`
          yield* sql`INSERT INTO renames (from_key, to_key) VALUES (${fromKey}, ${toKey})`
          return { _tag: "Decided" } satisfies Decision
        })
      )

    return (from: string, to: string) =>
      Effect.gen(function*() {
        const self = yield* Liveness.current
        const fromKey = nameKey(from)
        for (let attempt = 0;; attempt++) {
          yield* attachments.forgetDead(fromKey)
          yield* deps.release(fromKey)
          const decision: Decision = yield* decide(from, to, self)
          switch (decision._tag) {
            case "Decided": {
              yield* journal.finish({ from_key: fromKey, to_key: nameKey(to) }, self)
              deps.forget(fromKey)
              return yield* deps.get(to)
            }
            case "SourceMissing":
              return yield* new VolumeNotFound({ volume: from })
            case "SourceUnready":
              // Being created, removed or renamed: not a volume (yet, or any more). Clean it if abandoned.
              yield* deps.takeOverAbandoned(decision.row)
              return yield* new VolumeNotFound({ volume: from })
            case "TargetExists":
              return yield* new VolumeAlreadyExists({ volume: to })
            case "SnapshotsBusy":
              return yield* new VolumeInUse({
                volume: from,
                holders: decision.names.map((name) => `snapshot ${name} being made or removed`)
              })
            case "Held": {
              const holders = yield* attachments.holders(fromKey)
              if (holders.length > 0 || attempt >= 3) return yield* new VolumeInUse({ volume: from, holders })
              // The holder let go (or died) meanwhile: try again.
              break
            }
            case "TargetRemoving": {
              if (yield* deps.takeOverAbandoned(decision.row)) break
              if (attempt >= TARGET_WAIT_ATTEMPTS) {
                return yield* new StorageError({
                  message: `volume "${to}" is still being removed by process ${decision.row.owner_pid}; try again when it has finished`
                })
              }
              yield* Effect.interruptible(Effect.sleep(TARGET_WAIT))
            }
          }
        }
      }).pipe(Effect.uninterruptible)
  })
