/**
 * Growing a local disk volume (`Volume.update(name, { size })`, SPEC §10): the raw image is
 * extended and its ext4 file system grown offline with e2fsprogs' `resize2fs`, while the
 * resizer holds the volume exclusively (no sandbox, no host mount).
 *
 * An offline `resize2fs` killed half way leaves a broken file system, so every block the
 * tools overwrite is first saved in an undo file (`-z`, replayed by `e2undo`): e2fsprogs
 * writes the old contents, its key and the undo header to the undo file before it writes
 * the block itself, so after a kill -9 at any moment the undo file holds every block that
 * changed (not after a power failure: nothing is fsync'd, as for every other local write).
 *
 * Steps, with the volume held:
 * 1. journal `resize.json` { fromMib, toMib } beside the image (temporary file + rename);
 * 2. `e2fsck -fy -z resize.e2undo` (resize2fs wants a checked file system; a sandbox that
 *    was killed may have left the journal to replay);
 * 3. extend the image file; 4. `resize2fs -z resize.e2undo image <to>M`;
 * 5. commit: the record's `capacity_mib` from → to (one conditional statement);
 * 6. delete the undo file, then the journal.
 *
 * A journal found later means a resize died: committed (the record says `toMib`) → only
 * the files go; otherwise it is rolled back: `e2undo` (when the undo file got a header;
 * before that nothing was overwritten), the image truncated to `fromMib`, `e2fsck -fy`
 * (e2undo marks the file system unchecked), files deleted. Every step can run again.
 * Recovery happens the next time anyone acquires the volume (every mount, sandbox,
 * snapshot and resize does), so a half-grown image is never used.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { BYTES_PER_MIB } from "../../Size.js"
import type { Mebibytes } from "../../Size.js"
import type { VolumeInfo } from "../../VolumeBackend.js"
import { StorageError } from "../../VolumeError.js"
import type { InvalidConfig, VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import { planGrow } from "../diskGrow.js"
import type { Attachments } from "./attachments.js"
import { orStorageError } from "./database.js"
import { runTool } from "./diskImage.js"
import { errnoCode } from "./errno.js"
import * as Layout from "./layout.js"

/** The journal of a resize in progress, beside the image. */
export const JOURNAL = "resize.json"
/** The blocks the resize overwrote, as e2undo reads them. */
export const UNDO_FILE = "resize.e2undo"
/** Holder label of the resizer (and of a recovery) while it holds the volume. */
export const RESIZE_HOLDER = "resize"

/** What a resize in progress is doing. */
interface Journal {
  readonly fromMib: number
  readonly toMib: number
}

const E2UNDO_MAGIC = "E2UNDO02"

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export interface DiskResize {
  /** `attachments` that first finish any resize a dead process left on the volume. */
  readonly attachments: Attachments
  /**
   * Grows the disk volume to `sizeMib` (see the module comment); `current` reads the
   * volume's record as it is now.
   */
  readonly grow: (
    name: string,
    sizeMib: Mebibytes,
    current: (name: string) => Effect.Effect<VolumeInfo, VolumeNotFound | StorageError>
  ) => Effect.Effect<VolumeInfo, VolumeNotFound | VolumeInUse | InvalidConfig | StorageError>
}

