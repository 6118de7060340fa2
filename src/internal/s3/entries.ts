/**
 * What a path is in one volume's objects, and the checks every change makes (shared by the
 * driver's file operations, the streaming writer and the tree operations).
 *
 * - A regular file is one object; a directory is a zero-byte marker ending in `/`, **or** any
 *   key below it: a directory whose marker was lost (a write landing while another machine
 *   renamed its parent) is still a directory for `stat`, `list` and `removeDir`.
 * - One path is never both: a write that creates a file and a write that creates a
 *   directory at the same path each check for the other *after* publishing (the store is
 *   strongly consistent, so at least one sees the other) and the one that sees a conflict
 *   undoes its own change and fails (`IsADirectory` / `NotADirectory`). Both may fail; both
 *   never succeed.
 * - Keys are limited to `MAX_KEY_BYTES`: paths longer than the budget left by the volume's
 *   prefix are `InvalidPath` before any request is made.
 */
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { InvalidPath, PathNotFound, StorageError, VolumeFsError, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsErrorReason, VolumeFsFailure } from "../../VolumeError.js"
import * as Paths from "../paths.js"
import type { ObjectHead, ObjectMetadata, S3 } from "./client.js"
import { bareEtag } from "./client.js"
import { ancestors, directoryKey, fileKey, MAX_KEY_BYTES } from "./layout.js"
import * as Records from "./records.js"
import type { Versioned } from "./records.js"
import type { Counter } from "./usage.js"

/** Parallel requests of tree operations (copy, rename, marker checks). */
export const TREE_CONCURRENCY = 16

/** Attempts of a conditional file PUT that keeps losing to concurrent writers of the same file. */
const WRITE_ATTEMPTS = 20

export interface EntriesOptions {
  readonly s3: S3
  /** Display name, for `VolumeNotFound`. */
  readonly volume: string
  readonly recordKey: string
  /** The incarnation this driver is bound to. */
  readonly id: string
  readonly dataPrefix: string
  readonly counter: Counter
}

/** What a path is in the store. */
export type Probe =
  | { readonly kind: "file"; readonly head: ObjectHead }
  | { readonly kind: "directory"; readonly modified: Option.Option<Date> }
  | { readonly kind: "missing" }

export const fsError = (path: Paths.Segments, reason: VolumeFsErrorReason, detail?: string) =>
  new VolumeFsError(detail === undefined ? { path: Paths.format(path), reason } : { path: Paths.format(path), reason, detail })

export const EMPTY = new Uint8Array(0)

const md5 = (data: Uint8Array) => createHash("md5").update(data).digest("hex")

