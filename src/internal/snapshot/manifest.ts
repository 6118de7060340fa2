/**
 * The manifest of a snapshot cache: what the cache held, path by path, after the last
 * materialise or commit. It is the *base* of the three-way commit (base, sandbox, store):
 * a path whose store stamp still equals the base stamp was not changed by anyone else.
 * It lives next to the cache directory (never inside it, so a sandbox cannot forge it).
 */
import { Effect, Schema } from "effect"
import * as NodeFs from "node:fs"
import { StorageError } from "../../VolumeError.js"

/** What identifies one version of a cached file: any write or `chmod` changes it. */
export const LocalStamp = Schema.Struct({
  size: Schema.Number,
  modified: Schema.Number,
  changed: Schema.Number,
  inode: Schema.Number
})

/** @internal */
export type LocalStamp = typeof LocalStamp.Type

/** Whether a cached file is still the version the manifest recorded. */
export const sameStamp = (a: LocalStamp, b: LocalStamp): boolean =>
  a.size === b.size && a.modified === b.modified && a.changed === b.changed && a.inode === b.inode

/** A remote modification time the commit could not read back (the file is then never "unchanged there"). */
export const UNKNOWN_REMOTE = -1

/** One synced path: a file with its stamp in the store and in the cache, a directory or a link. */
export const BaseEntry = Schema.Union(
  Schema.TaggedStruct("File", {
    remoteSize: Schema.Number,
    remoteModified: Schema.Number,
    local: LocalStamp,
    mode: Schema.Number
  }),
  Schema.TaggedStruct("Directory", { mode: Schema.Number }),
  Schema.TaggedStruct("Link", { target: Schema.String })
)

/** @internal */
export type BaseEntry = typeof BaseEntry.Type

/** What the cache held after the last materialise or commit, by `/`-anchored volume path. */
export class Manifest extends Schema.Class<Manifest>("Manifest")({
  version: Schema.Literal(2),
  entries: Schema.Record({ key: Schema.String, value: BaseEntry })
}) {
  static readonly empty = new Manifest({ version: 2, entries: {} })
}

const ManifestJson = Schema.parseJson(Manifest)

/** Wraps one host file-system call of the cache. */
export const io = <A>(what: string, run: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({
    try: run,
    catch: (cause) => new StorageError({ message: `snapshot cache: ${what} failed`, operation: "snapshot cache", cause })
  })

export const manifestPath = (cacheDir: string): string => `${cacheDir}.manifest.json`

/**
 * The manifest of `cacheDir`. A materialise may start from nothing (`lenient`: a missing or
 * unreadable manifest only costs downloads); a commit may not, since without its base every
 * cached file would look new and conflict.
 */
export const readManifest = (cacheDir: string, mode: "lenient" | "strict"): Effect.Effect<Manifest, StorageError> => {
  const read = io("reading the manifest", () => NodeFs.promises.readFile(manifestPath(cacheDir), "utf8")).pipe(
    Effect.flatMap((text) =>
      Effect.mapError(
        Schema.decodeUnknown(ManifestJson)(text),
        (cause) =>
          new StorageError({
            message: `snapshot cache: the manifest ${manifestPath(cacheDir)} is unreadable`,
            reason: "Corrupt",
            operation: "snapshot cache",
            cause
          })
      )
    )
  )
  return mode === "strict" ? read : Effect.orElseSucceed(read, () => Manifest.empty)
}

/** Replaces the manifest atomically (temporary file, then rename). */
export const writeManifest = (cacheDir: string, manifest: Manifest): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    const json = yield* Effect.orDie(Schema.encode(ManifestJson)(manifest))
    const temp = `${manifestPath(cacheDir)}.tmp`
    yield* io("writing the manifest", () => NodeFs.promises.writeFile(temp, json))
    yield* io("writing the manifest", () => NodeFs.promises.rename(temp, manifestPath(cacheDir)))
  })
