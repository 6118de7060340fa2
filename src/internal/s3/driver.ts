/**
 * An `FsDriver` over one volume's objects (layout in `layout.ts`): a regular file is one
 * object, a directory is a zero-byte marker object ending in `/` (so empty directories
 * exist), listings use the `/` delimiter, and trees are copied and moved object by object
 * with server-side CopyObject and removed with batched DeleteObjects.
 *
 * Every write is published whole: a single PutObject, or a multipart upload that becomes
 * visible only on CompleteMultipartUpload and is aborted when its scope closes first. The
 * volume's usage counter lives in its record and is moved by compare-and-swap after each
 * change, so measuring the volume costs one GET instead of a listing.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { DateTime, Effect, Fiber, Option, Stream } from "effect"
import type { Scope } from "effect"
import { PathNotFound, StorageError, VolumeFsError, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsErrorReason, VolumeFsFailure } from "../../VolumeError.js"
import { FsEntry, FsMetadata } from "../../VolumeFs.js"
import type { FsDriver, FsWriter } from "../fsDriver.js"
import * as Paths from "../paths.js"
import type { ListedObject, ObjectHead, ObjectMetadata, S3 } from "./client.js"
import { ancestors, directoryKey, fileKey } from "./layout.js"
import * as Links from "./links.js"
import * as Records from "./records.js"
import type { Versioned } from "./records.js"

/** Modes reported for objects (the store keeps none): what umask 022 gives. */
const FILE_MODE = 0o644
const DIRECTORY_MODE = 0o755
/** Directories report one ext4 block, as on the local and memory backends. */
const DIRECTORY_SIZE = 4096
const OWNER_UID = process.getuid?.() ?? 0
const OWNER_GID = process.getgid?.() ?? 0

/** Size of a multipart upload's parts (S3 wants at least 5 MiB for all but the last). */
export const PART_BYTES = 8 * 1024 * 1024
/** Part uploads of one `writeStream` running at once (memory: this many parts plus one). */
const PARTS_IN_FLIGHT = 3
/** Bytes fetched by one ranged GET of `readStream`. */
export const RANGE_BYTES = 8 * 1024 * 1024
/** Parallel requests of tree operations (copy, rename, marker checks). */
const TREE_CONCURRENCY = 16

export interface S3DriverOptions {
  readonly s3: S3
  /** Display name, for `VolumeNotFound`. */
  readonly volume: string
  readonly recordKey: string
  /** The incarnation this driver is bound to. */
  readonly id: string
  readonly dataPrefix: string
}

/** What a path is in the store. */
type Probe =
  | { readonly kind: "file"; readonly head: ObjectHead }
  | { readonly kind: "directory"; readonly modified: Option.Option<Date> }
  | { readonly kind: "missing" }

/** What the parents of a path to be written look like. */
interface ParentsPlan {
  /** Directory markers to create (outermost first), so the new entry has visible parents. */
  readonly missingMarkers: ReadonlyArray<string>
}

const fsError = (path: Paths.Segments, reason: VolumeFsErrorReason, detail?: string) =>
  new VolumeFsError(detail === undefined ? { path: Paths.format(path), reason } : { path: Paths.format(path), reason, detail })

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const utc = (date: Date): DateTime.Utc => DateTime.unsafeMake(date.getTime())

const fileFields = (path: Paths.Segments, head: { readonly size: number; readonly modified: Date }) => ({
  path: Paths.format(path),
  kind: "file" as const,
  size: head.size,
  mode: FILE_MODE,
  uid: OWNER_UID,
  gid: OWNER_GID,
  modified: Option.some(utc(head.modified))
})

const directoryFields = (path: Paths.Segments, modified: Option.Option<Date>) => ({
  path: Paths.format(path),
  kind: "directory" as const,
  size: DIRECTORY_SIZE,
  mode: DIRECTORY_MODE,
  uid: OWNER_UID,
  gid: OWNER_GID,
  modified: Option.map(modified, utc)
})

const toMetadata = (fields: ReturnType<typeof fileFields> | ReturnType<typeof directoryFields>) =>
  new FsMetadata({ ...fields, readonly: false, accessed: fields.modified, created: Option.none() })

const EMPTY = new Uint8Array(0)

