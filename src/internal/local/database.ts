/**
 * The local backend's SQLite database: one file per home, shared by every process that
 * opens the home (WAL journal). Every write the backend makes is a single statement, so
 * SQLite's write lock is the only lock between processes.
 *
 * better-sqlite3 is synchronous: a statement that waits for another process's write lock
 * inside SQLite (`busy_timeout`) stalls the whole event loop, every fiber with it. So the
 * busy timeout is short ({@link BUSY_TIMEOUT_MS}) and a statement that still finds the
 * database busy is retried by {@link retryBusy} on a jittered schedule in the Effect
 * scheduler, where waiting costs other fibers nothing.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { SqliteClient, SqliteMigrator } from "@effect/sql-sqlite-node"
import { Cause, Data, Duration, Effect, Layer, Schedule } from "effect"
import { makeDirectories } from "./makeDirectories.js"
import * as NodePath from "node:path"
import { StorageError } from "../../VolumeError.js"
import type { StorageErrorReason } from "../../VolumeError.js"

/**
 * How long one statement waits inside SQLite (synchronously, blocking the event loop) for
 * another process's lock before it reports `SQLITE_BUSY` to {@link retryBusy}.
 */
export const BUSY_TIMEOUT_MS = 5

/** How long, in total, {@link retryBusy} keeps retrying a busy statement. */
export const BUSY_RETRY_BUDGET = Duration.seconds(30)

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
  }),
  "2_create_snapshots": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // One record per snapshot (internal/local/snapshots.ts), driven like a volume record:
    // `creating` → `ready` → `removing`, with the driving process in `owner_*`.
    yield* sql`CREATE TABLE snapshots (
      volume_key TEXT NOT NULL,
      key TEXT NOT NULL,
      volume TEXT NOT NULL,
      name TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('directory', 'disk')),
      capacity_mib INTEGER,
      labels TEXT NOT NULL DEFAULT '[]',
      created_at INTEGER NOT NULL,
      expires_at INTEGER,
      used_bytes INTEGER NOT NULL DEFAULT 0,
      state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
      owner_pid INTEGER,
      owner_start INTEGER,
      PRIMARY KEY (volume_key, key)
    )`
    // A volume keeps its snapshots: the claim that starts a removal (ready → removing)
    // matches no row while any snapshot record exists, so a snapshot made between
    // Volume.remove's check and the claim cannot be orphaned, whichever process made it.
    yield* sql`CREATE TRIGGER volumes_keep_snapshots BEFORE UPDATE OF state ON volumes
      WHEN OLD.state = 'ready' AND NEW.state = 'removing'
        AND EXISTS (SELECT 1 FROM snapshots WHERE volume_key = NEW.key)
      BEGIN SELECT RAISE(IGNORE); END`
  }),
  "3_usage_accounting": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The account of a directory volume's usage (see docs/design.md, "Usage and quota
    // accounting"): kept current by the library's own writes. `usage_generation` counts
    // re-measurements; `usage_stale` is set when a sandbox attaches (its writes are not
    // seen) and cleared by the next measurement with no holder left.
    yield* sql`ALTER TABLE volumes ADD COLUMN allocated_bytes INTEGER NOT NULL DEFAULT 0`
    yield* sql`ALTER TABLE volumes ADD COLUMN files INTEGER NOT NULL DEFAULT 0`
    yield* sql`ALTER TABLE volumes ADD COLUMN usage_generation INTEGER NOT NULL DEFAULT 0`
    // Existing volumes were measured by an older version that did not keep an account.
    yield* sql`ALTER TABLE volumes ADD COLUMN usage_stale INTEGER NOT NULL DEFAULT 1`
    // One row per process that may hold changes not yet added to the account (the dirty
    // marker). A row whose process died means changes were lost: re-measure.
    yield* sql`CREATE TABLE usage_writers (
      key TEXT NOT NULL,
      pid INTEGER NOT NULL,
      pid_start INTEGER NOT NULL,
      instance TEXT NOT NULL,
      PRIMARY KEY (key, pid, pid_start, instance)
    )`
  }),
  // Lifecycle (SPEC §10): when prune({ expired: true }) may remove the volume, and when a
  // holder last acquired or let go of it.
  "4_volume_expiry": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE volumes ADD COLUMN expires_at INTEGER`
    yield* sql`ALTER TABLE volumes ADD COLUMN last_used_at INTEGER`
  }),
  // Exclusive holders (an archive import): SQLite cannot change a CHECK, so the table is rebuilt.
  "5_exclusive_holds": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE attachments_next (
      id TEXT PRIMARY KEY NOT NULL,
      key TEXT NOT NULL,
      holder TEXT NOT NULL,
      pid INTEGER NOT NULL,
      pid_start INTEGER NOT NULL,
      mode TEXT NOT NULL CHECK (mode IN ('rw', 'ro', 'exclusive')),
      created_at INTEGER NOT NULL
    )`
    yield* sql`INSERT INTO attachments_next (id, key, holder, pid, pid_start, mode, created_at)
      SELECT id, key, holder, pid, pid_start, mode, created_at FROM attachments`
    yield* sql`DROP TABLE attachments`
    yield* sql`ALTER TABLE attachments_next RENAME TO attachments`
    yield* sql`CREATE INDEX attachments_by_key ON attachments (key)`
  }),
  // Quota grants of sandboxes' file servers (docs/design.md, "Usage and quota accounting"):
  // bytes granted (already in used_bytes) and not yet spent, per writer, so a measurement
  // can add them to what it walked. A row whose process died is dropped by the next one.
  "6_usage_grants": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE usage_grants (
      token TEXT PRIMARY KEY,
      key TEXT NOT NULL,
      pid INTEGER NOT NULL,
      pid_start INTEGER NOT NULL,
      bytes INTEGER NOT NULL
    )`
    yield* sql`CREATE INDEX usage_grants_key ON usage_grants (key)`
  }),
  // The journal of renames in progress (internal/local/rename.ts): one row from the
  // transaction that decides a rename until the one that completes it.
  "7_rename_journal": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE renames (
      from_key TEXT PRIMARY KEY NOT NULL,
      to_key TEXT NOT NULL UNIQUE
    )`
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
      reason: cause._tag === "SqlError" ? reasonOf(cause) : "Busy",
      operation: "migrate",
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
  const code = typeof squashed === "object" && squashed !== null && "code" in squashed ? String(squashed.code) : ""
  return new StorageError({
    message: `cannot open the volume database ${filename}: ${detail}; check that the home is writable and not corrupted`,
    reason: code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")
      ? "Corrupt"
      : code.startsWith("SQLITE_BUSY")
      ? "Busy"
      : "Unavailable",
    operation: "open",
    cause: squashed
  })
}

