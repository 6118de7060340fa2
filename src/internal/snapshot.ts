/**
 * Snapshot mounts of cloud volumes (docs/cloud.md, "Mounting into sandboxes"): a volume
 * that has no host directory is materialised into a local cache directory when a sandbox
 * starts, and the sandbox's changes are committed back when it stops. Like Modal's volume
 * `reload()` / `commit()`, but implicit at start and stop.
 *
 * - Materialise: the cache is brought up to date with the volume. Only files whose size or
 *   modification time in the store changed since the last sync (or whose cached copy was
 *   changed locally) are downloaded; files and directories gone from the volume are removed
 *   from the cache.
 * - Commit: files changed in the cache since the sync (size or mtime) are uploaded, each
 *   atomically; files and directories deleted in the cache are deleted in the volume. Files
 *   nobody touched in the cache are left alone, so concurrent writers on other machines keep
 *   their changes: last writer wins per file.
 *
 * Works over the public `VolumeFs`, so it holds for every backend; a manifest next to the
 * cache directory remembers what was synced.
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Effect, Option, Schema, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { StorageError } from "../VolumeError.js"
import type { VolumeFsFailure } from "../VolumeError.js"
import type { VolumeFs } from "../VolumeFs.js"
import type { Volume } from "../Volume.js"

/**
 * The local cache directory of a volume's snapshot: under `$EFFECT_VOLUMES_CLOUD_CACHE`
 * (default `<tmpdir>/effect-volumes-cloud-cache`), keyed by bucket and the volume's data
 * prefix on the cloud backend (so a re-created volume never reuses an old cache).
 */
export const cacheDirectory = (volume: Volume): string => {
  const root = process.env["EFFECT_VOLUMES_CLOUD_CACHE"] ?? NodePath.join(NodeOs.tmpdir(), "effect-volumes-cloud-cache")
  return Option.match(volume.cloud, {
    onNone: () => NodePath.join(root, volume.backendKind, volume.name.toLowerCase()),
    onSome: (cloud) => NodePath.join(root, cloud.bucket, ...cloud.prefix.split("/").filter((s) => s !== ""))
  })
}

/** One synced file: its stamp in the volume and the stamp of its cached copy. */
const FileState = Schema.Struct({
  remoteSize: Schema.Number,
  remoteModified: Schema.Number,
  localSize: Schema.Number,
  localModified: Schema.Number
})

/** What the cache held after the last materialise or commit. */
export class Manifest extends Schema.Class<Manifest>("Manifest")({
  files: Schema.Record({ key: Schema.String, value: FileState }),
  directories: Schema.Array(Schema.String)
}) {
  static readonly empty = new Manifest({ files: {}, directories: [] })
}

type Files = Record<string, typeof FileState.Type>

/** What a commit changed in the volume. */
export interface CommitResult {
  readonly uploaded: ReadonlyArray<string>
  readonly deleted: ReadonlyArray<string>
  /** Entries the volume cannot hold (symlinks, devices), left out. */
  readonly skipped: ReadonlyArray<string>
}

const ManifestJson = Schema.parseJson(Manifest)

