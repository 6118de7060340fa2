/**
 * Symlinks and permission bits on S3 (SPEC §11), as object metadata:
 *
 * - a symlink is an object at the file's key whose body is the target (so its size is the
 *   target's length, as on Linux) and whose `x-amz-meta-volumes-link` holds the target,
 *   URI-encoded (metadata must be ASCII);
 * - a mode other than the default is `x-amz-meta-volumes-mode` (octal) on the file's object or
 *   on the directory's marker (the root's marker is the data prefix itself).
 *
 * Server-side copies keep metadata, so `copy` and `rename` keep links and modes. Listings
 * do not carry metadata, so `stat` and `list` ask for it with one HEAD per entry.
 * `watch` polls (see `watchPoll.ts`) every {@link POLL_INTERVAL}.
 */
import { Duration, Effect, Option } from "effect"
import { InvalidPath, VolumeFsError } from "../../VolumeError.js"
import type { StorageError, VolumeFsFailure, VolumeNotFound } from "../../VolumeError.js"
import { FsEntry, FsMetadata } from "../../VolumeFs.js"
import type { FsDriver } from "../fsDriver.js"
import * as Paths from "../paths.js"
import { pollWatch } from "../watchPoll.js"
import type { ObjectHead, ObjectMetadata, S3 } from "./client.js"

/** How often `watch` lists the watched tree on S3. */
export const POLL_INTERVAL = Duration.seconds(1)

const MODE_KEY = "volumes-mode"
const LINK_KEY = "volumes-link"
/** What Linux reports for every symlink. */
const SYMLINK_MODE = 0o777
/** Parallel HEADs of one listing. */
const HEAD_CONCURRENCY = 16

/** The metadata that stores `mode`, or none for the default. */
export const modeMetadata = (mode: number | undefined): ObjectMetadata | undefined =>
  mode === undefined ? undefined : { [MODE_KEY]: mode.toString(8) }

/** What the metadata says about an object: a link target and/or a mode. */
const attributesOf = (head: Option.Option<ObjectHead>) => {
  const metadata = Option.isSome(head) ? head.value.metadata ?? {} : {}
  const link = metadata[LINK_KEY]
  const mode = metadata[MODE_KEY]
  return {
    target: link === undefined ? undefined : decodeURIComponent(link),
    mode: mode === undefined || !/^[0-7]{1,4}$/.test(mode) ? undefined : parseInt(mode, 8)
  }
}

const refused = (path: Paths.Segments) =>
  new InvalidPath({
    path: Paths.format(path),
    reason: "is a symlink; host-side access never follows symlinks inside a volume"
  })

/**
 * Fails with `InvalidPath` when an object's metadata marks a symlink: reads never follow one
 * (the object driver checks the metadata its GET or HEAD already returned).
 */
export const refuseLink = (path: Paths.Segments, metadata: ObjectMetadata | undefined): Effect.Effect<void, InvalidPath> =>
  metadata?.[LINK_KEY] === undefined ? Effect.void : Effect.fail(refused(path))

/** The driver operations this module extends (the object layout's own driver). */
type BaseDriver = Omit<FsDriver, "symlink" | "readlink" | "chmod" | "watch">

/** What the object driver lends. */
export interface LinksContext {
  readonly s3: S3
  readonly fileOf: (path: Paths.Segments) => string
  readonly dirOf: (path: Paths.Segments) => string
  /** A whole-object write with user metadata (parents, usage and all). */
  readonly writeObject: (
    path: Paths.NonRootSegments,
    data: Uint8Array,
    metadata: ObjectMetadata | undefined
  ) => Effect.Effect<void, VolumeFsFailure>
  readonly loadVolume: Effect.Effect<unknown, VolumeNotFound | StorageError>
}

/** The object driver with links, modes and a polling watch. */
export const withLinks = (context: LinksContext, base: BaseDriver): FsDriver => {
  const { dirOf, fileOf, s3, writeObject } = context

  const segmentsOf = (path: string): Paths.Segments => path.split("/").filter((s) => s !== "")

  /** The entry with what its object's metadata says (one HEAD). */
  const decorate = <T extends FsEntry | FsMetadata>(entry: T, make: (fields: T) => T): Effect.Effect<T, StorageError> => {
    if (entry.kind !== "file" && entry.kind !== "directory") return Effect.succeed(entry)
    const segments = segmentsOf(entry.path)
    const key = entry.kind === "file" ? fileOf(segments) : dirOf(segments)
    return Effect.map(s3.head(key), (head) => {
      const { mode, target } = attributesOf(head)
      if (entry.kind === "file" && target !== undefined) {
        return make({ ...entry, kind: "symlink", mode: SYMLINK_MODE, target: Option.some(target) })
      }
      return mode === undefined ? entry : make({ ...entry, mode })
    })
  }

  const stat: FsDriver["stat"] = (path) =>
    Effect.flatMap(base.stat(path), (meta) =>
      decorate(meta, (fields) => new FsMetadata({ ...fields, readonly: (fields.mode & 0o222) === 0 })))

  const list: FsDriver["list"] = (path) =>
    Effect.flatMap(
      base.list(path),
      (entries) => Effect.forEach(entries, (entry) => decorate(entry, (fields) => new FsEntry(fields)), { concurrency: HEAD_CONCURRENCY })
    )

  const symlink: FsDriver["symlink"] = (target, path) =>
    Effect.gen(function*() {
      const existing = yield* base.stat(path).pipe(
        Effect.as(true),
        Effect.catchTag("PathNotFound", () => Effect.succeed(false))
      )
      if (existing) return yield* new VolumeFsError({ path: Paths.format(path), reason: "AlreadyExists" })
      yield* writeObject(path, new TextEncoder().encode(target), { [LINK_KEY]: encodeURIComponent(target) })
    })

  const readlink: FsDriver["readlink"] = (path) =>
    Effect.gen(function*() {
      const { target } = attributesOf(yield* s3.head(fileOf(path)))
      if (target !== undefined) return target
      yield* base.stat(path)
      return yield* new VolumeFsError({ path: Paths.format(path), reason: "InvalidData", detail: "not a symlink" })
    })

  /** Sets the mode on a directory's marker, creating the marker if the directory had none. */
  const chmodDirectory = (path: Paths.Segments, mode: number) =>
    Effect.flatMap(s3.replaceMetadata(dirOf(path), modeMetadata(mode)!), (replaced) =>
      Option.isSome(replaced) ? Effect.void : s3.put(dirOf(path), new Uint8Array(0), "application/x-directory", modeMetadata(mode)))

  const chmod: FsDriver["chmod"] = (path, mode) =>
    Effect.gen(function*() {
      const meta = yield* stat(path)
      if (meta.kind === "symlink") return yield* refused(path)
      if (meta.kind === "directory") return yield* chmodDirectory(path, mode)
      const replaced = yield* s3.replaceMetadata(fileOf(path), modeMetadata(mode)!)
      // Removed meanwhile: say so the way every other operation does.
      if (Option.isNone(replaced)) yield* base.stat(path)
    })

  return {
    ...base,
    stat,
    list,
    symlink,
    readlink,
    chmod,
    watch: (path, recursive) => pollWatch({ list, stat, path, recursive, interval: POLL_INTERVAL })
  }
}
