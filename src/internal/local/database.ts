/**
 * The local backend's SQLite database: one file per home, shared by every process that
 * opens the home (WAL journal, long busy timeout). Every write the backend makes is a
 * single statement, so SQLite's write lock is the only lock between processes.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { SqliteClient, SqliteMigrator } from "@effect/sql-sqlite-node"
import { Cause, Data, Effect, Layer, Schedule } from "effect"
import { makeDirectories } from "./makeDirectories.js"
import * as NodePath from "node:path"
import { StorageError } from "../../VolumeError.js"

/** How long a statement waits for another process's write lock. */
export const BUSY_TIMEOUT_MS = 10_000

const migrations = {
  "1_create_volumes": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // `key` is the case-insensitive identity (VolumeSpec.nameKey); `name` keeps the
    // user's spelling. `owner_*` names the process driving a 'creating' or 'removing'
    // transition, so recovery can tell an abandoned one from one in progress.
    yield* sql`CREATE TABLE volumes (
      key TEXT PRIMARY KEY NOT NULL,
      name TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('directory', 'disk')),
      quota_mib INTEGER,
      capacity_mib INTEGER,
      labels TEXT NOT NULL DEFAULT '[]',
      created_at INTEGER NOT NULL,
      used_bytes INTEGER NOT NULL DEFAULT 0,
      measured_at INTEGER,
      state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
      owner_pid INTEGER,
      owner_start INTEGER
    )`
    yield* sql`CREATE TABLE attachments (
      id TEXT PRIMARY KEY NOT NULL,
      key TEXT NOT NULL,
      holder TEXT NOT NULL,
      pid INTEGER NOT NULL,
      pid_start INTEGER NOT NULL,
      mode TEXT NOT NULL CHECK (mode IN ('rw', 'ro')),
      created_at INTEGER NOT NULL
    )`
    yield* sql`CREATE INDEX attachments_by_key ON attachments (key)`
  })
}

const LATEST_MIGRATION = Object.keys(migrations).length

/** Whether every migration has been committed (by this or another process). */
const schemaIsCurrent = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly latest: number | null }>`SELECT max(migration_id) AS latest FROM effect_sql_migrations`
  return (rows[0]?.latest ?? 0) >= LATEST_MIGRATION
})

class SchemaPending extends Data.TaggedError("SchemaPending") {}

/**
 * Runs the migrations. Several processes may open a fresh home at once: the migrator
 * then reports "already running" in all but one of them, so each waits until the
 * winner's transaction has committed.
 */
const migrate = SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(migrations) }).pipe(
  Effect.zipRight(schemaIsCurrent),
  Effect.filterOrFail((current) => current, () => new SchemaPending()),
  Effect.retry({
    schedule: Schedule.spaced("50 millis"),
    times: 200,
    while: (error) => error._tag === "SchemaPending" || error._tag === "SqlError"
  }),
  Effect.mapError((cause) =>
    new StorageError({
      message: cause._tag === "SchemaPending"
        ? "the volume database schema was not created in time by another process; try again"
        : `cannot migrate the volume database: ${cause.message}`,
      cause
    })
  ),
  Effect.asVoid
)

const setBusyTimeout = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql.unsafe(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
)

/** The database of a home: the client, with the schema migrated. */
export const layer = (filename: string): Layer.Layer<SqlClient.SqlClient | SqliteClient.SqliteClient, StorageError> => {
  const client = SqliteClient.layer({ filename })
  const schema = Layer.effectDiscard(Effect.zipRight(setBusyTimeout, migrate)).pipe(Layer.provide(NodeContext.layer))
  const createDirectory = Layer.effectDiscard(
    Effect.tryPromise({
      try: () => makeDirectories(NodePath.dirname(filename)),
      catch: (cause) =>
        new StorageError({
          message: `cannot create the database directory ${NodePath.dirname(filename)}: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    })
  )
  return schema.pipe(
    Layer.provideMerge(client),
    Layer.provide(createDirectory),
    // Opening the file throws synchronously (a defect) when it is not a database or
    // not writable; either way the home is unusable, which is a StorageError.
    Layer.catchAllCause((cause) => Layer.fail(toStorageError(filename, cause)))
  )
}

const toStorageError = (filename: string, cause: Cause.Cause<unknown>): StorageError => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some" && failure.value instanceof StorageError) return failure.value
  const squashed = Cause.squash(cause)
  const detail = squashed instanceof Error ? squashed.message : String(squashed)
  return new StorageError({
    message: `cannot open the volume database ${filename}: ${detail}; check that the home is writable and not corrupted`,
    cause: squashed
  })
}

/** Maps a database failure to a `StorageError` that says what was being done. */
export const orStorageError = (what: string) => <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
  Effect.mapError(
    effect,
    (cause) =>
      new StorageError({
        message: `volume database failed while ${what}: ${describeSqlError(cause)}`,
        cause
      })
  )

const describeSqlError = (error: SqlError.SqlError): string => {
  const inner = error.cause
  return inner instanceof Error ? inner.message : error.message
}