export const make = (
  layout: Layout.Layout,
  attachments: Attachments
): Effect.Effect<DiskResize, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const paths = (key: string) => {
      const dir = Layout.volumeDir(layout, key)
      return {
        journal: NodePath.join(dir, JOURNAL),
        undo: NodePath.join(dir, UNDO_FILE),
        image: Layout.diskImage(layout, key)
      }
    }

    /** A file operation; a failure is a `StorageError` saying what was being done. */
    const io = <A>(what: string, run: () => A) =>
      Effect.try({ try: run, catch: (error) => new StorageError({ message: `${what}: ${describe(error)}`, cause: error }) })

    const readJournal = (key: string) =>
      io(`cannot read the resize journal of volume "${key}"`, (): Option.Option<Journal> => {
        try {
          const parsed: unknown = JSON.parse(NodeFs.readFileSync(paths(key).journal, "utf8"))
          const { fromMib, toMib } = parsed as Record<string, unknown>
          if (typeof fromMib !== "number" || typeof toMib !== "number") throw new Error(`unexpected journal ${JSON.stringify(parsed)}`)
          return Option.some({ fromMib, toMib })
        } catch (error) {
          if (errnoCode(error) === "ENOENT") return Option.none()
          throw error
        }
      })

    const writeJournal = (key: string, journal: Journal) =>
      io(`cannot write the resize journal of volume "${key}"`, () => {
        const { journal: path } = paths(key)
        NodeFs.writeFileSync(`${path}.tmp`, JSON.stringify(journal), { mode: 0o600 })
        NodeFs.renameSync(`${path}.tmp`, path)
      })

    /** Deletes the undo file, then the journal (which marks the resize finished). */
    const finish = (key: string) =>
      io(`cannot delete the resize files of volume "${key}"`, () => {
        const { journal, undo } = paths(key)
        NodeFs.rmSync(undo, { force: true })
        NodeFs.rmSync(journal, { force: true })
      })

    /** Whether e2fsprogs got as far as writing the undo file's header (before that, nothing changed). */
    const undoStarted = (key: string) =>
      io(`cannot read the undo file of volume "${key}"`, () => {
        try {
          return NodeFs.readFileSync(paths(key).undo).subarray(0, E2UNDO_MAGIC.length).toString("latin1") === E2UNDO_MAGIC
        } catch (error) {
          if (errnoCode(error) === "ENOENT") return false
          throw error
        }
      })

    const checkFileSystem = (key: string, undo: Option.Option<string>) =>
      runTool(
        "e2fsck",
        ["-f", "-y", ...Option.match(undo, { onNone: () => [], onSome: (file) => ["-z", file] }), paths(key).image],
        `checking the file system of disk volume "${key}"`,
        // 1: errors corrected (e.g. the journal of a killed sandbox replayed).
        [1]
      )

    /** Puts the image back as it was before the resize `journal` describes. */
    const rollBack = (key: string, journal: Journal) =>
      Effect.gen(function*() {
        const { image, undo } = paths(key)
        const replay = yield* undoStarted(key)
        // -f: the undo file may be unfinished, or its copy of the superblock older than the image's.
        if (replay) yield* runTool("e2undo", ["-f", undo, image], `undoing the resize of disk volume "${key}"`)
        yield* io(`cannot truncate the image of disk volume "${key}"`, () => {
          if (NodeFs.statSync(image).size > journal.fromMib * BYTES_PER_MIB) NodeFs.truncateSync(image, journal.fromMib * BYTES_PER_MIB)
        })
        // e2undo leaves the file system marked unchecked.
        if (replay) yield* checkFileSystem(key, Option.none())
        yield* finish(key)
      })

    /** Finishes a resize that died (this process holds the volume). */
    const recoverHeld = (key: string) =>
      Effect.gen(function*() {
        const journal = yield* readJournal(key)
        if (Option.isNone(journal)) return
        const rows = yield* sql<{ readonly capacity_mib: number | null }>`SELECT capacity_mib FROM volumes
          WHERE key = ${key}`.pipe(orStorageError(`reading the size of volume "${key}"`))
        const committed = rows[0]?.capacity_mib === journal.value.toMib
        yield* Effect.logWarning(
          `finishing the interrupted resize of disk volume "${key}" (${committed ? "keeping" : "undoing"} it)`
        )
        if (committed) yield* finish(key)
        else yield* rollBack(key, journal.value)
      })

    const hold = (key: string) => attachments.acquire(key, { holder: RESIZE_HOLDER, mode: "rw" })

    /** One `stat` when nothing is pending; otherwise holds the volume and recovers it. */
    const recoverPending = (key: string) =>
      Effect.suspend(() =>
        NodeFs.existsSync(paths(key).journal)
          ? Effect.scoped(Effect.zipRight(hold(key), recoverHeld(key))).pipe(Effect.uninterruptible)
          : Effect.void
      )

    const guarded: Attachments = {
      ...attachments,
      acquire: (key, options) => Effect.zipRight(recoverPending(key), attachments.acquire(key, options))
    }

    /** Steps 1–6 of the module comment, with the volume held; any failure rolls back. */
    const growHeld = (key: string, name: string, fromMib: Mebibytes, toMib: Mebibytes) =>
      Effect.gen(function*() {
        const { image, undo } = paths(key)
        const journal = { fromMib, toMib }
        yield* io(`cannot clear an old undo file of volume "${name}"`, () => NodeFs.rmSync(undo, { force: true }))
        yield* writeJournal(key, journal)
        yield* Effect.gen(function*() {
          yield* checkFileSystem(key, Option.some(undo))
          yield* io(`cannot extend the image of disk volume "${name}"`, () => NodeFs.truncateSync(image, toMib * BYTES_PER_MIB))
          yield* runTool("resize2fs", ["-z", undo, image, `${toMib}M`], `growing the file system of disk volume "${name}"`)
          const committed = yield* sql<{ readonly key: string }>`UPDATE volumes SET capacity_mib = ${toMib}
            WHERE key = ${key} AND state = 'ready' AND capacity_mib = ${fromMib} RETURNING key`.pipe(
            orStorageError(`recording the new size of volume "${name}"`)
          )
          if (committed.length === 0) {
            return yield* new StorageError({ message: `the record of volume "${name}" changed while it was resized` })
          }
        }).pipe(
          Effect.tapError(() =>
            rollBack(key, journal).pipe(
              Effect.catchAll((error) =>
                Effect.logError(`could not undo the failed resize of volume "${name}"; it is undone on next use`, error)
              )
            )
          )
        )
        yield* finish(key)
      })

    const grow: DiskResize["grow"] = (name, sizeMib, current) =>
      Effect.gen(function*() {
        const key = nameKey(name)
        // Refuse what cannot grow before holding it (holding a directory volume marks its usage stale).
        const before = yield* current(name)
        if ((yield* planGrow(before, sizeMib))._tag === "Unchanged") return before
        return yield* Effect.scoped(Effect.gen(function*() {
          yield* hold(key)
          yield* recoverHeld(key)
          const info = yield* current(name)
          const plan = yield* planGrow(info, sizeMib)
          if (plan._tag === "Unchanged") return info
          yield* growHeld(key, info.name, plan.fromMib, plan.toMib)
          return yield* current(name)
        }))
      }).pipe(Effect.uninterruptible, Effect.withSpan("LocalBackend.grow"))

    return { attachments: guarded, grow }
  })
