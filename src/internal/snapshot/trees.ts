/**
 * The two trees a snapshot compares with its manifest: the volume in the store (walked
 * through the public `VolumeFs`, so it holds for every backend) and the cache on the host
 * (walked with `lstat`, never following a link a sandbox left there). Both walks go one
 * directory at a time, so they can be interrupted between directories.
 */
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { InvalidConfig, StorageError, VolumeFsFailure } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import { io } from "./manifest.js"
import type { LocalStamp } from "./manifest.js"

/** Permission bits a snapshot carries across: no setuid, setgid or sticky bit. */
export const PERMISSION_BITS = 0o777

/** Modes a store reports when it keeps none, and what a plain write creates. */
export const DEFAULT_FILE_MODE = 0o644
export const DEFAULT_DIRECTORY_MODE = 0o755

/** One entry of the volume in the store. */
export type StoreEntry =
  | { readonly kind: "file"; readonly size: number; readonly modified: number; readonly mode: number }
  | { readonly kind: "directory"; readonly mode: number }
  /** `target` is known only when the volume can read links. */
  | { readonly kind: "symlink"; readonly target: Option.Option<string> }
  | { readonly kind: "other" }

/** One entry of the cache. */
export type CacheEntry =
  | { readonly kind: "file"; readonly stamp: LocalStamp; readonly mode: number }
  | { readonly kind: "directory"; readonly mode: number }
  | { readonly kind: "symlink"; readonly target: string }
  | { readonly kind: "other" }

/**
 * Link and mode operations of a volume's file system. Backends gain them one by one
 * (`symlink`, `readlink`, `chmod`); until a volume has them, links in a cache are skipped
 * at commit and modes are the store's defaults.
 */
export interface LinkOps {
  readonly symlink: (target: string, path: string) => Effect.Effect<void, VolumeFsFailure>
  readonly readlink: (path: string) => Effect.Effect<string, VolumeFsFailure>
}

/** See {@link LinkOps}. */
export interface ModeOps {
  readonly chmod: (path: string, mode: number) => Effect.Effect<void, VolumeFsFailure | InvalidConfig>
}

type MaybeOps = VolumeFs & Partial<LinkOps> & Partial<ModeOps>

/** The volume's link operations, when its file system has them. */
export const linkOps = (fs: VolumeFs): Option.Option<LinkOps> => {
  const candidate: MaybeOps = fs
  return typeof candidate.symlink === "function" && typeof candidate.readlink === "function"
    ? Option.some({ symlink: candidate.symlink, readlink: candidate.readlink })
    : Option.none()
}

/** The volume's `chmod`, when its file system has one. */
export const modeOps = (fs: VolumeFs): Option.Option<ModeOps> => {
  const candidate: MaybeOps = fs
  return typeof candidate.chmod === "function" ? Option.some({ chmod: candidate.chmod }) : Option.none()
}

const modifiedMillis = (modified: Option.Option<{ readonly epochMillis: number }>): number =>
  Option.match(modified, { onNone: () => 0, onSome: (m) => m.epochMillis })

/**
 * Every entry below the volume root, by `/`-anchored path. Stamps come from listings only:
 * a store may report coarser times through `stat` (S3's HEAD has whole seconds, its listing
 * milliseconds), and one source keeps stamps comparable.
 */
export const walkVolume = (fs: VolumeFs): Effect.Effect<Map<string, StoreEntry>, VolumeFsFailure> =>
  Effect.gen(function*() {
    const entries = new Map<string, StoreEntry>()
    const links = linkOps(fs)
    const visit = (dir: string): Effect.Effect<void, VolumeFsFailure> =>
      Effect.flatMap(fs.list(dir), (children) =>
        Effect.forEach(children, (entry) => {
          switch (entry.kind) {
            case "directory":
              entries.set(entry.path, { kind: "directory", mode: entry.mode & PERMISSION_BITS })
              return visit(entry.path)
            case "file":
              entries.set(entry.path, {
                kind: "file",
                size: entry.size,
                modified: modifiedMillis(entry.modified),
                mode: entry.mode & PERMISSION_BITS
              })
              return Effect.void
            case "symlink":
              return Option.match(links, {
                onNone: () => Effect.sync(() => void entries.set(entry.path, { kind: "symlink", target: Option.none() })),
                onSome: (ops) =>
                  Effect.map(ops.readlink(entry.path), (target) =>
                    void entries.set(entry.path, { kind: "symlink", target: Option.some(target) }))
              })
            default:
              entries.set(entry.path, { kind: "other" })
              return Effect.void
          }
        }, { concurrency: 8, discard: true }))
    yield* visit("/")
    return entries
  })

/** The stamp of a cached file as `lstat` reports it. */
export const toLocalStamp = (stat: NodeFs.Stats): LocalStamp => ({
  size: stat.size,
  modified: stat.mtimeMs,
  changed: stat.ctimeMs,
  inode: stat.ino
})

/** Every entry below the cache directory `root`, by `/`-anchored volume path. */
export const walkCache = (root: string): Effect.Effect<Map<string, CacheEntry>, StorageError> =>
  Effect.gen(function*() {
    const entries = new Map<string, CacheEntry>()
    const visit = (rel: string): Effect.Effect<void, StorageError> =>
      Effect.gen(function*() {
        const names = yield* io(
          `listing ${rel === "" ? "/" : rel}`,
          () => NodeFs.promises.readdir(NodePath.join(root, rel))
        )
        const directories: Array<string> = []
        yield* Effect.forEach(names, (name) =>
          Effect.gen(function*() {
            const path = `${rel}/${name}`
            const host = NodePath.join(root, path)
            const stat = yield* io(`stat of ${path}`, () => NodeFs.promises.lstat(host))
            if (stat.isDirectory()) {
              entries.set(path, { kind: "directory", mode: stat.mode & PERMISSION_BITS })
              directories.push(path)
            } else if (stat.isFile()) {
              entries.set(path, { kind: "file", stamp: toLocalStamp(stat), mode: stat.mode & PERMISSION_BITS })
            } else if (stat.isSymbolicLink()) {
              entries.set(path, { kind: "symlink", target: yield* io(`reading the link ${path}`, () => NodeFs.promises.readlink(host)) })
            } else {
              entries.set(path, { kind: "other" })
            }
          }), { concurrency: 16, discard: true })
        yield* Effect.forEach(directories, visit, { discard: true })
      })
    yield* visit("")
    return entries
  })

/** The host path of a volume path inside a cache directory. */
export const hostPath = (root: string, path: string): string => NodePath.join(root, ...path.split("/"))

/** Parents before children (and, reversed, children before parents). */
export const byDepth = (a: string, b: string): number => a.split("/").length - b.split("/").length || (a < b ? -1 : a > b ? 1 : 0)