export const make = (options: EntriesOptions) => {
  const { counter, dataPrefix, id, recordKey, s3, volume } = options
  const fileOf = (path: Paths.Segments) => fileKey(dataPrefix, path)
  const dirOf = (path: Paths.Segments) => directoryKey(dataPrefix, path)
  /** Bytes a path (without its leading `/`) may have: the key limit minus prefix and marker slash. */
  const pathBudget = MAX_KEY_BYTES - Buffer.byteLength(dataPrefix) - 1

  /** `InvalidPath` when `path` (or `extraBytes` more below it) would not fit in a key. */
  const checkLength = (path: Paths.Segments, extraBytes = 0): Effect.Effect<void, InvalidPath> => {
    const bytes = Buffer.byteLength(path.join("/")) + extraBytes
    return bytes <= pathBudget ? Effect.void : Effect.fail(
      new InvalidPath({
        path: Paths.format(path),
        reason: `the path is ${bytes} bytes long; this volume's path budget is ${pathBudget} bytes ` +
          `(the store's ${MAX_KEY_BYTES}-byte key limit minus the volume's key prefix)`
      })
    )
  }

  /** This incarnation's record; `VolumeNotFound` once it was removed (even if re-created). */
  const loadVolume: Effect.Effect<Versioned, VolumeNotFound | StorageError> = Effect.flatMap(
    Records.read(s3, recordKey),
    (found) =>
      Option.isSome(found) && found.value.record.id === id
        ? Effect.succeed(found.value)
        : Effect.fail(new VolumeNotFound({ volume }))
  )

  /** Whether any object lies below directory `path` (its marker included). */
  const hasObjectsBelow = (path: Paths.NonRootSegments) =>
    Effect.map(s3.list(dirOf(path), { limit: 1 }), (listing) => listing.objects.length > 0)

  /** File and marker only (two HEADs): what writes check before publishing. */
  const probeObjects = (path: Paths.NonRootSegments): Effect.Effect<Probe, StorageError> =>
    Effect.map(
      Effect.all([s3.head(fileOf(path)), s3.head(dirOf(path))], { concurrency: 2 }),
      ([file, dir]): Probe =>
        Option.isSome(dir)
          ? { kind: "directory", modified: Option.some(dir.value.modified) }
          : Option.isSome(file)
          ? { kind: "file", head: file.value }
          : { kind: "missing" }
    )

  /** What `path` is, a directory without a marker included (one LIST on a miss). */
  const probe = (path: Paths.NonRootSegments): Effect.Effect<Probe, StorageError> =>
    Effect.flatMap(probeObjects(path), (found) =>
      found.kind !== "missing"
        ? Effect.succeed(found)
        : Effect.map(hasObjectsBelow(path), (below): Probe =>
          below ? { kind: "directory", modified: Option.none() } : found))

  /**
   * The parents of `path`: a file among them is `NotADirectory` (reported at `path`, as a
   * POSIX walk would); missing directory markers are returned so a write can create them.
   */
  const planParents = (path: Paths.NonRootSegments) =>
    Effect.gen(function*() {
      const parents = ancestors(path)
      const found = yield* Effect.forEach(
        parents,
        (dir) => Effect.all([s3.head(fileOf(dir)), s3.head(dirOf(dir))], { concurrency: 2 }),
        { concurrency: TREE_CONCURRENCY }
      )
      if (found.some(([file, marker]) => Option.isSome(file) && Option.isNone(marker))) {
        return yield* fsError(path, "NotADirectory")
      }
      return { missing: parents.filter((_, i) => Option.isNone(found[i]![1])) }
    })

  const createMarkers = (dirs: ReadonlyArray<Paths.Segments>) =>
    Effect.forEach(dirs, (dir) => s3.put(dirOf(dir), EMPTY, "application/x-directory"), {
      concurrency: TREE_CONCURRENCY,
      discard: true
    })

  /**
   * After creating the markers of `dirs`: if a file appeared at one of them meanwhile, undo
   * the markers (and `undo`) and fail `NotADirectory` at `path`.
   */
  const guardMarkers = (
    path: Paths.NonRootSegments,
    dirs: ReadonlyArray<Paths.Segments>,
    undo: Effect.Effect<void, StorageError> = Effect.void
  ) =>
    Effect.gen(function*() {
      if (dirs.length === 0) return
      const files = yield* Effect.forEach(dirs, (dir) => s3.head(fileOf(dir)), { concurrency: TREE_CONCURRENCY })
      if (!files.some(Option.isSome)) return
      yield* undo
      yield* Effect.forEach(dirs, (dir) => s3.delete(dirOf(dir)), { concurrency: TREE_CONCURRENCY, discard: true })
      return yield* fsError(path, "NotADirectory", "a file was created at a parent meanwhile")
    })

  /** Deletes the object at `key` if it is still the one with `etag` (undoing our own write). */
  const deleteIfOurs = (key: string, etag: string) =>
    Effect.flatMap(s3.head(key), (head) =>
      Option.isSome(head) && bareEtag(head.value.etag) === bareEtag(etag) ? s3.delete(key) : Effect.void)

  /**
   * After a new file landed at `path`: if a directory appeared there meanwhile, delete the
   * file again and fail `IsADirectory`.
   */
  const guardNewFile = (path: Paths.NonRootSegments, etag: string) =>
    Effect.flatMap(hasObjectsBelow(path), (below) =>
      below
        ? Effect.zipRight(deleteIfOurs(fileOf(path), etag), fsError(path, "IsADirectory", "a directory was created here meanwhile"))
        : Effect.void)

  /**
   * Publishes `data` at `path` with a conditional PUT against what was there (`If-Match` on
   * the replaced file's ETag, `If-None-Match: *` for a new one), so the bytes replaced are
   * exactly known. Returns the new ETag and the bytes replaced; `None` if the path changed
   * since `target` was probed (the caller probes again).
   */
  const putFile = (path: Paths.NonRootSegments, data: Uint8Array, target: Probe, metadata?: ObjectMetadata) =>
    Effect.gen(function*() {
      const key = fileOf(path)
      const condition = target.kind === "file" ? { ifMatch: target.head.etag } : { ifNoneMatch: "*" as const }
      const outcome = yield* s3.putConditional(key, data, condition, "application/octet-stream", metadata)
      const replaced = target.kind === "file" ? target.head.size : 0
      if (outcome._tag === "Written") {
        const etag = Option.getOrElse(outcome.etag, () => md5(data))
        return Option.some({ etag, replaced })
      }
      if (outcome._tag !== "Unknown") return Option.none()
      // The answer was lost: our bytes are there if the object's ETag is their MD5.
      const now = yield* s3.head(key)
      const ours = Option.isSome(now) && bareEtag(now.value.etag) === md5(data)
      return ours ? Option.some({ etag: now.value.etag, replaced }) : Option.none()
    })

  /**
   * After an object landed: account for it, or, if the volume was removed meanwhile,
   * delete it again so a removed volume is never resurrected.
   */
  const settle = (key: string, delta: number, known: Option.Option<Versioned>) =>
    counter.add(delta, known).pipe(
      Effect.tapErrorTag("VolumeNotFound", () => Effect.ignore(s3.delete(key)))
    )

  /**
   * The error for a path that is not there: `VolumeNotFound` if the volume went away,
   * `NotADirectory` if a parent is a file, else `PathNotFound`.
   */
  const missing = (path: Paths.Segments): Effect.Effect<never, VolumeFsFailure> =>
    Effect.gen(function*() {
      yield* loadVolume
      if (Paths.isNonRoot(path)) yield* planParents(path)
      return yield* new PathNotFound({ path: Paths.format(path) })
    })

  /**
   * What every write checks before it publishes: the volume exists, no parent is a file,
   * the target is not a directory.
   */
  const prepareWrite = (path: Paths.NonRootSegments) =>
    Effect.gen(function*() {
      yield* checkLength(path)
      const [versioned, target, parents] = yield* Effect.all([loadVolume, probeObjects(path), planParents(path)], {
        concurrency: 3
      })
      if (target.kind === "directory") return yield* fsError(path, "IsADirectory")
      return { versioned, target, parents } as const
    })

  /**
   * A whole-buffer write: checks, parents, a conditional PUT (again if a concurrent writer
   * of the same file won), the file/directory guards, then the usage delta. Once the object
   * landed the rest is a state transition and runs uninterruptibly.
   */
  /** A whole-object write; `metadata` carries a mode or a symlink's target (SPEC §11). */
  const writeWhole = (
    path: Paths.NonRootSegments,
    data: Uint8Array,
    metadata?: ObjectMetadata
  ): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
        const { parents, target, versioned } = yield* prepareWrite(path)
        yield* createMarkers(parents.missing)
        const landed = yield* Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(restore(putFile(path, data, target, metadata)), (put) =>
            Option.match(put, {
              onNone: () => Effect.succeed(false),
              onSome: ({ etag, replaced }) =>
                Effect.gen(function*() {
                  const undo = target.kind === "missing" ? deleteIfOurs(fileOf(path), etag) : Effect.void
                  yield* guardMarkers(path, parents.missing, undo)
                  if (target.kind === "missing") yield* guardNewFile(path, etag)
                  yield* settle(fileOf(path), data.byteLength - replaced, Option.some(versioned))
                  return true
                })
            })))
        if (landed) return
      }
      return yield* new StorageError({
        message: `writing ${Paths.format(path)} did not settle after ${WRITE_ATTEMPTS} attempts (concurrent writers of the same file)`,
        reason: "Conflict",
        operation: "write"
      })
    })

  return {
    s3,
    counter,
    dataPrefix,
    fileOf,
    dirOf,
    checkLength,
    loadVolume,
    probe,
    probeObjects,
    planParents,
    createMarkers,
    guardMarkers,
    guardNewFile,
    deleteIfOurs,
    settle,
    missing,
    prepareWrite,
    writeWhole
  } as const
}

export type Entries = ReturnType<typeof make>