const io = <A>(what: string, run: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({ try: run, catch: (cause) => new StorageError({ message: `snapshot cache: ${what} failed`, cause }) })

const manifestPath = (cacheDir: string) => `${cacheDir}.manifest.json`

const readManifest = (cacheDir: string): Effect.Effect<Manifest, never> =>
  io("reading the manifest", () => NodeFs.promises.readFile(manifestPath(cacheDir), "utf8")).pipe(
    Effect.flatMap(Schema.decodeUnknown(ManifestJson)),
    Effect.orElseSucceed(() => Manifest.empty)
  )

const writeManifest = (cacheDir: string, manifest: Manifest) =>
  Effect.gen(function*() {
    const json = yield* Effect.orDie(Schema.encode(ManifestJson)(manifest))
    const temp = `${manifestPath(cacheDir)}.tmp`
    yield* io("writing the manifest", () => NodeFs.promises.writeFile(temp, json))
    yield* io("writing the manifest", () => NodeFs.promises.rename(temp, manifestPath(cacheDir)))
  })

/** Every file (with size and mtime) and directory below the volume root, by volume path. */
const walkVolume = (fs: VolumeFs) =>
  Effect.gen(function*() {
    const files = new Map<string, { readonly size: number; readonly modified: number }>()
    const directories: Array<string> = []
    const visit = (dir: string): Effect.Effect<void, VolumeFsFailure> =>
      Effect.flatMap(fs.list(dir), (entries) =>
        Effect.forEach(entries, (entry) => {
          if (entry.kind === "directory") {
            directories.push(entry.path)
            return visit(entry.path)
          }
          if (entry.kind === "file") {
            files.set(entry.path, {
              size: entry.size,
              modified: Option.match(entry.modified, { onNone: () => 0, onSome: (m) => m.epochMillis })
            })
          }
          return Effect.void
        }, { concurrency: 8, discard: true }))
    yield* visit("/")
    return { files, directories }
  })

/** Every entry below a host directory, by volume path. */
const walkLocal = (root: string) =>
  io("walking the cache", async () => {
    const files = new Map<string, { readonly size: number; readonly modified: number }>()
    const directories: Array<string> = []
    const others: Array<string> = []
    const visit = async (rel: string): Promise<void> => {
      for (const entry of await NodeFs.promises.readdir(NodePath.join(root, rel), { withFileTypes: true })) {
        const path = `${rel}/${entry.name}`
        if (entry.isDirectory()) {
          directories.push(path)
          await visit(path)
        } else if (entry.isFile()) {
          const stat = await NodeFs.promises.lstat(NodePath.join(root, path))
          files.set(path, { size: stat.size, modified: stat.mtimeMs })
        } else {
          others.push(path)
        }
      }
    }
    await visit("")
    return { files, directories, others }
  })

const localStamp = (root: string, path: string) =>
  io(`stat of ${path}`, () => NodeFs.promises.lstat(NodePath.join(root, path))).pipe(
    Effect.map((stat) => ({ localSize: stat.size, localModified: stat.mtimeMs }))
  )

/** Downloads one file into the cache atomically (temporary file, then rename). */
const download = (fs: VolumeFs, root: string, path: string) =>
  Effect.gen(function*() {
    const target = NodePath.join(root, path)
    const temp = `${target}.effect-volumes-download`
    yield* io(`creating the directory of ${path}`, () => NodeFs.promises.mkdir(NodePath.dirname(target), { recursive: true }))
    yield* fs.readStream(path).pipe(
      Stream.run(NodeSink.fromWritable(
        () => NodeFs.createWriteStream(temp),
        (cause: unknown) => new StorageError({ message: `snapshot cache: writing ${path} failed`, cause })
      ))
    )
    yield* io(`publishing ${path}`, () => NodeFs.promises.rename(temp, target))
  })

/**
 * Brings `cacheDir` up to date with the volume and returns the new manifest (also saved
 * next to the directory).
 */
export const materialize = (fs: VolumeFs, cacheDir: string): Effect.Effect<Manifest, VolumeFsFailure> =>
  Effect.gen(function*() {
    yield* io("creating the cache", () => NodeFs.promises.mkdir(cacheDir, { recursive: true }))
    const previous = yield* readManifest(cacheDir)
    const [remote, local] = yield* Effect.all([walkVolume(fs), walkLocal(cacheDir)], { concurrency: 2 })
    const remoteDirectories = new Set(remote.directories)

    // Whatever the volume no longer has (or never had) leaves the cache.
    for (const path of [...local.files.keys(), ...local.others]) {
      if (!remote.files.has(path)) yield* io(`removing ${path}`, () => NodeFs.promises.rm(NodePath.join(cacheDir, path), { force: true }))
    }
    for (const path of [...local.directories].reverse()) {
      if (!remoteDirectories.has(path)) {
        yield* io(`removing ${path}`, () => NodeFs.promises.rm(NodePath.join(cacheDir, path), { recursive: true, force: true }))
      }
    }
    for (const path of remote.directories) {
      yield* io(`creating ${path}`, () => NodeFs.promises.mkdir(NodePath.join(cacheDir, path), { recursive: true }))
    }

    const files: Files = {}
    yield* Effect.forEach(remote.files, ([path, stamp]) =>
      Effect.gen(function*() {
        const known = previous.files[path]
        const cached = local.files.get(path)
        const fresh = known !== undefined && cached !== undefined &&
          known.remoteSize === stamp.size && known.remoteModified === stamp.modified &&
          known.localSize === cached.size && known.localModified === cached.modified
        if (!fresh) yield* download(fs, cacheDir, path)
        files[path] = { remoteSize: stamp.size, remoteModified: stamp.modified, ...(yield* localStamp(cacheDir, path)) }
      }), { concurrency: 8, discard: true })

    const manifest = new Manifest({ files, directories: remote.directories })
    yield* writeManifest(cacheDir, manifest)
    return manifest
  })

/**
 * Sends what changed in `cacheDir` since the last sync to the volume: changed and new files
 * are uploaded, deleted files and directories are deleted. Last writer wins per file.
 */
export const commit = (fs: VolumeFs, cacheDir: string): Effect.Effect<CommitResult, VolumeFsFailure> =>
  Effect.gen(function*() {
    const previous = yield* readManifest(cacheDir)
    const local = yield* walkLocal(cacheDir)
    const files: Files = { ...previous.files }
    const uploaded: Array<string> = []
    const deleted: Array<string> = []
    const localDirectories = new Set(local.directories)

    for (const path of local.directories) {
      if (!previous.directories.includes(path)) yield* fs.mkdir(path)
    }
    yield* Effect.forEach(local.files, ([path, stamp]) =>
      Effect.gen(function*() {
        const known = previous.files[path]
        if (known !== undefined && known.localSize === stamp.size && known.localModified === stamp.modified) return
        yield* NodeStream.fromReadable<StorageError>(
          () => NodeFs.createReadStream(NodePath.join(cacheDir, path)),
          (cause) => new StorageError({ message: `snapshot cache: reading ${path} failed`, cause })
        ).pipe(Stream.run(fs.sink(path)))
        const meta = yield* fs.stat(path)
        files[path] = {
          remoteSize: meta.size,
          remoteModified: Option.match(meta.modified, { onNone: () => 0, onSome: (m) => m.epochMillis }),
          localSize: stamp.size,
          localModified: stamp.modified
        }
        uploaded.push(path)
      }), { concurrency: 4, discard: true })

    const ignoreMissing = <A>(self: Effect.Effect<A, VolumeFsFailure>) =>
      Effect.catchTag(Effect.asVoid(self), "PathNotFound", () => Effect.void)
    for (const path of Object.keys(previous.files)) {
      if (local.files.has(path)) continue
      delete files[path]
      // A file deleted in the cache whose directory went too is removed with the directory.
      if (!localDirectories.has(NodePath.posix.dirname(path)) && NodePath.posix.dirname(path) !== "/") continue
      yield* ignoreMissing(fs.remove(path))
      deleted.push(path)
    }
    // Outermost removed directories only: removeDir takes the tree below.
    const removedDirectories = previous.directories.filter((path) => !localDirectories.has(path))
    for (const path of removedDirectories) {
      if (removedDirectories.some((other) => other !== path && path.startsWith(`${other}/`))) continue
      yield* ignoreMissing(fs.removeDir(path))
      deleted.push(path)
      for (const file of Object.keys(files)) if (file.startsWith(`${path}/`)) delete files[file]
    }

    yield* writeManifest(cacheDir, new Manifest({ files, directories: local.directories }))
    return { uploaded: uploaded.sort(), deleted: deleted.sort(), skipped: [...local.others].sort() }
  })
