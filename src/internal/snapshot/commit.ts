/**
 * Commit: sends a sandbox's changes in a snapshot cache back to the volume, path by path,
 * as a three-way merge of
 *
 * - the **base**: what the cache held when it was materialised (the manifest),
 * - the **sandbox**: what the cache holds now,
 * - the **store**: what the volume holds now (walked when the commit starts).
 *
 * A path the sandbox did not change is never written. A path the sandbox changed is applied
 * only when the store still holds the base version; otherwise it is a conflict: the store's
 * version stays, and the sandbox's version (a file or a link) is moved out of the cache into
 * a "kept" directory beside it and reported with that host path. A directory the sandbox
 * removed is removed only once it is empty: the commit deletes the files the sandbox saw and
 * removed, and a file another machine added meanwhile keeps the directory alive.
 *
 * Per-path failures (a quota, a name the store refuses) are reported as failures, with the
 * sandbox's version kept like a conflict's, and the commit goes on with the other paths. A
 * failure of the store itself (`StorageError`, the volume removed) stops the commit: the
 * paths not yet applied are reported with that failure and kept.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Clock, Effect, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StorageError } from "../../VolumeError.js"
import type { InvalidConfig, VolumeFsFailure } from "../../VolumeError.js"
import type { VolumeFs } from "../../VolumeFs.js"
import { io, Manifest, readManifest, sameStamp, UNKNOWN_REMOTE, writeManifest } from "./manifest.js"
import type { BaseEntry, LocalStamp } from "./manifest.js"
import {
  byDepth,
  DEFAULT_DIRECTORY_MODE,
  DEFAULT_FILE_MODE,
  hostPath,
  linkOps,
  modeOps,
  walkCache,
  walkVolume
} from "./trees.js"
import type { CacheEntry, StoreEntry } from "./trees.js"

/**
 * Why a path could not be committed as the sandbox left it:
 * - `ChangedInBoth`: the sandbox and another writer both changed it;
 * - `CreatedInBoth`: both created it (differently);
 * - `ChangedHereRemovedThere`: the sandbox changed it, another writer removed it;
 * - `RemovedHereChangedThere`: the sandbox removed it, another writer changed it (for a
 *   directory: added or changed something below it);
 * - `PathBlocked`: the store has something else in the way (a file where the sandbox needs
 *   a directory, or the reverse).
 */
export type ConflictReason =
  | "ChangedInBoth"
  | "CreatedInBoth"
  | "ChangedHereRemovedThere"
  | "RemovedHereChangedThere"
  | "PathBlocked"

/** A path left as the store has it; `keptAt` is where the sandbox's version went, if it had one. */
export interface Conflict {
  readonly path: string
  readonly reason: ConflictReason
  readonly keptAt: Option.Option<string>
}

/** A path the store refused or that was not attempted after the store failed. */
export interface Failure {
  readonly path: string
  readonly error: VolumeFsFailure | InvalidConfig
  readonly keptAt: Option.Option<string>
}

/** What a commit did. */
export interface CommitResult {
  /** Files and links written to the volume. */
  readonly uploaded: ReadonlyArray<string>
  /** Files, links and directories removed from the volume. */
  readonly deleted: ReadonlyArray<string>
  /** Entries the volume cannot hold (devices, sockets, links where the volume has none), left out. */
  readonly skipped: ReadonlyArray<string>
  readonly conflicts: ReadonlyArray<Conflict>
  readonly failed: ReadonlyArray<Failure>
}

/**
 * A path both sides changed. When both now hold a file of the same size it may be the same
 * change (or this sandbox's own upload that landed after an interrupted commit): the
 * contents are compared before it is called a conflict.
 */
interface PlannedConflict {
  readonly path: string
  readonly reason: ConflictReason
  readonly keep: boolean
  readonly sameSize: Option.Option<{
    readonly cached: Extract<CacheEntry, { readonly kind: "file" }>
    readonly stored: Extract<StoreEntry, { readonly kind: "file" }>
  }>
}

