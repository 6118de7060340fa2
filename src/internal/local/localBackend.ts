/**
 * The local backend: volume records in SQLite, volume data in host directories under
 * the home. Every lifecycle transition is one conditional statement on the record plus
 * renames between sibling directories, so several processes can share a home and a
 * crash at any point leaves something `recovery.ts` can finish.
 *
 * create: record `creating` (owned by this process) → build under `staging/` → rename
 * into `volumes/<key>` → record `ready`. remove: record `removing` (refused while held)
 * → rename to `trash/` → delete the record → empty the trash entry.
 */
import { FileSystem } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Clock, DateTime, Effect, Either, Option } from "effect"
import { touching } from "../touchingHolders.js"
import type { Scope } from "effect"
import * as NodePath from "node:path"
import { BYTES_PER_MIB } from "../../Size.js"
import type { Mebibytes } from "../../Size.js"
import { LocalState, VolumeInfo } from "../../VolumeBackend.js"
import type { VolumeBackendService } from "../../VolumeBackend.js"
import { StorageError, Unsupported, VolumeAlreadyExists, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import { nameKey } from "../../VolumeSpec.js"
import type { VolumeKind } from "../../VolumeSpec.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import type { FsDriver } from "../fsDriver.js"
import * as VolumeFsImpl from "../volumeFs.js"
import * as Attachments from "./attachments.js"
import { orStorageError } from "./database.js"
import { makeDirectoryDriver } from "./directoryDriver.js"
import { makeDiskDriver } from "./diskDriver.js"
import { allocatedBytes, formatDiskImage } from "./diskImage.js"
import * as Layout from "./layout.js"
import * as Liveness from "./liveness.js"
import * as Recovery from "./recovery.js"

/** One record of the `volumes` table, as this version writes it. */
interface VolumeRow {
  readonly key: string
  readonly name: string
  readonly kind: VolumeKind
  readonly quota_mib: Mebibytes | null
  readonly capacity_mib: Mebibytes | null
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly created_at: number
  readonly used_bytes: number
  readonly state: "creating" | "ready" | "removing"
  readonly owner_pid: number | null
  readonly owner_start: number | null
  readonly expires_at: number | null
  readonly last_used_at: number | null
}

const isMib = (value: unknown): value is Mebibytes | null =>
  value === null || (typeof value === "number" && Number.isInteger(value) && value > 0)
const isNullableNumber = (value: unknown): value is number | null => value === null || typeof value === "number"
const isLabels = (value: unknown): value is ReadonlyArray<readonly [string, string]> =>
  Array.isArray(value) &&
  value.every((label) =>
    Array.isArray(label) && label.length === 2 && typeof label[0] === "string" && typeof label[1] === "string"
  )
const parseLabels = (text: unknown): unknown => {
  if (typeof text !== "string") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * Checks one raw row by hand rather than through Schema: `list` reads every record, and a
 * Schema decode of 10,000 rows costs most of a second (docs/benchmarks.md).
 */
const readRow = (raw: Record<string, unknown>): VolumeRow | undefined => {
  const labels = parseLabels(raw["labels"])
  const { capacity_mib, created_at, key, kind, name, owner_pid, owner_start, quota_mib, state, used_bytes } = raw
  const expires_at = raw["expires_at"] ?? null
  const last_used_at = raw["last_used_at"] ?? null
  return typeof key === "string" && typeof name === "string" && (kind === "directory" || kind === "disk") &&
      isMib(quota_mib) && isMib(capacity_mib) && isLabels(labels) && typeof created_at === "number" &&
      typeof used_bytes === "number" && (state === "creating" || state === "ready" || state === "removing") &&
      isNullableNumber(owner_pid) && isNullableNumber(owner_start) && isNullableNumber(expires_at) && isNullableNumber(last_used_at)
    ? {
      key, name, kind, quota_mib, capacity_mib, labels, created_at, used_bytes, state, owner_pid, owner_start,
      expires_at, last_used_at
    }
    : undefined
}

const decodeRows = (rows: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<VolumeRow>, { readonly message: string }> =>
  Effect.suspend(() => {
    const out: Array<VolumeRow> = []
    for (const raw of rows) {
      const row = typeof raw === "object" && raw !== null ? readRow(raw as Record<string, unknown>) : undefined
      if (row === undefined) return Effect.fail({ message: `unexpected record ${JSON.stringify(raw)}` })
      out.push(row)
    }
    return Effect.succeed(out)
  })

/** How long `create` waits for a live process to finish removing the same name. */
const REMOVAL_WAIT_ATTEMPTS = 500
const REMOVAL_WAIT = "20 millis"

/** Host-side holder label of disk-volume `fs()` access. */
export const HOST_FS_HOLDER = "host fs"

export interface LocalBackend {
  readonly service: VolumeBackendService
  readonly attachments: Attachments.Attachments
}

export const make = (
  layout: Layout.Layout
): Effect.Effect<LocalBackend, StorageError, SqlClient.SqlClient | FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fs = yield* FileSystem.FileSystem
    const attachments = yield* Attachments.make
    const recovery = yield* Recovery.make(layout, attachments)
    yield* recovery.recoverHome

    const fsFailure = (what: string) => (cause: { readonly message: string }) =>
      new StorageError({ message: `${what}: ${cause.message}`, cause })

    // ---- records ---------------------------------------------------------------------

    const selectRows = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      query.pipe(
        orStorageError("reading volume records"),
        Effect.flatMap((rows) =>
          decodeRows(rows).pipe(
            Effect.mapError((cause) =>
              new StorageError({
                message: `the volume database ${layout.database} holds a record this version cannot read: ${cause.message}`,
                cause
              })
            )
          )
        )
      )

    const findRow = (key: string) =>
      Effect.map(selectRows(sql`SELECT * FROM volumes WHERE key = ${key}`), (rows) => Option.fromNullable(rows[0]))

    const findReady = (key: string) => Effect.map(findRow(key), Option.filter((row) => row.state === "ready"))

    // Rows are checked by readRow, so the constructors need not validate again.
    const toInfo = (row: VolumeRow, usedBytes: number): VolumeInfo =>
      new VolumeInfo({
        name: row.name,
        kind: row.kind,
        backendKind: "local",
        quotaMib: Option.fromNullable(row.quota_mib),
        capacityMib: Option.fromNullable(row.capacity_mib),
        labels: row.labels,
        createdAt: DateTime.unsafeMake(row.created_at),
        expiresAt: Option.map(Option.fromNullable(row.expires_at), DateTime.unsafeMake),
        lastUsedAt: Option.map(Option.fromNullable(row.last_used_at), DateTime.unsafeMake),
        usedBytes,
        diskPath: row.kind === "disk" ? Option.some(Layout.diskImage(layout, row.key)) : Option.none(),
        local: Option.some(
          new LocalState({
            home: layout.home,
            directory: Layout.volumeDir(layout, row.key),
            dataPath: row.kind === "directory" ? Option.some(Layout.dataDir(layout, row.key)) : Option.none()
          }, { disableValidation: true })
        ),
        cloud: Option.none()
      }, { disableValidation: true })

    // ---- usage -----------------------------------------------------------------------

    /** Real usage of the volume whose files are under `root` (a volume dir, published or staged). */
    const measureAt = (kind: VolumeKind, root: string, name: string) =>
      kind === "directory"
        ? makeDirectoryDriver({ root: NodePath.join(root, Layout.DATA_DIR), volume: name }).measure([]).pipe(
          Effect.mapError((cause) => new StorageError({ message: `cannot measure volume "${name}": ${cause.message}`, cause }))
        )
        : allocatedBytes(NodePath.join(root, Layout.DISK_IMAGE))

    // ---- create ----------------------------------------------------------------------

    /**
     * Inserts the `creating` record that makes this process the one creator of `key`.
     * Abandoned records of dead processes are discarded on the way; a live removal of
     * the same name is waited for.
     */
    const claimName = (
      spec: ValidSpec,
      key: string,
      self: Liveness.ProcessId,
      createdAt: number,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ) =>
      Effect.gen(function*() {
        for (let attempt = 0;; attempt++) {
          const inserted = yield* sql<{ readonly key: string }>`INSERT INTO volumes
            (key, name, kind, quota_mib, capacity_mib, labels, created_at, used_bytes, state, owner_pid, owner_start)
            VALUES (${key}, ${spec.name}, ${spec.kind}, ${Option.getOrNull(spec.quotaMib)},
              ${Option.getOrNull(spec.capacityMib)}, ${JSON.stringify(spec.labels)}, ${createdAt}, 0,
              'creating', ${self.pid}, ${self.start})
            ON CONFLICT (key) DO NOTHING
            RETURNING key`.pipe(orStorageError(`recording volume "${spec.name}"`))
          if (inserted.length > 0) return
          const existing = yield* findRow(key)
          if (Option.isNone(existing)) continue
          const row = existing.value
          if (row.state === "ready") return yield* new VolumeAlreadyExists({ volume: spec.name })
          if (yield* recovery.takeOverAbandoned(row)) continue
          // Another live process is creating it: that one wins.
          if (row.state === "creating") return yield* new VolumeAlreadyExists({ volume: spec.name })
          if (attempt >= REMOVAL_WAIT_ATTEMPTS) {
            return yield* new StorageError({
              message:
                `volume "${row.name}" is still being removed by process ${row.owner_pid}; try again when it has finished`
            })
          }
          yield* restore(Effect.sleep(REMOVAL_WAIT))
        }
      })

    /** Builds the volume's files under `staging` (slow for disks: mkfs runs here). */
    const build = (spec: ValidSpec, staging: string) =>
      Effect.gen(function*() {
        yield* fs.makeDirectory(staging, { recursive: true, mode: 0o755 }).pipe(
          Effect.mapError(fsFailure(`cannot create the staging directory ${staging}`))
        )
        if (spec.kind === "directory") {
          const data = NodePath.join(staging, Layout.DATA_DIR)
          yield* fs.makeDirectory(data, { mode: 0o755 }).pipe(
            Effect.zipRight(fs.chmod(data, 0o755)),
            Effect.mapError(fsFailure(`cannot create the data directory of volume "${spec.name}"`))
          )
        } else {
          const capacity = Option.getOrThrowWith(spec.capacityMib, () => new Error("validated disk spec without a size"))
          yield* formatDiskImage(NodePath.join(staging, Layout.DISK_IMAGE), capacity)
        }
        return yield* measureAt(spec.kind, staging, spec.name)
      })

    /** Makes the staged volume visible: rename into place, then mark the record ready. */
    const publish = (key: string, staging: string, self: Liveness.ProcessId, usedBytes: number) =>
      Effect.gen(function*() {
        const target = Layout.volumeDir(layout, key)
        // We own the record, so whatever sits at the target is a leftover of a crash.
        const stale = yield* recovery.moveToTrash(target, key)
        if (Option.isSome(stale)) yield* recovery.discardTrash(stale.value)
        yield* fs.rename(staging, target).pipe(Effect.mapError(fsFailure(`cannot move the new volume into ${target}`)))
        const updated = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET state = 'ready', owner_pid = NULL, owner_start = NULL, used_bytes = ${usedBytes}, measured_at = ${Date.now()}
          WHERE key = ${key} AND state = 'creating' AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING key`.pipe(orStorageError(`marking volume "${key}" ready`))
        if (updated.length === 0) {
          return yield* new StorageError({ message: `the record of volume "${key}" was taken over while it was created` })
        }
      })

    /** Undoes a failed or interrupted create: nothing of it may stay behind. */
    const abandon = (key: string, staging: string, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        yield* recovery.discardTrash(staging)
        const owned = yield* sql<{ readonly key: string }>`UPDATE volumes SET state = 'removing'
          WHERE key = ${key} AND state = 'creating' AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING key`
        // If publishing got as far as the rename, the data goes before the record does.
        if (owned.length > 0) yield* recovery.finishRemoval(key)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`could not undo the failed creation of volume "${key}"; it is discarded on next open`, error)
        )
      )

    const create = Effect.fn("LocalBackend.create")(function*(spec: ValidSpec) {
      const key = nameKey(spec.name)
      const self = yield* Liveness.current
      const staging = NodePath.join(layout.staging, Layout.stagingName(key, self))
      const createdAt = Date.now()
      // Only waiting and building are interruptible: every step that changes shared
      // state runs to completion, and a failure after the claim undoes the claim.
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          yield* claimName(spec, key, self, createdAt, restore)
          const usedBytes = yield* restore(build(spec, staging)).pipe(
            Effect.tap((used) => publish(key, staging, self, used)),
            Effect.onError(() => abandon(key, staging, self))
          )
          return toInfo({
            key,
            name: spec.name,
            kind: spec.kind,
            quota_mib: Option.getOrNull(spec.quotaMib),
            capacity_mib: Option.getOrNull(spec.capacityMib),
            labels: spec.labels,
            created_at: createdAt,
            expires_at: null,
            last_used_at: null,
            used_bytes: usedBytes,
            state: "ready",
            owner_pid: null,
            owner_start: null
          }, usedBytes)
        })
      )
    })

    // ---- get / list ------------------------------------------------------------------

    const get = Effect.fn("LocalBackend.get")(function*(name: string) {
      const key = nameKey(name)
      const row = yield* findReady(key).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new VolumeNotFound({ volume: name })),
          onSome: Effect.succeed
        }))
      )
      if (row.kind === "directory" && (yield* attachments.holders(key)).length === 0) {
        // Temporary files of writers that crashed; only while no sandbox can race us.
        yield* Recovery.sweepDeadTempFiles(Layout.dataDir(layout, key))
      }
      const usedBytes = yield* measureAt(row.kind, Layout.volumeDir(layout, key), row.name).pipe(
        // A volume removed meanwhile is not found rather than broken.
        Effect.catchAll((error) =>
          Effect.flatMap(
            findReady(key),
            (still): Effect.Effect<never, StorageError | VolumeNotFound> =>
              Option.isSome(still) ? Effect.fail(error) : Effect.fail(new VolumeNotFound({ volume: name }))
          )
        )
      )
      yield* sql`UPDATE volumes SET used_bytes = ${usedBytes}, measured_at = ${Date.now()}
        WHERE key = ${key} AND state = 'ready'`.pipe(orStorageError(`storing the usage of volume "${row.name}"`))
      return toInfo(row, usedBytes)
    })

    const list = Effect.map(
      selectRows(sql`SELECT * FROM volumes WHERE state = 'ready'`),
      (rows) => rows.map((row) => toInfo(row, row.used_bytes))
    ).pipe(Effect.withSpan("LocalBackend.list"))

    // ---- remove ----------------------------------------------------------------------

    /** Puts the record back to `ready` when a removal failed before the data moved. */
    const revertRemoval = (key: string, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        if (!(yield* fs.exists(Layout.volumeDir(layout, key)).pipe(Effect.orElseSucceed(() => false)))) return
        yield* sql`UPDATE volumes SET state = 'ready', owner_pid = NULL, owner_start = NULL
          WHERE key = ${key} AND state = 'removing' AND owner_pid = ${self.pid} AND owner_start = ${self.start}`
      }).pipe(Effect.ignore)

    const remove = Effect.fn("LocalBackend.remove")(function*(name: string) {
      const key = nameKey(name)
      const self = yield* Liveness.current
      for (let attempt = 0;; attempt++) {
        yield* attachments.forgetDead(key)
        // One statement: a sandbox attaching at the same moment either is seen here or
        // finds the volume no longer ready.
        const claimed = yield* sql<{ readonly key: string }>`UPDATE volumes
          SET state = 'removing', owner_pid = ${self.pid}, owner_start = ${self.start}
          WHERE key = ${key} AND state = 'ready'
            AND NOT EXISTS (SELECT 1 FROM attachments WHERE key = ${key})
          RETURNING key`.pipe(orStorageError(`marking volume "${name}" for removal`))
        if (claimed.length > 0) {
          return yield* recovery.finishRemoval(key).pipe(Effect.tapError(() => revertRemoval(key, self)))
        }
        const row = yield* findRow(key)
        if (Option.isNone(row)) return yield* new VolumeNotFound({ volume: name })
        if (row.value.state !== "ready") {
          // Being created or removed: not a volume (yet, or any more). Clean it if abandoned.
          yield* recovery.takeOverAbandoned(row.value)
          return yield* new VolumeNotFound({ volume: name })
        }
        const holders = yield* attachments.holders(key)
        if (holders.length > 0 || attempt >= 3) return yield* new VolumeInUse({ volume: name, holders })
        // The holder let go between the two statements: try again.
      }
    }, Effect.uninterruptible)

    // ---- files -----------------------------------------------------------------------

    /** One write lock per volume, shared by every `fs()` of it from this backend. */
    const writeLock = VolumeFsImpl.makeWriteLocks().lockOf

    /**
     * Host-side access to a disk image is recorded as an attachment while the image is
     * mounted, so no sandbox attaches it meanwhile (and vice versa). The disk driver
     * shares one mount, hence one attachment, among this process's operations.
     */
    const acquireDisk = (key: string): Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope> =>
      attachments.acquire(key, { holder: HOST_FS_HOLDER, mode: "rw" })

    const volumeFs = (info: VolumeInfo): VolumeFs => {
      const key = nameKey(info.name)
      const driver: FsDriver = info.kind === "directory"
        ? makeDirectoryDriver({ root: Layout.dataDir(layout, key), volume: info.name })
        : makeDiskDriver({
          image: Layout.diskImage(layout, key),
          volume: info.name,
          runDir: layout.run,
          acquireExclusive: acquireDisk(key)
        })
      return VolumeFsImpl.make({
        volume: info.name,
        driver,
        quotaBytes: Option.map(info.quotaMib, (mib) => mib * BYTES_PER_MIB),
        writeLock: writeLock(key)
      })
    }

    const path = Effect.fn("LocalBackend.path")(function*(info: VolumeInfo) {
      if (info.kind !== "directory") return yield* new Unsupported({ operation: "path of a disk volume", backend: "local" })
      const key = nameKey(info.name)
      const dir = Layout.dataDir(layout, key)
      const present = Option.isSome(yield* findReady(key)) &&
        (yield* fs.exists(dir).pipe(Effect.mapError(fsFailure(`cannot check ${dir}`))))
      if (!present) return yield* new VolumeNotFound({ volume: info.name })
      return dir
    })

    /** Compare-and-set on the settings columns, so a concurrent update is re-applied, never lost. */
    const update: VolumeBackendService["update"] = (name, change) =>
      Effect.gen(function*() {
        const key = nameKey(name)
        for (;;) {
          const current = yield* get(name)
          const next = change(current)
          if (Either.isLeft(next)) return yield* next.left
          const labels = JSON.stringify(current.labels)
          const quota = Option.getOrNull(current.quotaMib)
          const expires = Option.getOrNull(Option.map(current.expiresAt, DateTime.toEpochMillis))
          const changed = yield* sql<{ readonly key: string }>`UPDATE volumes
            SET labels = ${JSON.stringify(next.right.labels)}, quota_mib = ${Option.getOrNull(next.right.quotaMib)},
              expires_at = ${Option.getOrNull(Option.map(next.right.expiresAt, DateTime.toEpochMillis))}
            WHERE key = ${key} AND state = 'ready' AND labels = ${labels} AND quota_mib IS ${quota}
              AND expires_at IS ${expires}
            RETURNING key`.pipe(orStorageError(`updating volume "${name}"`))
          if (changed.length > 0) {
            return new VolumeInfo({ ...current, ...next.right }, { disableValidation: true })
          }
        }
      }).pipe(Effect.withSpan("LocalBackend.update"))

    const touch = (name: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        sql`UPDATE volumes SET last_used_at = ${now} WHERE key = ${nameKey(name)}`.pipe(
          orStorageError(`recording the use of volume "${name}"`),
          Effect.asVoid
        ))

    const service: VolumeBackendService = {
      backendKind: "local",
      create,
      get,
      list,
      remove,
      getDefault: Effect.fail(new Unsupported({ operation: "getDefault", backend: "local" })),
      fs: volumeFs,
      update,
      touch,
      holders: touching({
        acquire: (name, holder, mode) => attachments.acquire(nameKey(name), { holder, mode }),
        list: (name) => attachments.holders(nameKey(name))
      }, touch),
      path
    }
    return { service, attachments }
  })
