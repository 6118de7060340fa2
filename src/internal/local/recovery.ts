/**
 * Finishing what crashed processes left half done. Every volume transition is driven by
 * the process named in the record's `owner_*` columns; when that process is dead, any
 * other process may take the record over (one conditional UPDATE, so only one does) and
 * finish the job the safe way: the volume is discarded. Data is moved out of `volumes/`
 * before its record goes, so there is never a record without data, and a directory
 * under `volumes/` without a record is garbage.
 */
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StorageError } from "../../VolumeError.js"
import { TEMP_PREFIX } from "../paths.js"
import type { Attachments } from "./attachments.js"
import { orStorageError } from "./database.js"
import { errnoCode, storageFailure } from "./errno.js"
import { removeTree } from "./tree.js"
import * as Layout from "./layout.js"
import * as Liveness from "../liveness.js"
import { makeJournal } from "./rename.js"
import type { RenameJournal } from "./rename.js"

/** The part of a volume record that says who drives it. */
export interface OwnedRow {
  readonly key: string
  readonly state: "creating" | "ready" | "removing"
  readonly owner_pid: number | null
  readonly owner_start: number | null
}

export interface Recovery {
  /** Moves `path` under `trash/`; `None` when there was nothing to move. */
  readonly moveToTrash: (path: string, key: string) => Effect.Effect<Option.Option<string>, StorageError>
  /** Deletes a trash entry; failures are only logged (trash is emptied again on every open). */
  readonly discardTrash: (path: string) => Effect.Effect<void>
  /**
   * Completes the removal of a volume whose record this process holds in state
   * `removing`: data to trash, record deleted, trash emptied.
   */
  readonly finishRemoval: (key: string) => Effect.Effect<void, StorageError>
  /**
   * Takes over a `creating` or `removing` record whose owner is dead and discards the
   * volume. `false` when the owner is alive; `true` when the record was dealt with (by
   * this process or a faster one).
   */
  readonly takeOverAbandoned: (row: OwnedRow) => Effect.Effect<boolean, StorageError>
  /** Brings a home back to a consistent state (run when the backend opens). */
  readonly recoverHome: Effect.Effect<void, StorageError>
  /** Names in a bookkeeping directory (none if it does not exist yet). */
  readonly entries: (dir: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Renames in progress (`rename.ts`); an abandoned one is finished, not discarded. */
  readonly renames: RenameJournal
}

const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"

export const make = (
  layout: Layout.Layout,
  attachments: Attachments
): Effect.Effect<Recovery, never, SqlClient.SqlClient | FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fs = yield* FileSystem.FileSystem


    // One rename between sibling directories of the home, made synchronously (tens of
    // microseconds, less than a round trip through the thread pool).
    const moveToTrash = (path: string, key: string) =>
      Effect.suspend(() => {
        const target = NodePath.join(layout.trash, Layout.trashName(key))
        // Nothing there is the common case (a create's check for leftovers): answered
        // without the thrown error of a failed rename.
        if (NodeFs.lstatSync(path, { throwIfNoEntry: false }) === undefined) return Effect.succeed(Option.none<string>())
        try {
          NodeFs.renameSync(path, target)
          return Effect.succeed(Option.some(target))
        } catch (cause) {
          return errnoCode(cause) === "ENOENT"
            ? Effect.succeed(Option.none<string>())
            : Effect.fail(storageFailure(`cannot move ${path} to the trash`)(cause))
        }
      })