/** What the commit will do, decided before anything is sent. */
interface Plan {
  readonly removeEntries: Array<string>
  readonly removeDirectories: Array<string>
  readonly create: Array<readonly [string, CacheEntry]>
  /** Paths whose permission bits to set, with the cached entry that has them. */
  readonly chmod: Array<readonly [string, Exclude<CacheEntry, { readonly kind: "symlink" | "other" }>]>
  readonly conflicts: Array<PlannedConflict>
  readonly skipped: Array<string>
}

/** Whether the store still holds the base version of a path. */
const storeHoldsBase = (stored: StoreEntry | undefined, base: BaseEntry | undefined): boolean => {
  if (base === undefined) return stored === undefined
  switch (base._tag) {
    case "File":
      return stored?.kind === "file" && stored.size === base.remoteSize && stored.modified === base.remoteModified
    case "Directory":
      return stored?.kind === "directory"
    case "Link":
      return stored?.kind === "symlink" && Option.getOrElse(stored.target, () => base.target) === base.target
  }
}

/** Whether the cache still holds the base version of a path. */
const cacheHoldsBase = (cached: CacheEntry | undefined, base: BaseEntry | undefined): boolean => {
  if (base === undefined) return cached === undefined
  switch (base._tag) {
    case "File":
      return cached?.kind === "file" &&
        (sameStamp(cached.stamp, base.local) || (cached.mode !== base.mode && onlyChangeTimeMoved(cached.stamp, base.local)))
    case "Directory":
      return cached?.kind === "directory"
    case "Link":
      return cached?.kind === "symlink" && cached.target === base.target
  }
}

/** A `chmod` moves the change time alone; a write also moves the modification time. */
const onlyChangeTimeMoved = (now: LocalStamp, then: LocalStamp): boolean =>
  now.size === then.size && now.modified === then.modified && now.inode === then.inode

const kindOf = (entry: BaseEntry): CacheEntry["kind"] =>
  entry._tag === "File" ? "file" : entry._tag === "Directory" ? "directory" : "symlink"

const defaultMode = (entry: CacheEntry) => entry.kind === "directory" ? DEFAULT_DIRECTORY_MODE : DEFAULT_FILE_MODE

/** Decides, path by path, what the sandbox changed and whether the store lets it through. */
const plan = (
  base: Manifest,
  cache: ReadonlyMap<string, CacheEntry>,
  store: ReadonlyMap<string, StoreEntry>,
  canLink: boolean
): Plan => {
  const out: Plan = { removeEntries: [], removeDirectories: [], create: [], chmod: [], conflicts: [], skipped: [] }
  const paths = new Set([...Object.keys(base.entries), ...cache.keys()])
  for (const path of [...paths].sort(byDepth)) {
    const known = base.entries[path]
    const raw = cache.get(path)
    const storable = raw !== undefined && (raw.kind === "file" || raw.kind === "directory" || (raw.kind === "symlink" && canLink))
    if (raw !== undefined && !storable) out.skipped.push(path)
    const cached = storable ? raw : undefined
    const stored = store.get(path)

    if (cacheHoldsBase(cached, known)) {
      if (cached !== undefined && cached.kind !== "symlink" && known !== undefined && known._tag !== "Link" && cached.mode !== known.mode) {
        out.chmod.push([path, cached])
      }
      continue
    }
    if (!storeHoldsBase(stored, known)) {
      if (cached === undefined) {
        if (stored !== undefined) {
          out.conflicts.push({ path, reason: "RemovedHereChangedThere", keep: false, sameSize: Option.none() })
        }
      } else if (cached.kind === "directory" && stored?.kind === "directory") {
        // Both have a directory here: its entries are merged one by one.
      } else if (cached.kind === "symlink" && stored?.kind === "symlink" && Option.contains(stored.target, cached.target)) {
        // Both made the same link.
      } else {
        out.conflicts.push({
          path,
          reason: known === undefined ? "CreatedInBoth" : stored === undefined ? "ChangedHereRemovedThere" : "ChangedInBoth",
          keep: cached.kind !== "directory",
          sameSize: cached.kind === "file" && stored?.kind === "file" && stored.size === cached.stamp.size
            ? Option.some({ cached, stored })
            : Option.none()
        })
      }
      continue
    }
    // The store still holds the base: the sandbox's version goes through.
    if (known !== undefined && (cached === undefined || cached.kind !== kindOf(known) || known._tag === "Link")) {
      if (known._tag === "Directory") out.removeDirectories.push(path)
      else out.removeEntries.push(path)
    }
    if (cached !== undefined) {
      out.create.push([path, cached])
      if ((cached.kind === "file" || cached.kind === "directory") && cached.mode !== defaultMode(cached)) {
        out.chmod.push([path, cached])
      }
    }
  }
  return out
}

