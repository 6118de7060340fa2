/**
 * Materialise: brings a cache directory up to date with the volume before a sandbox starts,
 * and records the result as the manifest, the base of the later commit.
 *
 * Only files whose stamp in the store changed since the last sync, or whose cached copy was
 * changed locally, are downloaded (each to a temporary file, then renamed). Whatever the
 * store does not hold leaves the cache. Links are recreated when the volume can read them;
 * permission bits follow the store (without setuid, setgid and sticky bits).
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import { Effect, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import { StorageError } from "../../VolumeError.js"
import type { VolumeFsFailure } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import { io, Manifest, readManifest, sameStamp, writeManifest } from "./manifest.js"
import type { BaseEntry } from "./manifest.js"
import { byDepth, hostPath, toLocalStamp, walkCache, walkVolume } from "./trees.js"
import type { CacheEntry, StoreEntry } from "./trees.js"

/** Suffix of a download in progress (removed by the next materialise if it was cut short). */
const DOWNLOAD_SUFFIX = ".effect-volumes-download"

/** Whether the cached entry can stay as it is (a file may still need a download). */
const sameKind = (cached: CacheEntry, stored: StoreEntry): boolean =>
  cached.kind === stored.kind &&
  (cached.kind !== "symlink" || (stored.kind === "symlink" && Option.contains(stored.target, cached.target)))

/** Downloads one file into the cache atomically; the temporary name is created exclusively. */
const download = (fs: VolumeFs, root: string, path: string) =>
  Effect.gen(function*() {
    const target = hostPath(root, path)
    const temp = `${target}${DOWNLOAD_SUFFIX}`
    yield* io(`removing ${temp}`, () => NodeFs.promises.rm(temp, { force: true }))
    yield* fs.readStream(path).pipe(
      Stream.run(NodeSink.fromWritable(
        () => NodeFs.createWriteStream(temp, { flags: "wx" }),
        (cause: unknown) => new StorageError({ message: `snapshot cache: writing ${path} failed`, operation: "snapshot cache", cause })
      ))
    )
    yield* io(`publishing ${path}`, () => NodeFs.promises.rename(temp, target))
  })

const statFile = (root: string, path: string) => io(`stat of ${path}`, () => NodeFs.promises.lstat(hostPath(root, path)))

/**
 * Brings `cacheDir` up to date with the volume and returns the new manifest (also saved
 * next to the directory).
 */
export const materialize = (fs: VolumeFs, cacheDir: string): Effect.Effect<Manifest, VolumeFsFailure> =>
  Effect.gen(function*() {
    yield* io("creating the cache", () => NodeFs.promises.mkdir(cacheDir, { recursive: true }))
    const previous = yield* readManifest(cacheDir, "lenient")
    const [store, cache] = yield* Effect.all([walkVolume(fs), walkCache(cacheDir)], { concurrency: 2 })

    // Whatever the store does not hold as the same kind leaves the cache, children first
    // (`rm` never follows a link a sandbox left behind).
    for (const [path, cached] of [...cache].sort(([a], [b]) => byDepth(b, a))) {
      const stored = store.get(path)
      if (stored !== undefined && sameKind(cached, stored)) continue
      yield* io(`removing ${path}`, () => NodeFs.promises.rm(hostPath(cacheDir, path), { recursive: true, force: true }))
      cache.delete(path)
    }

    const entries: Record<string, BaseEntry> = {}
    const ordered = [...store].sort(([a], [b]) => byDepth(a, b))
    for (const [path, stored] of ordered) {
      if (stored.kind === "directory") {
        yield* io(`creating ${path}`, () => NodeFs.promises.mkdir(hostPath(cacheDir, path), { recursive: true }))
        entries[path] = { _tag: "Directory", mode: stored.mode }
      } else if (stored.kind === "symlink" && Option.isSome(stored.target)) {
        if (!cache.has(path)) {
          const target = stored.target.value
          yield* io(`creating the link ${path}`, () => NodeFs.promises.symlink(target, hostPath(cacheDir, path)))
        }
        entries[path] = { _tag: "Link", target: stored.target.value }
      }
    }

    yield* Effect.forEach(ordered, ([path, stored]) =>
      Effect.gen(function*() {
        if (stored.kind !== "file") return
        const known = previous.entries[path]
        const cached = cache.get(path)
        const fresh = known?._tag === "File" && cached?.kind === "file" &&
          known.remoteSize === stored.size && known.remoteModified === stored.modified &&
          sameStamp(known.local, cached.stamp)
        if (!fresh) yield* download(fs, cacheDir, path)
        let stat = yield* statFile(cacheDir, path)
        if ((stat.mode & 0o777) !== stored.mode) {
          yield* io(`chmod of ${path}`, () => NodeFs.promises.chmod(hostPath(cacheDir, path), stored.mode))
          stat = yield* statFile(cacheDir, path)
        }
        entries[path] = {
          _tag: "File",
          remoteSize: stored.size,
          remoteModified: stored.modified,
          local: toLocalStamp(stat),
          mode: stored.mode
        }
      }), { concurrency: 8, discard: true })

    // Directory modes last: a read-only directory must not stop the downloads into it.
    for (const [path, stored] of ordered) {
      if (stored.kind === "directory") {
        yield* io(`chmod of ${path}`, () => NodeFs.promises.chmod(hostPath(cacheDir, path), stored.mode))
      }
    }

    const manifest = new Manifest({ version: 2, entries })
    yield* writeManifest(cacheDir, manifest)
    return manifest
  })
