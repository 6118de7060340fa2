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
import { DateTime, Effect, Option, Stream } from "effect"
import type { Scope } from "effect"
import type { VolumeFsFailure } from "../../VolumeError.js"
import { FsEntry, FsMetadata } from "../../VolumeFs.js"
import type { FsDriver, FsWriter } from "../fsDriver.js"
import * as Paths from "../paths.js"
import * as Entries from "./entries.js"
import type { EntriesOptions } from "./entries.js"
import { fsError, TREE_CONCURRENCY } from "./entries.js"
import * as Intents from "./intent.js"
import * as ObjectRead from "./objectRead.js"
import { metaOfData } from "./layout.js"
import * as Links from "./links.js"
import * as Tree from "./tree.js"
import { sumListing } from "./usage.js"
import * as Writer from "./writer.js"

/** Modes reported for objects (the store keeps none): what umask 022 gives. */
const FILE_MODE = 0o644
const DIRECTORY_MODE = 0o755
/** Directories report one ext4 block, as on the local and memory backends. */
const DIRECTORY_SIZE = 4096
const OWNER_UID = process.getuid?.() ?? 0
const OWNER_GID = process.getgid?.() ?? 0

export { PART_BYTES } from "./writer.js"

export type S3DriverOptions = EntriesOptions

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

export const make = (options: S3DriverOptions): FsDriver => {
  const { s3 } = options
  const entries = Entries.make(options)
  const { checkLength, dirOf, fileOf, loadVolume, missing, probe } = entries
  const tree = Tree.make(entries, Intents.make(s3, metaOfData(options.dataPrefix)))

  const stat = (path: Paths.Segments): Effect.Effect<FsMetadata, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) {
        const { record } = yield* loadVolume
        return toMetadata(directoryFields(path, Option.some(new Date(record.createdAt))))
      }
      yield* checkLength(path)
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
      yield* checkLength(path)
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
    Effect.flatMap(probe(path), (found) => found.kind === "directory" ? fsError(path, "IsADirectory") : missing(path))

  /** The object at `path` opened for a read (parallel ranged GETs, see `objectRead.ts`), as file-system failures. */
  const openFile = (path: Paths.NonRootSegments, partBytes: number) =>
    Effect.gen(function*() {
      yield* checkLength(path)
      const opened = yield* ObjectRead.open(s3, fileOf(path), partBytes)
      if (Option.isNone(opened)) return yield* notAFile(path)
      yield* Links.refuseLink(path, opened.value.metadata)
      const lost = (lost: ObjectRead.ReadLost) => fsError(path, "Io", `the file was ${lost.how} while it was read`)
      return {
        parts: Stream.catchTag(opened.value.parts, "ReadLost", lost),
        whole: Effect.catchTag(opened.value.whole, "ReadLost", lost)
      }
    })

  const read = (path: Paths.NonRootSegments): Effect.Effect<Uint8Array, VolumeFsFailure> =>
    Effect.scoped(Effect.flatMap(openFile(path, s3.readWholePartBytes), (opened) => opened.whole))

  const readStream = (path: Paths.NonRootSegments, chunkSize: number): Stream.Stream<Uint8Array, VolumeFsFailure> =>
    Stream.unwrapScoped(Effect.map(openFile(path, s3.readPartBytes), ({ parts }) =>
      Stream.mapConcat(parts, (part: Uint8Array) => {
        // Parts are megabytes; consumers get at most `chunkSize` bytes at a time.
        if (part.byteLength <= chunkSize) return [part]
        const pieces: Array<Uint8Array> = []
        for (let offset = 0; offset < part.byteLength; offset += chunkSize) {
          pieces.push(part.subarray(offset, offset + chunkSize))
        }
        return pieces
      })))

  const write = (path: Paths.NonRootSegments, data: Uint8Array, mode?: number): Effect.Effect<void, VolumeFsFailure> =>
    entries.writeWhole(path, data, Links.modeMetadata(mode))

  const openWriter = (path: Paths.NonRootSegments, mode?: number): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
    Writer.open(entries, path, Links.modeMetadata(mode))

  const mkdir = (path: Paths.Segments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) return yield* Effect.asVoid(loadVolume)
      yield* checkLength(path)
      const [, target, parents] = yield* Effect.all([loadVolume, probe(path), entries.planParents(path)], {
        concurrency: 3
      })
      if (target.kind === "directory") return
      if (target.kind === "file") return yield* fsError(path, "AlreadyExists")
      const created = [...parents.missing, path]
      yield* entries.createMarkers(created)
      // A file written at one of them meanwhile: undo ours (the file wins, as with `write`).
      yield* entries.guardMarkers(path, created)
    })

  const remove = (path: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      yield* checkLength(path)
      const found = yield* probe(path)
      if (found.kind === "directory") return yield* fsError(path, "IsADirectory")
      if (found.kind === "missing") return yield* missing(path)
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(restore(s3.delete(fileOf(path))), entries.counter.add(-found.head.size)))
    })

  const removeDir = (path: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.zipRight(checkLength(path), tree.removeDir(path))

  const measure = (path: Paths.Segments): Effect.Effect<number, VolumeFsFailure> =>
    Effect.gen(function*() {
      if (!Paths.isNonRoot(path)) return (yield* loadVolume).record.usedBytes
      const found = yield* probe(path)
      switch (found.kind) {
        case "file":
          return found.head.size
        case "directory":
          return sumListing(yield* tree.listTree(path)).bytes
        case "missing":
          return 0
      }
    })

  return Links.withLinks(
    { s3, fileOf, dirOf, writeObject: entries.writeWhole, loadVolume },
    { stat, list, read, readStream, openWriter, write, mkdir, remove, removeDir, rename: tree.rename, copy: tree.copy, measure }
  )
}
