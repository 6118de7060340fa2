/**
 * Snapshots, forks and restores of the local backend (SPEC §9).
 *
 * A snapshot lives at `<home>/snapshots/<volume-key>/<snapshot-key>/` (`data/` or
 * `disk.raw`, as a volume does) with a record in the `snapshots` table. It is made the way
 * a volume is created: a `creating` record owned by this process (the one winner of a
 * name, across processes), a copy built under `staging/`, a rename into place, the record
 * marked `ready`. A crash at any point leaves a `creating` record of a dead process or a
 * staging entry, which the next open (or the next look at the volume's snapshots)
 * discards: a snapshot is whole or absent.
 *
 * Copies use `treeCopy.ts` (reflink, else `copy_file_range`; sparse for images). A fork is
 * a volume creation whose build step copies; a restore builds the snapshot's tree beside
 * the volume's and swaps the two with one `renameat2(RENAME_EXCHANGE)` (an image is
 * replaced by one rename), so readers see the old or the restored content.
 *
 * What this needs of the sandbox holders (today `attachments.ts`): who holds a volume and
 * in which mode, and a scoped read-only hold of its own while it copies.
 */
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import type { Scope } from "effect"
import * as NodePath from "node:path"
import { SnapshotInfo } from "../../VolumeBackend.js"
import type { ForkRequest, OnCopyProgress, RestoreRequest, SnapshotRequest, VolumeInfo, VolumeSnapshotsService } from "../../VolumeBackend.js"
import {
  SnapshotAlreadyExists,
  SnapshotNotFound,
  StorageError,
  VolumeInUse,
  VolumeNotFound
} from "../../VolumeError.js"
import type { VolumeAlreadyExists } from "../../VolumeError.js"
import type { VolumeKind } from "../../VolumeSpec.js"
import { nameKey } from "../../VolumeSpec.js"
import type { ValidSpec } from "../../VolumeSpec.js"
import * as CopyProgress from "../copyProgress.js"
import * as Rules from "../snapshotRules.js"
import * as ReadOnlyDriver from "../readOnlyDriver.js"
import * as VolumeFsImpl from "../volumeFs.js"
import type { Attachments } from "./attachments.js"
import { orStorageError } from "./database.js"
import { makeDirectoryDriver } from "./directoryDriver.js"
import { makeDiskDriver, makeDiskSessions } from "./diskDriver.js"
import * as Layout from "./layout.js"
import * as Liveness from "../liveness.js"
import type { Recovery } from "./recovery.js"
import * as TreeCopy from "./treeCopy.js"

/** What the snapshots need of the local backend. */
export interface LocalVolumes {
  readonly layout: Layout.Layout
  readonly attachments: Attachments
  readonly recovery: Recovery
  /** The ready volume of `name`, usage as last measured (no tree walk). */
  readonly find: (name: string) => Effect.Effect<VolumeInfo, VolumeNotFound | StorageError>
  /** Usage of the content under a volume-shaped directory (`data/` or `disk.raw`). */
  readonly measureAt: (kind: VolumeKind, root: string, name: string) => Effect.Effect<number, StorageError>
  /**
   * Creates a volume whose content `fill` puts into the (existing, empty) staging
   * directory; the volume's usage account starts from a measurement of what it put there.
   */
  readonly createWith: <E>(
    spec: ValidSpec,
    fill: (staging: string) => Effect.Effect<void, E>
  ) => Effect.Effect<VolumeInfo, E | VolumeAlreadyExists | StorageError>
}

interface SnapshotRow {
  readonly volume_key: string
  readonly key: string
  readonly volume: string
  readonly name: string
  readonly kind: VolumeKind
  readonly capacity_mib: number | null
  readonly labels: string
  readonly created_at: number
  readonly expires_at: number | null
  readonly used_bytes: number
  readonly state: "creating" | "ready" | "removing"
  readonly owner_pid: number | null
  readonly owner_start: number | null
}