export const make = (options: S3DriverOptions): FsDriver => {
  const { dataPrefix, id, recordKey, s3, volume } = options
  const fileOf = (path: Paths.Segments) => fileKey(dataPrefix, path)
  const dirOf = (path: Paths.Segments) => directoryKey(dataPrefix, path)

  /** This incarnation's record; `VolumeNotFound` once it was removed (even if re-created). */
  const loadVolume: Effect.Effect<Versioned, VolumeNotFound | StorageError> = Effect.flatMap(
    Records.read(s3, recordKey),
    (found) =>
      Option.isSome(found) && found.value.record.id === id
        ? Effect.succeed(found.value)
        : Effect.fail(new VolumeNotFound({ volume: volume }))
  )

  /** Moves the usage counter by `delta` bytes. */
  const addUsage = (delta: number, known: Option.Option<Versioned> = Option.none()) =>
    delta === 0 && Option.isSome(known)
      ? Effect.void
      : Records.update(
        s3,
        recordKey,
        id,
        volume,
        (record) => new Records.VolumeRecord({ ...record, usedBytes: Math.max(0, record.usedBytes + delta) }),
        known
      ).pipe(Effect.asVoid)

  const probe = (path: Paths.NonRootSegments): Effect.Effect<Probe, StorageError> =>
    Effect.map(
      Effect.all([s3.head(fileOf(path)), s3.head(dirOf(path))], { concurrency: 2 }),
      ([file, dir]): Probe =>
        Option.isSome(dir)
          ? { kind: "directory", modified: Option.some(dir.value.modified) }
          : Option.isSome(file)
          ? { kind: "file", head: file.value }
          : { kind: "missing" }
    )

  /**
   * The parents of `path`: a file among them is `NotADirectory` (reported at `path`, as a
   * POSIX walk would); missing directory markers are returned so a write can create them.
   */
  const planParents = (path: Paths.NonRootSegments): Effect.Effect<ParentsPlan, VolumeFsError | StorageError> =>
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
      return { missingMarkers: parents.filter((_, i) => Option.isNone(found[i]![1])).map(dirOf) }
    })

  const createMarkers = (keys: ReadonlyArray<string>) =>
    Effect.forEach(keys, (key) => s3.put(key, EMPTY, "application/x-directory"), {
      concurrency: TREE_CONCURRENCY,
      discard: true
    })

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

  /** Every object at or below directory `path` (its marker included). */
  const listTree = (path: Paths.NonRootSegments) => Effect.map(s3.list(dirOf(path)), (listing) => listing.objects)

  const bytesOf = (objects: ReadonlyArray<ListedObject>) =>
    objects.reduce((sum, object) => (object.key.endsWith("/") ? sum : sum + object.size), 0)

  /** Copies each object below `from` to the same place below `to`. */
  const copyTree = (objects: ReadonlyArray<ListedObject>, from: Paths.NonRootSegments, to: Paths.NonRootSegments) => {
    const source = dirOf(from)
    const target = dirOf(to)
    return Effect.forEach(
      objects,
      // An object removed meanwhile (copy answers None) is simply not part of the copy.
      (object) => Effect.asVoid(s3.copy(object.key, target + object.key.slice(source.length))),
      { concurrency: TREE_CONCURRENCY, discard: true }
    ).pipe(
      // The target directory exists even if the source had no marker of its own (a copied
      // marker is kept: it carries the directory's mode).
      Effect.zipRight(objects.some((object) => object.key === source) ? Effect.void : s3.put(target, EMPTY, "application/x-directory"))
    )
  }

  const stat = (path: Paths.Segments): Effect.Effect<FsMetadata, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) {
        const { record } = yield* loadVolume
        return toMetadata(directoryFields(path, Option.some(new Date(record.createdAt))))
      }
      const found = yield* probe(path)
      switch (found.kind) {
        case "file":
          return toMetadata(fileFields(path, found.head))
        case "directory":
          return toMetadata(directoryFields(path, found.modified))
        case "missing":
          return yield* missing(path)
      }
    })

  const list = (path: Paths.Segments): Effect.Effect<ReadonlyArray<FsEntry>, VolumeFsFailure> =>
    Effect.gen(function*() {
      const prefix = dirOf(path)
      const [listing] = yield* Effect.all(
        [s3.list(prefix, { delimiter: "/" }), Paths.isNonRoot(path) ? Effect.void : loadVolume],
        { concurrency: 2 }
      )
      const files = listing.objects.filter((object) => object.key !== prefix)
      const hasMarker = files.length !== listing.objects.length
      if (Paths.isNonRoot(path) && !hasMarker && files.length === 0 && listing.prefixes.length === 0) {
        if (Option.isSome(yield* s3.head(fileOf(path)))) return yield* fsError(path, "NotADirectory")
        return yield* missing(path)
      }
      const directories = yield* Effect.forEach(
        listing.prefixes,
        (common) => {
          const name = common.slice(prefix.length, -1)
          return Effect.map(s3.head(common), (marker) =>
            new FsEntry(directoryFields(Paths.child(path, name), Option.map(marker, (m) => m.modified))))
        },
        { concurrency: TREE_CONCURRENCY }
      )
      const entries = [
        ...files.map((object) => new FsEntry(fileFields(Paths.child(path, object.key.slice(prefix.length)), object))),
        ...directories
      ]
      const name = (entry: FsEntry) => entry.path.slice(entry.path.lastIndexOf("/") + 1)
      return entries.filter((entry) => !Paths.isTempName(name(entry))).sort((a, b) => byName(name(a), name(b)))
    })

  /** Why a file could not be read: a directory, a vanished volume, a file parent, or absent. */
  const notAFile = (path: Paths.NonRootSegments): Effect.Effect<never, VolumeFsFailure> =>
    Effect.flatMap(s3.head(dirOf(path)), (marker) => Option.isSome(marker) ? fsError(path, "IsADirectory") : missing(path))

  const read = (path: Paths.NonRootSegments): Effect.Effect<Uint8Array, VolumeFsFailure> =>
    Effect.flatMap(s3.get(fileOf(path)), (body) =>
      Option.isSome(body)
        ? Effect.as(Links.refuseLink(path, body.value.metadata), body.value.bytes)
        : notAFile(path))

  const readStream = (path: Paths.NonRootSegments, chunkSize: number): Stream.Stream<Uint8Array, VolumeFsFailure> =>
    Stream.unwrap(Effect.gen(function*() {
      const key = fileOf(path)
      const head = yield* s3.head(key)
      if (Option.isNone(head)) return yield* notAFile(path)
      yield* Links.refuseLink(path, head.value.metadata)
      const { etag, size } = head.value
      const starts = Stream.iterate(0, (start) => start + RANGE_BYTES).pipe(Stream.takeWhile((start) => start < size))
      /** One ranged GET, pinned to the ETag seen first so a replaced file fails the stream. */
      const range = (start: number) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          const body = yield* s3.getRange(key, start, Math.min(size, start + RANGE_BYTES) - 1, etag)
          if (Option.isNone(body)) return yield* fsError(path, "Io", "the file was removed while it was read")
          return NodeStream.fromReadable<StorageError>(
            () => body.value,
            (cause) => new StorageError({ message: `reading ${Paths.format(path)} from the object store failed`, cause })
          )
        }))
      return Stream.flatMap(starts, range).pipe(
        Stream.mapError((error): VolumeFsFailure =>
          error._tag === "StorageError" && error.message.includes("HTTP 412")
            ? fsError(path, "Io", "the file was replaced while it was read")
            : error
        ),
        // Sockets deliver what they like; consumers get at most `chunkSize` bytes at a time.
        Stream.mapConcat((chunk: Uint8Array) => {
          if (chunk.byteLength <= chunkSize) return [chunk]
          const pieces: Array<Uint8Array> = []
          for (let offset = 0; offset < chunk.byteLength; offset += chunkSize) {
            pieces.push(chunk.subarray(offset, offset + chunkSize))
          }
          return pieces
        })
      )
    }))

  /**
   * What every write checks before it publishes: the volume exists, no parent is a file,
   * the target is not a directory. Returns the record, the bytes being replaced and the
   * markers to create.
   */
  const prepareWrite = (path: Paths.NonRootSegments) =>
    Effect.gen(function*() {
      const [versioned, target, parents] = yield* Effect.all([loadVolume, probe(path), planParents(path)], {
        concurrency: 3
      })
      if (target.kind === "directory") return yield* fsError(path, "IsADirectory")
      return { versioned, replaced: target.kind === "file" ? target.head.size : 0, parents } as const
    })

  /**
   * After an object landed: account for it, or, if the volume was removed meanwhile,
   * delete it again so a removed volume is never resurrected.
   */
  const settle = (key: string, delta: number, known: Option.Option<Versioned>) =>
    addUsage(delta, known).pipe(
      Effect.tapErrorTag("VolumeNotFound", () => Effect.ignore(s3.delete(key)))
    )

  /** A whole-object write with the given user metadata (a mode, a symlink's target). */
  const writeObject = (
    path: Paths.NonRootSegments,
    data: Uint8Array,
    metadata: ObjectMetadata | undefined
  ): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const { parents, replaced, versioned } = yield* prepareWrite(path)
      yield* createMarkers(parents.missingMarkers)
      const key = fileOf(path)
      yield* s3.put(key, data, undefined, metadata)
      yield* settle(key, data.byteLength - replaced, Option.some(versioned))
    })

  const write = (path: Paths.NonRootSegments, data: Uint8Array, mode?: number) =>
    writeObject(path, data, Links.modeMetadata(mode))

  const openWriter = (path: Paths.NonRootSegments, mode?: number): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
    Effect.gen(function*() {
      const metadata = Links.modeMetadata(mode)
      yield* prepareWrite(path)
      const key = fileOf(path)
      const scope = yield* Effect.scope
      const state = {
        open: true,
        /** The part being filled; it grows by doubling up to `PART_BYTES`. */
        buffer: new Uint8Array(0),
        filled: 0,
        total: 0,
        uploadId: Option.none<string>(),
        nextPart: 1,
        parts: [] as Array<{ readonly PartNumber: number; readonly ETag: string }>,
        /** Part uploads still running, oldest first. */
        inflight: [] as Array<Fiber.RuntimeFiber<void, StorageError>>,
        completed: false
      }
      // An upload that was started but not completed is aborted when the scope closes (after
      // the part uploads forked into the scope are interrupted), so its parts are discarded
      // and nothing ever appears at the path.
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          state.open = false
          state.buffer = new Uint8Array(0)
          return Option.isSome(state.uploadId) && !state.completed ? s3.abortUpload(key, state.uploadId.value) : Effect.void
        })
      )
      const closed = (what: string) => fsError(path, "Io", `${what} after the write was closed`)

      /** Starts uploading the filled part (and the upload, on the first part); at most a few run at once. */
      const flushPart = Effect.gen(function*() {
        const body = state.buffer.subarray(0, state.filled)
        state.buffer = new Uint8Array(0)
        state.filled = 0
        const uploadId = Option.isSome(state.uploadId) ? state.uploadId.value : yield* s3.createUpload(key, metadata)
        state.uploadId = Option.some(uploadId)
        const partNumber = state.nextPart++
        const upload = Effect.map(s3.uploadPart(key, uploadId, partNumber, body), (etag) => {
          state.parts.push({ PartNumber: partNumber, ETag: etag })
        })
        state.inflight.push(yield* Effect.forkIn(upload, scope))
        if (state.inflight.length >= PARTS_IN_FLIGHT) yield* Fiber.join(state.inflight.shift()!)
      })

      /** Appends to the current part, flushing every full one. */
      const append = (chunk: Uint8Array): Effect.Effect<void, StorageError> =>
        Effect.gen(function*() {
          let offset = 0
          while (offset < chunk.byteLength) {
            const wanted = Math.min(PART_BYTES, state.filled + chunk.byteLength - offset)
            if (state.buffer.byteLength < wanted) {
              const grown = new Uint8Array(Math.min(PART_BYTES, Math.max(wanted, 2 * state.buffer.byteLength, 64 * 1024)))
              grown.set(state.buffer.subarray(0, state.filled))
              state.buffer = grown
            }
            // A private copy: the caller may reuse its buffer.
            const take = Math.min(chunk.byteLength - offset, PART_BYTES - state.filled)
            state.buffer.set(chunk.subarray(offset, offset + take), state.filled)
            state.filled += take
            offset += take
            if (state.filled === PART_BYTES) yield* flushPart
          }
        })

      const writer: FsWriter = {
        write: (chunk) =>
          Effect.suspend((): Effect.Effect<void, VolumeFsFailure> => {
            if (!state.open) return Effect.fail(closed("write"))
            state.total += chunk.byteLength
            return append(chunk)
          }),
        commit: Effect.suspend((): Effect.Effect<void, VolumeFsFailure> => {
          if (!state.open) return Effect.fail(closed("commit"))
          state.open = false
          return Effect.gen(function*() {
            // Checked again now: the target or its parents may have changed while bytes arrived.
            const { parents, replaced, versioned } = yield* prepareWrite(path)
            yield* createMarkers(parents.missingMarkers)
            if (Option.isNone(state.uploadId)) {
              yield* s3.put(key, state.buffer.subarray(0, state.filled), undefined, metadata)
            } else {
              if (state.filled > 0) yield* flushPart
              yield* Effect.forEach(state.inflight.splice(0), Fiber.join, { discard: true })
              const parts = [...state.parts].sort((a, b) => a.PartNumber - b.PartNumber)
              yield* s3.completeUpload(key, state.uploadId.value, parts)
              state.completed = true
            }
            state.buffer = new Uint8Array(0)
            yield* settle(key, state.total - replaced, Option.some(versioned))
          })
        })
      }
      return writer
    })

  const mkdir = (path: Paths.Segments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) return yield* Effect.asVoid(loadVolume)
      const [, target, parents] = yield* Effect.all([loadVolume, probe(path), planParents(path)], { concurrency: 3 })
      if (target.kind === "directory") return
      if (target.kind === "file") return yield* fsError(path, "AlreadyExists")
      yield* createMarkers([...parents.missingMarkers, dirOf(path)])
    })

  const remove = (path: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const found = yield* probe(path)
      if (found.kind === "directory") return yield* fsError(path, "IsADirectory")
      if (found.kind === "missing") return yield* missing(path)
      yield* s3.delete(fileOf(path))
      yield* addUsage(-found.head.size)
    })

  const removeDir = (path: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const found = yield* probe(path)
      if (found.kind === "file") return yield* fsError(path, "NotADirectory")
      if (found.kind === "missing") return yield* missing(path)
      const objects = yield* listTree(path)
      const marker = dirOf(path)
      // Contents first, the directory's own marker last: an interrupted removal leaves a
      // directory that can be removed again, never orphaned contents.
      yield* s3.deleteMany(objects.map((o) => o.key).filter((key) => key !== marker))
      yield* s3.delete(marker)
      yield* addUsage(-bytesOf(objects))
    })

  /** Whether directory `path` has any entry. */
  const hasEntries = (path: Paths.NonRootSegments) =>
    Effect.map(s3.list(dirOf(path), { limit: 2 }), (listing) => listing.objects.some((o) => o.key !== dirOf(path)))

  const rename = (from: Paths.NonRootSegments, to: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const source = yield* probe(from)
      if (source.kind === "missing") return yield* missing(from)
      // Linux refuses a target that is an ancestor of the source before it looks at kinds.
      if (to.length < from.length && Paths.isWithin(from, to)) return yield* fsError(to, "DirectoryNotEmpty")
      const [target, parents] = yield* Effect.all([probe(to), planParents(to)], { concurrency: 2 })
      if (source.kind === "file") {
        if (target.kind === "directory") return yield* fsError(to, "IsADirectory")
        yield* createMarkers(parents.missingMarkers)
        const copied = yield* s3.copy(fileOf(from), fileOf(to))
        if (Option.isNone(copied)) return yield* missing(from)
        yield* s3.delete(fileOf(from))
        if (target.kind === "file") yield* addUsage(-target.head.size)
        return
      }
      if (target.kind === "file") return yield* fsError(to, "NotADirectory")
      if (target.kind === "directory" && (yield* hasEntries(to))) return yield* fsError(to, "DirectoryNotEmpty")
      const objects = yield* listTree(from)
      yield* createMarkers(parents.missingMarkers)
      yield* copyTree(objects, from, to)
      yield* s3.deleteMany(objects.map((o) => o.key).filter((key) => key !== dirOf(from)))
      yield* s3.delete(dirOf(from))
    })

  const copy = (from: Paths.NonRootSegments, to: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const source = yield* probe(from)
      if (source.kind === "missing") return yield* missing(from)
      const [target, parents, versioned] = yield* Effect.all([probe(to), planParents(to), loadVolume], {
        concurrency: 3
      })
      if (source.kind === "file") {
        if (target.kind === "directory") return yield* fsError(to, "IsADirectory")
        yield* createMarkers(parents.missingMarkers)
        const copied = yield* s3.copy(fileOf(from), fileOf(to))
        if (Option.isNone(copied)) return yield* missing(from)
        const replaced = target.kind === "file" ? target.head.size : 0
        return yield* settle(fileOf(to), source.head.size - replaced, Option.some(versioned))
      }
      if (target.kind !== "missing") return yield* fsError(to, "AlreadyExists")
      const objects = yield* listTree(from)
      yield* createMarkers(parents.missingMarkers)
      yield* copyTree(objects, from, to)
      yield* addUsage(bytesOf(objects), Option.some(versioned))
    })

  const measure = (path: Paths.Segments): Effect.Effect<number, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) return (yield* loadVolume).record.usedBytes
      const found = yield* probe(path)
      switch (found.kind) {
        case "file":
          return found.head.size
        case "directory":
          return bytesOf(yield* listTree(path))
        case "missing":
          return 0
      }
    })

  return Links.withLinks(
    { s3, fileOf, dirOf, writeObject, loadVolume },
    { stat, list, read, readStream, openWriter, write, mkdir, remove, removeDir, rename, copy, measure }
  )
}
