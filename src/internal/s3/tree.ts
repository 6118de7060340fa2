/**
 * Directory trees of one volume: `removeDir`, `rename` and `copy`, object by object with
 * server-side CopyObject and batched DeleteObjects, each under an intent record
 * (`intent.ts`) so an interrupted one is finished by a retry or by a later tree operation.
 *
 * What other readers see meanwhile: a tree rename copies every object first and deletes the
 * sources after, so for its duration an entry can be listed at both paths; a copy shows the
 * target filling up; a removal shows the tree emptying, its directory last. Once the
 * operation (or its roll-forward) is done, only the final state is visible.
 */
import { Effect, Option } from "effect"
import type { VolumeFsFailure } from "../../VolumeError.js"
import * as Paths from "../paths.js"
import type { ListedObject } from "./client.js"
import type { Entries } from "./entries.js"
import { fsError, TREE_CONCURRENCY } from "./entries.js"
import * as Intents from "./intent.js"
import type { Stored, TreeOp } from "./intent.js"
import { sumListing } from "./usage.js"

export const make = (entries: Entries, intents: Intents.Intents) => {
  const { counter, dirOf, fileOf, s3 } = entries

  /** Every object at or below directory `path` (its marker included). */
  const listTree = (path: Paths.NonRootSegments) => Effect.map(s3.list(dirOf(path)), (listing) => listing.objects)

  /** `InvalidPath` if some object of the tree would not fit below `to`. */
  const checkTarget = (objects: ReadonlyArray<ListedObject>, from: Paths.NonRootSegments, to: Paths.NonRootSegments) => {
    const source = Buffer.byteLength(dirOf(from))
    const longest = objects.reduce((max, o) => Math.max(max, Buffer.byteLength(o.key) - source), 0)
    return entries.checkLength(to, longest)
  }

  /** Copies each object below `from` to the same place below `to`, creating `to`'s parents. */
  const copyObjects = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) =>
    Effect.gen(function*() {
      const objects = yield* listTree(from)
      yield* checkTarget(objects, from, to)
      const parents = yield* entries.planParents(to)
      yield* entries.createMarkers(parents.missing)
      const source = dirOf(from)
      const target = dirOf(to)
      yield* Effect.forEach(
        objects,
        // An object removed meanwhile (copy answers None) is simply not part of the copy.
        (object) => Effect.asVoid(s3.copy(object.key, target + object.key.slice(source.length))),
        { concurrency: TREE_CONCURRENCY, discard: true }
      )
      // The target directory exists even if the source had no marker of its own (a copied
      // marker is kept: it carries the directory's mode).
      if (!objects.some((object) => object.key === source)) yield* entries.createMarkers([to])
      return objects
    })

  /** Deletes the tree at `path`, contents first and its marker last; returns what was deleted. */
  const deleteTree = (path: Paths.NonRootSegments, objects: ReadonlyArray<ListedObject>) =>
    Effect.gen(function*() {
      const marker = dirOf(path)
      yield* s3.deleteMany(objects.map((o) => o.key).filter((key) => key !== marker))
      yield* s3.delete(marker)
    })

  /**
   * The repeatable body of each tree operation. `recovered`: finishing an interrupted one,
   * whose usage is then recounted rather than moved by a delta counted twice or never.
   */
  const body = (op: TreeOp, from: Paths.NonRootSegments, to: ReadonlyArray<string>, recovered: boolean) =>
    Effect.gen(function*() {
      switch (op) {
        case "removeDir": {
          const objects = yield* listTree(from)
          yield* deleteTree(from, objects)
          if (!recovered) yield* counter.add(-sumListing(objects).bytes)
          return
        }
        case "rename": {
          const objects = yield* copyObjects(from, to as Paths.NonRootSegments)
          yield* deleteTree(from, objects)
          return
        }
        case "copy": {
          const objects = yield* copyObjects(from, to as Paths.NonRootSegments)
          if (!recovered) yield* counter.add(sumListing(objects).bytes)
          return
        }
      }
    })

  const finish = (stored: Stored) =>
    Effect.zipRight(
      body(stored.intent.op, stored.intent.from as Paths.NonRootSegments, stored.intent.to, true),
      intents.end(stored.key)
    )

  /**
   * Runs tree operation `op` under an intent. An intent of the same operation on the same
   * paths is finished instead (a retry); abandoned intents of other operations are finished
   * first. `validate` runs only for a fresh operation.
   */
  const run = (
    op: TreeOp,
    from: Paths.NonRootSegments,
    to: ReadonlyArray<string>,
    validate: Effect.Effect<void, VolumeFsFailure>
  ): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      const pending = yield* intents.pending
      const retried = pending.find((stored) => Intents.same(stored.intent, op, from, to))
      const abandoned = (yield* intents.abandoned(pending)).filter((stored) => stored !== retried)
      yield* Effect.forEach(abandoned, finish, { discard: true })
      if (retried !== undefined) yield* finish(retried)
      // Best effort: a recount that cannot finish now is done by the next due one.
      if (retried !== undefined || abandoned.length > 0) {
        yield* counter.recount.pipe(Effect.asVoid, Effect.catchTag("StorageError", () => Effect.void))
      }
      if (retried !== undefined) return
      yield* validate
      const key = yield* intents.begin(op, from, to)
      yield* body(op, from, to, false)
      yield* intents.end(key)
    })

  const removeDir = (path: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    run(
      "removeDir",
      path,
      [],
      Effect.gen(function*() {
        const found = yield* entries.probe(path)
        if (found.kind === "file") return yield* fsError(path, "NotADirectory")
        if (found.kind === "missing") return yield* entries.missing(path)
      })
    )

  /** Whether directory `path` has any entry. */
  const hasEntries = (path: Paths.NonRootSegments) =>
    Effect.map(s3.list(dirOf(path), { limit: 2 }), (listing) => listing.objects.some((o) => o.key !== dirOf(path)))

  const rename = (from: Paths.NonRootSegments, to: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      yield* Effect.all([entries.checkLength(from), entries.checkLength(to)])
      const source = yield* entries.probe(from)
      // A retry of an interrupted tree rename finds its source half gone: let `run` decide.
      if (source.kind !== "file") {
        return yield* run(
          "rename",
          from,
          to,
          Effect.gen(function*() {
            if (source.kind === "missing") return yield* entries.missing(from)
            // Linux refuses a target that is an ancestor of the source before it looks at kinds.
            if (to.length < from.length && Paths.isWithin(from, to)) return yield* fsError(to, "DirectoryNotEmpty")
            const target = yield* entries.probe(to)
            if (target.kind === "file") return yield* fsError(to, "NotADirectory")
            if (target.kind === "directory" && (yield* hasEntries(to))) return yield* fsError(to, "DirectoryNotEmpty")
          })
        )
      }
      if (to.length < from.length && Paths.isWithin(from, to)) return yield* fsError(to, "DirectoryNotEmpty")
      const [target, parents] = yield* Effect.all([entries.probe(to), entries.planParents(to)], { concurrency: 2 })
      if (target.kind === "directory") return yield* fsError(to, "IsADirectory")
      yield* entries.createMarkers(parents.missing)
      // A file rename is CopyObject then DeleteObject: repeatable without an intent.
      const copied = yield* s3.copy(fileOf(from), fileOf(to))
      if (Option.isNone(copied)) return yield* entries.missing(from)
      yield* s3.delete(fileOf(from))
      if (target.kind === "file") yield* counter.add(-target.head.size)
    })

  const copy = (from: Paths.NonRootSegments, to: Paths.NonRootSegments): Effect.Effect<void, VolumeFsFailure> =>
    Effect.gen(function*() {
      yield* Effect.all([entries.checkLength(from), entries.checkLength(to)])
      const source = yield* entries.probe(from)
      if (source.kind !== "file") {
        return yield* run(
          "copy",
          from,
          to,
          Effect.gen(function*() {
            if (source.kind === "missing") return yield* entries.missing(from)
            const target = yield* entries.probe(to)
            if (target.kind !== "missing") return yield* fsError(to, "AlreadyExists")
            yield* entries.loadVolume
          })
        )
      }
      const [target, parents, versioned] = yield* Effect.all(
        [entries.probe(to), entries.planParents(to), entries.loadVolume],
        { concurrency: 3 }
      )
      if (target.kind === "directory") return yield* fsError(to, "IsADirectory")
      yield* entries.createMarkers(parents.missing)
      const copied = yield* s3.copy(fileOf(from), fileOf(to))
      if (Option.isNone(copied)) return yield* entries.missing(from)
      const replaced = target.kind === "file" ? target.head.size : 0
      return yield* entries.settle(fileOf(to), source.head.size - replaced, Option.some(versioned))
    })

  return { removeDir, rename, copy, listTree } as const
}