/** The store as the base saw it. */
const storeOfBase = (base: Manifest): Map<string, StoreEntry> =>
  new Map(Object.entries(base.entries).map(([path, entry]): [string, StoreEntry] => {
    switch (entry._tag) {
      case "File":
        return [path, { kind: "file", size: entry.remoteSize, modified: entry.remoteModified, mode: entry.mode }]
      case "Directory":
        return [path, { kind: "directory", mode: entry.mode }]
      case "Link":
        return [path, { kind: "symlink", target: Option.some(entry.target) }]
    }
  }))

/** Errors that say the store's tree is in the way of this path, not that the store failed. */
const isBlocked = (error: VolumeFsFailure | InvalidConfig): boolean =>
  error._tag === "VolumeFsError" &&
  (error.reason === "NotADirectory" || error.reason === "IsADirectory" || error.reason === "AlreadyExists" ||
    error.reason === "DirectoryNotEmpty")

/** Errors after which no further request to the store is worth making. */
const isFatal = (error: VolumeFsFailure | InvalidConfig): boolean =>
  error._tag === "StorageError" || error._tag === "VolumeNotFound"

/** Uploads one cached file atomically; the file is opened without following a link. */
const upload = (fs: VolumeFs, cacheDir: string, path: string) =>
  Stream.unwrapScoped(Effect.map(
    Effect.acquireRelease(
      io(
        `opening ${path}`,
        () => NodeFs.promises.open(hostPath(cacheDir, path), NodeFs.constants.O_RDONLY | NodeFs.constants.O_NOFOLLOW)
      ),
      (handle) => Effect.promise(() => handle.close())
    ),
    (handle) =>
      NodeStream.fromReadable<StorageError>(
        () => handle.createReadStream({ autoClose: false }),
        (cause) => new StorageError({ message: `snapshot cache: reading ${path} failed`, operation: "snapshot cache", cause })
      )
  )).pipe(Stream.run(fs.sink(path)))

/** Whether the cached file and the stored file hold the same bytes (compared chunk by chunk). */
const sameContent = (fs: VolumeFs, cacheDir: string, path: string) =>
  Effect.scoped(Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      io(`opening ${path}`, () => NodeFs.promises.open(hostPath(cacheDir, path), NodeFs.constants.O_RDONLY | NodeFs.constants.O_NOFOLLOW)),
      (handle) => Effect.promise(() => handle.close())
    )
    let position = 0
    const differs = yield* fs.readStream(path).pipe(
      Stream.mapEffect((chunk) =>
        Effect.map(io(`reading ${path}`, () => handle.read(Buffer.alloc(chunk.byteLength), 0, chunk.byteLength, position)), (read) => {
          position += chunk.byteLength
          return read.bytesRead !== chunk.byteLength || !read.buffer.equals(chunk)
        })
      ),
      Stream.takeUntil((different) => different),
      Stream.runLast
    )
    return !Option.getOrElse(differs, () => false)
  }))

/**
 * Where the sandbox's versions of conflicting or failed paths are kept: a new directory
 * `<cache>.kept/<time>-<random>` beside the cache (never inside it, so the next materialise
 * cannot drop it), created on first use.
 */
const keptDirectory = (cacheDir: string) =>
  Effect.gen(function*() {
    const now = new Date(yield* Clock.currentTimeMillis).toISOString().replace(/[:.]/g, "-")
    const parent = `${cacheDir}.kept`
    yield* io("creating the kept directory", () => NodeFs.promises.mkdir(parent, { recursive: true }))
    return yield* io("creating the kept directory", () => NodeFs.promises.mkdtemp(NodePath.join(parent, `${now}-`)))
  })