/** `<home>/snapshots`: published snapshots, one directory per volume key. */
export const snapshotsRoot = (layout: Layout.Layout): string => NodePath.join(layout.home, "snapshots")

const snapshotDir = (layout: Layout.Layout, volumeKey: string, key: string): string =>
  NodePath.join(snapshotsRoot(layout), volumeKey, key)


/** The content of a volume-shaped directory: its `data/` tree or its image. */
const contentOf = (kind: VolumeKind, root: string): string =>
  NodePath.join(root, kind === "directory" ? Layout.DATA_DIR : Layout.DISK_IMAGE)

/** Usage of a fresh copy: apparent bytes of a tree, allocated bytes of an image. */
const measureCopy = (volumes: LocalVolumes, kind: VolumeKind, root: string, name: string) =>
  kind === "directory" ? TreeCopy.apparentBytes(contentOf(kind, root)) : volumes.measureAt(kind, root, name)

/**
 * Copies a volume's content. `onProgress` hears of a tree after each `cp` share (figures
 * from a walk of the source) and of an image, one file of `imageBytes` (the usage
 * account's allocation), before and after.
 */
const copyContent = (
  kind: VolumeKind,
  fromRoot: string,
  toRoot: string,
  options: { readonly live: boolean; readonly onProgress: OnCopyProgress | undefined; readonly imageBytes: number }
) => {
  const progress = CopyProgress.make(options.onProgress)
  if (kind === "directory") {
    return TreeCopy.copyDirectory(contentOf(kind, fromRoot), contentOf(kind, toRoot), { live: options.live, progress })
  }
  const image = { bytes: options.imageBytes, files: 1 }
  return progress.report({ bytes: 0, files: 0 }, image).pipe(
    Effect.zipRight(TreeCopy.copyImage(contentOf(kind, fromRoot), contentOf(kind, toRoot))),
    Effect.zipRight(progress.done(image))
  )
}