/** The SQLite result code of a failed statement (`SQLITE_BUSY`, `SQLITE_CORRUPT`, ...). */
export const sqliteCode = (error: SqlError.SqlError): string | undefined => {
  const inner: unknown = error.cause
  if (typeof inner !== "object" || inner === null || !("code" in inner)) return undefined
  return typeof inner.code === "string" ? inner.code : undefined
}

/** Another connection holds a lock we need (`SQLITE_BUSY*`, `SQLITE_LOCKED*`). */
export const isBusy = (error: SqlError.SqlError): boolean => {
  const code = sqliteCode(error)
  return code !== undefined && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))
}

/** What kind of {@link StorageError} a database failure is. */
export const reasonOf = (error: SqlError.SqlError): StorageErrorReason => {
  const code = sqliteCode(error) ?? ""
  if (isBusy(error)) return "Busy"
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") return "Corrupt"
  if (code.startsWith("SQLITE_CONSTRAINT")) return "Conflict"
  if (
    code.startsWith("SQLITE_CANTOPEN") || code.startsWith("SQLITE_IOERR") || code === "SQLITE_FULL" ||
    code.startsWith("SQLITE_READONLY") || code === "SQLITE_PERM"
  ) return "Unavailable"
  return "Unknown"
}

/**
 * Retries a statement that found the database busy, waiting in the Effect scheduler
 * (jittered exponential backoff from 2 ms, capped at 100 ms, for {@link BUSY_RETRY_BUDGET}
 * in total) instead of inside SQLite, where the wait would block the event loop. The wait
 * is interruptible.
 */
export const retryBusy = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.retry(effect, {
    schedule: Schedule.exponential("2 millis", 1.5).pipe(
      Schedule.union(Schedule.spaced("100 millis")),
      Schedule.jittered,
      Schedule.upTo(BUSY_RETRY_BUDGET)
    ),
    while: (error) => isSqlError(error) && isBusy(error)
  })

const isSqlError = (error: unknown): error is SqlError.SqlError =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "SqlError"

/**
 * Runs a statement (retrying while the database is busy) and maps a failure to a
 * `StorageError` that says what was being done, with its `reason`.
 */
export const orStorageError = (what: string) => <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
  Effect.mapError(retryBusy(effect), sqlFailure(what))

/** The `StorageError` of a statement that failed while doing `what`. */
export const sqlFailure = (what: string) => (cause: SqlError.SqlError): StorageError =>
  new StorageError({
    message: `volume database failed while ${what}: ${describeSqlError(cause)}`,
    reason: reasonOf(cause),
    operation: "sqlite",
    cause
  })

const describeSqlError = (error: SqlError.SqlError): string => {
  const inner = error.cause
  return inner instanceof Error ? inner.message : error.message
}