    const discardTrash = (path: string) =>
      // Through the descriptor walk (no symlink is followed), in batches: interruptible,
      // and what an interruption leaves is emptied on the next open.
      removeTree(path).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not empty trash entry ${path}; it is retried on next open`, error))
      )

    const finishRemoval = (key: string) =>
      Effect.gen(function*() {
        const self = yield* Liveness.current
        // The state transition: data out of `volumes/`, then the records. Not interruptible.
        const trashed = yield* Effect.uninterruptible(Effect.gen(function*() {
          const trashed = yield* moveToTrash(Layout.volumeDir(layout, key), key)
          yield* sql`DELETE FROM volumes
            WHERE key = ${key} AND state = 'removing' AND owner_pid = ${self.pid} AND owner_start = ${self.start}`.pipe(
            orStorageError(`deleting the record of volume "${key}"`)
          )
          yield* sql`DELETE FROM attachments WHERE key = ${key}`.pipe(
            orStorageError(`deleting the attachments of volume "${key}"`)
          )
          yield* sql`DELETE FROM usage_writers WHERE key = ${key}`.pipe(
            orStorageError(`deleting the usage markers of volume "${key}"`)
          )
          return trashed
        }))
        // The removal is decided and done; deleting the files may take long (a volume of
        // 200,000 files) and stays interruptible even inside an uninterruptible caller.
        if (Option.isSome(trashed)) yield* Effect.interruptible(discardTrash(trashed.value))
      })

    const renames = yield* makeJournal(layout, { moveToTrash, discardTrash })

    const takeOverAbandoned = (row: OwnedRow) =>
      Effect.gen(function*() {
        // Half of a rename: finished forward, never discarded.
        const renamed = yield* renames.takeOver(row)
        if (Option.isSome(renamed)) return renamed.value
        if (row.owner_pid === null || row.owner_start === null) return false
        if (yield* Liveness.isAlive({ pid: row.owner_pid, start: row.owner_start })) return false
        const self = yield* Liveness.current
        const claimed = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET state = 'removing', owner_pid = ${self.pid}, owner_start = ${self.start}
          WHERE key = ${row.key} AND state = ${row.state}
            AND owner_pid = ${row.owner_pid} AND owner_start = ${row.owner_start}
          RETURNING key`.pipe(orStorageError(`taking over abandoned volume "${row.key}"`))
        if (claimed.length > 0) {
          yield* Effect.logDebug(`discarding volume "${row.key}" left ${row.state} by dead process ${row.owner_pid}`)
          yield* finishRemoval(row.key)
        }
        return true
      }).pipe(Effect.uninterruptible)

    /** Names in a bookkeeping directory (none if it does not exist yet). */
    const entries = (dir: string) =>
      fs.readDirectory(dir).pipe(
        Effect.catchIf(isNotFound, () => Effect.succeed([] as Array<string>)),
        Effect.mapError(storageFailure(`cannot list ${dir}`))
      )

    /**
     * A directory under `volumes/` with no record. Claim its key with a `removing`
     * record first, so a creator cannot publish a volume there while it is moved away.
     */
    const discardOrphan = (key: string) =>
      Effect.gen(function*() {
        const self = yield* Liveness.current
        const now = yield* Clock.currentTimeMillis
        const claimed = yield* sql<{ readonly key: string }>`INSERT INTO volumes
          (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
          VALUES (${key}, ${key}, 'directory', '[]', ${now}, 0, 'removing', ${self.pid}, ${self.start})
          ON CONFLICT (key) DO NOTHING
          RETURNING key`.pipe(orStorageError(`claiming orphaned directory "${key}"`))
        if (claimed.length > 0) {
          yield* Effect.logDebug(`discarding ${Layout.volumeDir(layout, key)}: it has no volume record`)
          yield* finishRemoval(key)
        }
      }).pipe(Effect.uninterruptible)

    const recoverHome = Effect.gen(function*() {
      for (const dir of [layout.volumes, layout.staging, layout.trash, layout.run]) {
        yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(storageFailure(`cannot create ${dir}`)))
      }
      const unfinished = yield* sql<OwnedRow>`SELECT key, state, owner_pid, owner_start FROM volumes
        WHERE state <> 'ready'`.pipe(orStorageError("reading unfinished volumes"))
      for (const row of unfinished) yield* takeOverAbandoned(row)

      for (const entry of yield* entries(layout.staging)) {
        const owner = Layout.stagingOwner(entry)
        const abandoned = Option.isNone(owner) || !(yield* Liveness.isAlive(owner.value))
        if (abandoned) yield* discardTrash(NodePath.join(layout.staging, entry))
      }

      const known = new Set(
        (yield* sql<{ readonly key: string }>`SELECT key FROM volumes`.pipe(orStorageError("listing volumes")))
          .map((row) => row.key)
      )
      for (const entry of yield* entries(layout.volumes)) {
        if (!known.has(entry)) yield* discardOrphan(entry)
      }

      // Everything in the trash is garbage; a concurrent remover deleting the same
      // entry is harmless (`force`).
      for (const entry of yield* entries(layout.trash)) yield* discardTrash(NodePath.join(layout.trash, entry))

      yield* attachments.forgetDead()
    })

    return { moveToTrash, discardTrash, finishRemoval, takeOverAbandoned, recoverHome, entries, renames }
  })

/**
 * Whether `name` is a temporary file (or unfinished copy) of a writer that is gone: the
 * pid in the name no longer runs. Used to sweep what crashed writers left in a volume,
 * only while no sandbox holds it.
 */
export const isAbandonedTemporary = (name: string): boolean => {
  if (!name.startsWith(TEMP_PREFIX)) return false
  const pid = Number(name.slice(TEMP_PREFIX.length).split("-")[0])
  return Number.isSafeInteger(pid) && !Liveness.isPidAliveSync(pid)
}