export const make = (
  volumes: LocalVolumes
): Effect.Effect<VolumeSnapshotsService, StorageError, SqlClient.SqlClient | FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fs = yield* FileSystem.FileSystem
    const { attachments, layout, recovery } = volumes
    // Snapshot images are only ever mounted read-only, so host-side readers need no attachment.
    const snapshotSessions = yield* makeDiskSessions({ runDir: layout.run, acquireExclusive: () => Effect.void, readOnly: true })

    const fsFailure = (what: string) => (cause: PlatformError) =>
      new StorageError({ message: `${what}: ${cause.message}`, cause })

    const toInfo = (row: SnapshotRow): SnapshotInfo =>
      new SnapshotInfo({
        volume: row.volume,
        name: row.name,
        kind: row.kind,
        capacityMib: Option.fromNullable(row.capacity_mib) as Option.Option<never>,
        labels: JSON.parse(row.labels) as ReadonlyArray<readonly [string, string]>,
        createdAt: DateTime.unsafeMake(row.created_at),
        expiresAt: Option.map(Option.fromNullable(row.expires_at), DateTime.unsafeMake),
        usedBytes: row.used_bytes,
        hostPath: Option.some(contentOf(row.kind, snapshotDir(layout, row.volume_key, row.key)))
      }, { disableValidation: true })

    const rowsOf = (volumeKey: string) =>
      sql<SnapshotRow>`SELECT * FROM snapshots WHERE volume_key = ${volumeKey}`.pipe(
        orStorageError("reading snapshot records")
      )

    const findRow = (volumeKey: string, key: string) =>
      sql<SnapshotRow>`SELECT * FROM snapshots WHERE volume_key = ${volumeKey} AND key = ${key}`.pipe(
        orStorageError("reading a snapshot record"),
        Effect.map((rows) => Option.fromNullable(rows[0]))
      )

    // ---- clean-up ----------------------------------------------------------------------

    /** Moves a snapshot's directory to the trash, deletes its record, empties the trash entry. */
    const discard = (row: SnapshotRow, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        const trashed = yield* recovery.moveToTrash(snapshotDir(layout, row.volume_key, row.key), row.volume_key)
        yield* sql`DELETE FROM snapshots WHERE volume_key = ${row.volume_key} AND key = ${row.key}
          AND state = 'removing' AND owner_pid = ${self.pid} AND owner_start = ${self.start}`.pipe(
          orStorageError(`deleting the record of snapshot "${row.name}"`)
        )
        if (Option.isSome(trashed)) yield* recovery.discardTrash(trashed.value)
      }).pipe(Effect.uninterruptible)

    /** Takes over a `creating`/`removing` record of a dead process and discards it; false while its owner lives. */
    const takeOverAbandoned = (row: SnapshotRow) =>
      Effect.gen(function*() {
        if (row.state === "ready" || row.owner_pid === null || row.owner_start === null) return false
        if (yield* Liveness.isAlive({ pid: row.owner_pid, start: row.owner_start })) return false
        const self = yield* Liveness.current
        const claimed = yield* sql<{ readonly key: string }>`UPDATE snapshots
          SET state = 'removing', owner_pid = ${self.pid}, owner_start = ${self.start}
          WHERE volume_key = ${row.volume_key} AND key = ${row.key} AND state = ${row.state}
            AND owner_pid = ${row.owner_pid} AND owner_start = ${row.owner_start}
          RETURNING key`.pipe(orStorageError(`taking over abandoned snapshot "${row.name}"`))
        if (claimed.length > 0) yield* discard(row, self)
        return true
      }).pipe(Effect.uninterruptible)

    /** Finishes what crashed processes left: abandoned records, directories without records. */
    const recoverHome = Effect.gen(function*() {
      const unfinished = yield* sql<SnapshotRow>`SELECT * FROM snapshots WHERE state <> 'ready'`.pipe(
        orStorageError("reading unfinished snapshots")
      )
      for (const row of unfinished) yield* takeOverAbandoned(row)
      const known = new Set(
        (yield* sql<{ readonly volume_key: string; readonly key: string }>`SELECT volume_key, key FROM snapshots`.pipe(
          orStorageError("listing snapshots")
        )).map((row) => `${row.volume_key}/${row.key}`)
      )
      // Snapshots of a volume being renamed (by a live process) move with it.
      const moving = yield* recovery.renames.pendingKeys
      for (const volumeKey of yield* recovery.entries(snapshotsRoot(layout))) {
        if (moving.has(volumeKey)) continue
        for (const key of yield* recovery.entries(NodePath.join(snapshotsRoot(layout), volumeKey))) {
          // A directory is published only while its record exists, so one without is garbage.
          if (known.has(`${volumeKey}/${key}`)) continue
          const trashed = yield* recovery.moveToTrash(snapshotDir(layout, volumeKey, key), volumeKey)
          if (Option.isSome(trashed)) yield* recovery.discardTrash(trashed.value)
        }
      }
    })
    yield* recoverHome

    // ---- holders ------------------------------------------------------------------------

    /** Holders of a volume that may write to it (dead ones were just forgotten by `acquire`). */
    const writers = (volumeKey: string) =>
      sql<{ readonly holder: string }>`SELECT holder FROM attachments WHERE key = ${volumeKey} AND mode = 'rw'`.pipe(
        orStorageError("reading attachments"),
        Effect.map((rows) => rows.map((row) => row.holder))
      )

    /**
     * Holds the volume read-only while its content is copied (so it is not removed, and a
     * disk volume gets no writer meanwhile); a directory volume that a sandbox holds
     * read-write is refused unless `live`.
     */
    const holdForCopy = (info: VolumeInfo, holder: string, live: boolean) =>
      Effect.gen(function*() {
        const key = nameKey(info.name)
        yield* attachments.acquire(key, { holder, mode: "ro" })
        if (live) return
        const busy = yield* writers(key)
        if (busy.length > 0) return yield* new VolumeInUse({ volume: info.name, holders: busy })
      })

    // ---- create -------------------------------------------------------------------------

    const claim = (info: VolumeInfo, request: SnapshotRequest, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        const volumeKey = nameKey(info.name)
        const key = nameKey(request.name)
        const expiresAt = Option.getOrNull(Option.map(request.expiresAt, DateTime.toEpochMillis))
        for (;;) {
          const inserted = yield* sql<{ readonly key: string }>`INSERT INTO snapshots
            (volume_key, key, volume, name, kind, capacity_mib, labels, created_at, expires_at, used_bytes, state,
              owner_pid, owner_start)
            VALUES (${volumeKey}, ${key}, ${info.name}, ${request.name}, ${info.kind},
              ${Option.getOrNull(info.capacityMib)}, ${JSON.stringify(request.labels)},
              ${DateTime.toEpochMillis(request.createdAt)}, ${expiresAt}, 0, 'creating', ${self.pid}, ${self.start})
            ON CONFLICT (volume_key, key) DO NOTHING
            RETURNING key`.pipe(orStorageError(`recording snapshot "${request.name}"`))
          if (inserted.length > 0) return
          const existing = yield* findRow(volumeKey, key)
          if (Option.isNone(existing)) continue
          // A dead process's leftover is discarded; a live creator or a ready snapshot wins.
          if (!(yield* takeOverAbandoned(existing.value))) {
            return yield* new SnapshotAlreadyExists({ volume: info.name, snapshot: request.name })
          }
        }
      })

    const abandon = (volumeKey: string, key: string, staging: string, self: Liveness.ProcessId) =>
      Effect.gen(function*() {
        yield* recovery.discardTrash(staging)
        const owned = yield* sql<SnapshotRow>`UPDATE snapshots SET state = 'removing'
          WHERE volume_key = ${volumeKey} AND key = ${key} AND state = 'creating'
            AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING *`
        for (const row of owned) yield* discard(row, self)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`could not undo a failed snapshot of "${volumeKey}"; it is discarded on next open`, error)
        )
      )

    const publish = (volumeKey: string, key: string, staging: string, self: Liveness.ProcessId, usedBytes: number) =>
      Effect.gen(function*() {
        const target = snapshotDir(layout, volumeKey, key)
        yield* fs.makeDirectory(NodePath.dirname(target), { recursive: true }).pipe(
          Effect.mapError(fsFailure(`cannot create ${NodePath.dirname(target)}`))
        )
        const stale = yield* recovery.moveToTrash(target, volumeKey)
        if (Option.isSome(stale)) yield* recovery.discardTrash(stale.value)
        yield* fs.rename(staging, target).pipe(Effect.mapError(fsFailure(`cannot move the new snapshot into ${target}`)))
        const updated = yield* sql<{ readonly key: string }>`UPDATE snapshots
          SET state = 'ready', owner_pid = NULL, owner_start = NULL, used_bytes = ${usedBytes}
          WHERE volume_key = ${volumeKey} AND key = ${key} AND state = 'creating'
            AND owner_pid = ${self.pid} AND owner_start = ${self.start}
          RETURNING key`.pipe(orStorageError(`marking snapshot "${key}" ready`))
        if (updated.length === 0) {
          return yield* new StorageError({ message: `the record of snapshot "${key}" was taken over while it was made` })
        }
      })

    /** Creates the staging directory `staging` (named after its builder by `Layout.stagingName`). */
    const makeStaging = (staging: string) =>
      fs.makeDirectory(staging, { recursive: true, mode: 0o755 }).pipe(
        Effect.mapError(fsFailure(`cannot create the staging directory ${staging}`))
      )

    const create = Effect.fn("LocalBackend.snapshot")(function*(volume: string, request: SnapshotRequest) {
      const info = yield* volumes.find(volume)
      const volumeKey = nameKey(info.name)
      const key = nameKey(request.name)
      const self = yield* Liveness.current
      const staging = NodePath.join(layout.staging, Layout.stagingName(`${volumeKey}@${key}`, self))
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.scoped(Effect.gen(function*() {
          yield* holdForCopy(info, `snapshot ${request.name}`, request.live)
          yield* claim(info, request, self)
          const usedBytes = yield* restore(Effect.gen(function*() {
            yield* makeStaging(staging)
            yield* copyContent(info.kind, Layout.volumeDir(layout, volumeKey), staging, {
              live: request.live,
              onProgress: request.onProgress,
              imageBytes: info.usedBytes
            })
            return yield* measureCopy(volumes, info.kind, staging, info.name)
          })).pipe(
            Effect.tap((used) => publish(volumeKey, key, staging, self, used)),
            Effect.onError(() => abandon(volumeKey, key, staging, self))
          )
          return Rules.snapshotInfo(info, request, usedBytes, Option.some(contentOf(info.kind, snapshotDir(layout, volumeKey, key))))
        }))
      )
    })

    // ---- read -------------------------------------------------------------------------

    /** The ready volume record's display name; abandoned snapshot records are cleaned on the way. */
    const readyRows = (volume: string) =>
      Effect.gen(function*() {
        const info = yield* volumes.find(volume)
        const rows = yield* rowsOf(nameKey(info.name))
        for (const row of rows) if (row.state !== "ready") yield* takeOverAbandoned(row)
        return { info, rows: rows.filter((row) => row.state === "ready") }
      })

    const list = Effect.fn("LocalBackend.snapshots")(function*(volume: string) {
      return (yield* readyRows(volume)).rows.map(toInfo)
    })

    const findReady = (volume: string, snapshot: string) =>
      Effect.gen(function*() {
        const { info, rows } = yield* readyRows(volume)
        const row = rows.find((r) => r.key === nameKey(snapshot))
        if (row === undefined) return yield* new SnapshotNotFound({ volume: info.name, snapshot })
        return { info, row }
      })

    const get = Effect.fn("LocalBackend.getSnapshot")(function*(volume: string, snapshot: string) {
      return toInfo((yield* findReady(volume, snapshot)).row)
    })

    // ---- remove -------------------------------------------------------------------------

    const remove = Effect.fn("LocalBackend.removeSnapshot")(function*(volume: string, snapshot: string) {
      const { info, row } = yield* findReady(volume, snapshot)
      const mounting = (yield* attachments.holders(row.volume_key)).filter((holder) =>
        holder.endsWith(Rules.snapshotHolder("", row.key))
      )
      if (mounting.length > 0) return yield* new VolumeInUse({ volume: `${info.name}@${row.name}`, holders: mounting })
      const self = yield* Liveness.current
      const claimed = yield* sql<{ readonly key: string }>`UPDATE snapshots
        SET state = 'removing', owner_pid = ${self.pid}, owner_start = ${self.start}
        WHERE volume_key = ${row.volume_key} AND key = ${row.key} AND state = 'ready'
        RETURNING key`.pipe(orStorageError(`marking snapshot "${row.name}" for removal`))
      if (claimed.length === 0) return yield* new SnapshotNotFound({ volume: info.name, snapshot })
      yield* discard(row, self)
    }, Effect.uninterruptible)

    // ---- fork ---------------------------------------------------------------------------

    const fork = Effect.fn("LocalBackend.fork")(function*(
      source: string,
      snapshot: Option.Option<string>,
      request: ForkRequest
    ) {
      return yield* Effect.scoped(Effect.gen(function*() {
        const { content, info, usedBytes: sourceBytes } = Option.isSome(snapshot)
          ? yield* Effect.map(findReady(source, snapshot.value), ({ info, row }) => ({
            info,
            content: snapshotDir(layout, row.volume_key, row.key),
            usedBytes: row.used_bytes
          }))
          : yield* Effect.map(volumes.find(source), (info) => ({
            info,
            content: Layout.volumeDir(layout, nameKey(info.name)),
            usedBytes: info.usedBytes
          }))
        const target = yield* Rules.forkSpec(info, request)
        const live = request.live && info.kind === "directory"
        if (Option.isNone(snapshot)) yield* holdForCopy(info, `fork to ${target.name}`, live)
        // The copy is measured for the target's quota here, and for its usage account by createWith.
        const created = yield* volumes.createWith(target, (staging) =>
          Effect.gen(function*() {
            yield* copyContent(info.kind, content, staging, { live, onProgress: request.onProgress, imageBytes: sourceBytes })
            const usedBytes = yield* measureCopy(volumes, info.kind, staging, target.name)
            yield* Rules.checkTargetQuota(target, usedBytes)
          }))
        return created
      }))
    })

    // ---- restore ------------------------------------------------------------------------

    const restore = Effect.fn("LocalBackend.restore")(function*(
      volume: string,
      snapshot: string,
      request: RestoreRequest = {}
    ) {
      const { info, row } = yield* findReady(volume, snapshot)
      const volumeKey = nameKey(info.name)
      const holder = `restore from snapshot ${row.name}`
      const self = yield* Liveness.current
      yield* Effect.scoped(Effect.gen(function*() {
        const others = (yield* attachments.holders(volumeKey)).filter((h) => h !== holder)
        if (others.length > 0) return yield* new VolumeInUse({ volume: info.name, holders: others })
        // Exclusive for a disk volume; for a directory volume it keeps the volume from being removed.
        yield* attachments.acquire(volumeKey, { holder, mode: "rw" })
        const still = (yield* attachments.holders(volumeKey)).filter((h) => h !== holder)
        if (still.length > 0) return yield* new VolumeInUse({ volume: info.name, holders: still })
        const staging = NodePath.join(layout.staging, Layout.stagingName(`${volumeKey}@restore`, self))
        yield* makeStaging(staging)
        const volumeRoot = Layout.volumeDir(layout, volumeKey)
        yield* Effect.gen(function*() {
          yield* copyContent(info.kind, snapshotDir(layout, row.volume_key, row.key), staging, {
            live: false,
            onProgress: request.onProgress,
            imageBytes: row.used_bytes
          })
          // The swap is one step; from then on staging holds the old content (garbage).
          yield* Effect.uninterruptible(
            info.kind === "directory"
              ? TreeCopy.exchange(contentOf(info.kind, staging), contentOf(info.kind, volumeRoot))
              : fs.rename(contentOf(info.kind, staging), contentOf(info.kind, volumeRoot)).pipe(
                Effect.mapError(fsFailure(`cannot replace the disk image of volume "${info.name}"`))
              )
          )
        }).pipe(Effect.ensuring(recovery.discardTrash(staging)))
        // The restored tree's allocation and file count were not measured: the next get does.
        // A disk volume gets the snapshot's image, hence its size (it may have grown since).
        yield* sql`UPDATE volumes SET used_bytes = ${row.used_bytes}, usage_stale = 1, capacity_mib = ${row.capacity_mib}
          WHERE key = ${volumeKey} AND state = 'ready'`.pipe(
          orStorageError(`storing the usage of volume "${info.name}"`)
        )
      }))
    })

    // ---- files --------------------------------------------------------------------------

    const snapshotFs = (info: SnapshotInfo) => {
      const root = snapshotDir(layout, nameKey(info.volume), nameKey(info.name))
      const display = `${info.volume}@${info.name}`
      const driver = info.kind === "directory"
        ? makeDirectoryDriver({ root: contentOf("directory", root), volume: display })
        : makeDiskDriver({ image: contentOf("disk", root), volume: display, sessions: snapshotSessions })
      return VolumeFsImpl.make({
        volume: display,
        driver: ReadOnlyDriver.make(driver),
        quotaBytes: Option.none(),
        writeLock: Effect.unsafeMakeSemaphore(1)
      })
    }

    return { create, list, get, remove, fork, restore, fs: snapshotFs }
  })