/**
 * Sends what the sandbox changed in `cacheDir` since it was materialised to the volume, as
 * described at the top of this module. Fails only when the cache itself cannot be read.
 */
export const commit = (fs: VolumeFs, cacheDir: string): Effect.Effect<CommitResult, StorageError> =>
  Effect.gen(function*() {
    const base = yield* readManifest(cacheDir, "strict")
    const cache = yield* walkCache(cacheDir)
    const links = linkOps(fs)
    const modes = modeOps(fs)
    const entries: Record<string, BaseEntry> = { ...base.entries }
    const uploaded: Array<string> = []
    const deleted: Array<string> = []
    const conflicts: Array<Conflict> = []
    const failed: Array<Failure> = []
    const skipped: Array<string> = []
    /** The store's own failure, after which nothing more is sent. */
    const state: { fatal: Option.Option<VolumeFsFailure | InvalidConfig> } = { fatal: Option.none() }

    const keptRoot = yield* Effect.cached(keptDirectory(cacheDir))
    /** Moves the sandbox's version of `path` out of the cache; on failure it stays where it is. */
    const keep = (path: string) =>
      Effect.gen(function*() {
        delete entries[path]
        const target = hostPath(yield* keptRoot, path)
        yield* io(`keeping ${path}`, () => NodeFs.promises.mkdir(NodePath.dirname(target), { recursive: true }))
        yield* io(`keeping ${path}`, () => NodeFs.promises.rename(hostPath(cacheDir, path), target))
        return target
      }).pipe(Effect.orElseSucceed(() => hostPath(cacheDir, path)))
    const conflict = (path: string, reason: ConflictReason, keepIt: boolean) =>
      Effect.gen(function*() {
        delete entries[path]
        conflicts.push({ path, reason, keptAt: keepIt ? Option.some(yield* keep(path)) : Option.none() })
      })
    const fail = (path: string, error: VolumeFsFailure | InvalidConfig, keepIt: boolean) =>
      Effect.gen(function*() {
        if (isFatal(error)) state.fatal = Option.some(error)
        failed.push({ path, error, keptAt: keepIt ? Option.some(yield* keep(path)) : Option.none() })
      })
    /** Runs one step for `path` unless the store already failed; sorts its failure. */
    const step = <A>(
      path: string,
      keepIt: boolean,
      effect: Effect.Effect<A, VolumeFsFailure | InvalidConfig>,
      onSuccess: (a: A) => void
    ) =>
      Effect.suspend(() =>
        Option.match(state.fatal, {
          onSome: (error) => fail(path, error, keepIt),
          onNone: () =>
            effect.pipe(
              Effect.matchEffect({
                onSuccess: (a) => Effect.sync(() => onSuccess(a)),
                onFailure: (error) => isBlocked(error) ? conflict(path, "PathBlocked", keepIt) : fail(path, error, keepIt)
              })
            )
        })
      )

    const work = Effect.gen(function*() {
      // Without the store's tree nothing is sent: every change of the sandbox is then planned
      // as if the store still held the base, and each one fails (and is kept) at its step.
      const store = yield* walkVolume(fs).pipe(
        Effect.catchAll((error) =>
          Effect.sync(() => {
            state.fatal = Option.some(error)
            return storeOfBase(base)
          })
        )
      )
      const todo = plan(base, cache, store, Option.isSome(links))
      skipped.push(...todo.skipped)
      yield* Effect.forEach(todo.conflicts, ({ keep: keepIt, path, reason, sameSize }) =>
        Effect.gen(function*() {
          if (Option.isSome(sameSize)) {
            const { cached, stored } = sameSize.value
            if (yield* sameContent(fs, cacheDir, path).pipe(Effect.orElseSucceed(() => false))) {
              entries[path] = {
                _tag: "File",
                remoteSize: stored.size,
                remoteModified: stored.modified,
                local: cached.stamp,
                mode: cached.mode
              }
              return
            }
          }
          yield* conflict(path, reason, keepIt)
        }), { concurrency: 4, discard: true })

      yield* Effect.forEach(todo.removeEntries, (path) =>
        step(
          path,
          false,
          Effect.catchTag(fs.remove(path), "PathNotFound", () => Effect.void),
          () => {
            delete entries[path]
            deleted.push(path)
          }
        ), { concurrency: 8, discard: true })
      // Children first; a directory goes only once it is empty: what another machine added keeps it.
      for (const path of [...todo.removeDirectories].sort(byDepth).reverse()) {
        const removeIfEmpty = Effect.flatMap(fs.list(path), (children) =>
          children.length === 0 ? Effect.as(fs.removeDir(path), "removed" as const) : Effect.succeed("kept" as const)).pipe(
            Effect.catchTag("PathNotFound", () => Effect.succeed("gone" as const))
          )
        yield* step(path, false, removeIfEmpty, (outcome) => {
          delete entries[path]
          if (outcome === "removed") deleted.push(path)
          // Something below it is new or changed elsewhere; report the directory unless a path below already is.
          if (outcome === "kept" && !conflicts.some((c) => c.path.startsWith(`${path}/`))) {
            conflicts.push({ path, reason: "RemovedHereChangedThere", keptAt: Option.none() })
          }
        })
      }

      const directories = todo.create.filter(([, entry]) => entry.kind === "directory")
      for (const [path, entry] of directories) {
        yield* step(path, false, fs.mkdir(path), () => {
          entries[path] = { _tag: "Directory", mode: entry.kind === "directory" ? entry.mode : DEFAULT_DIRECTORY_MODE }
        })
      }
      yield* Effect.forEach(todo.create, ([path, entry]) => {
        if (entry.kind === "file") {
          return step(path, true, upload(fs, cacheDir, path), () => {
            entries[path] = {
              _tag: "File",
              remoteSize: entry.stamp.size,
              remoteModified: UNKNOWN_REMOTE,
              local: entry.stamp,
              mode: entry.mode
            }
            uploaded.push(path)
          })
        }
        if (entry.kind === "symlink" && Option.isSome(links)) {
          return step(path, true, links.value.symlink(entry.target, path), () => {
            entries[path] = { _tag: "Link", target: entry.target }
            uploaded.push(path)
          })
        }
        return Effect.void
      }, { concurrency: 4, discard: true })

      yield* Option.match(modes, {
        onNone: () => Effect.void,
        onSome: (ops) =>
          Effect.forEach(todo.chmod, ([path, cached]) =>
            step(path, false, ops.chmod(path, cached.mode), () => {
              const entry = entries[path]
              if (entry?._tag === "Directory") entries[path] = { ...entry, mode: cached.mode }
              // The chmod in the cache moved the change time: the stamp now is the synced one.
              if (entry?._tag === "File" && cached.kind === "file") entries[path] = { ...entry, mode: cached.mode, local: cached.stamp }
            }), { concurrency: 8, discard: true })
      })

      // Read the new files' stamps back from listings (the source every stamp comes from),
      // so the next materialise does not download what this commit sent.
      const parents = new Set(uploaded.map((path) => NodePath.posix.dirname(path)))
      yield* Effect.forEach(parents, (dir) =>
        fs.list(dir).pipe(
          Effect.map((children) => {
            for (const child of children) {
              const entry = entries[child.path]
              if (child.kind !== "file" || entry?._tag !== "File" || entry.remoteModified !== UNKNOWN_REMOTE) continue
              if (child.size !== entry.remoteSize) continue
              entries[child.path] = {
                ...entry,
                remoteModified: Option.match(child.modified, { onNone: () => 0, onSome: (m) => m.epochMillis })
              }
            }
          }),
          Effect.ignore
        ), { concurrency: 8, discard: true })
    })

    // What was applied is recorded even when the commit is interrupted half-way.
    yield* work.pipe(
      Effect.ensuring(Effect.ignore(Effect.suspend(() => writeManifest(cacheDir, new Manifest({ version: 2, entries })))))
    )
    const sorted = (paths: ReadonlyArray<string>) => [...paths].sort()
    return {
      uploaded: sorted(uploaded),
      deleted: sorted(deleted),
      skipped: sorted(skipped),
      conflicts: [...conflicts].sort((a, b) => byDepth(a.path, b.path)),
      failed: [...failed].sort((a, b) => byDepth(a.path, b.path))
    }
  })
