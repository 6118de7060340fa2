/**
 * Directory-tree walks for the local directory driver, through descriptors only (a
 * concurrent rename cannot redirect them), in batches that let other fibers run.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import { errnoCode } from "./errno.js"
import * as Usage from "../usage.js"
import type { UsageSink } from "../usage.js"
import { at, closeQuietlySync, DIR_FLAGS, hostCall, openSubdirSync, self, unlinkQuietlySync, WALK_BATCH } from "./fd.js"

/** Directory entries handled between two turns of the event loop. */
export const ENTRY_BATCH = 512

/**
 * Lets the event loop run once (timers, I/O callbacks, other fibers) before continuing.
 * `Effect.yieldNow` only yields to other fibers; work done in long synchronous batches
 * must also let timers and sockets through. Interruptible.
 */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * Calls `f` with the raw name of every entry of the directory open as `dirfd`, in
 * batches of {@link ENTRY_BATCH} with a turn of the event loop between them, so a
 * directory of 100,000 entries never holds the loop for long. `f` runs inside a host
 * call: what it throws is typed like any failed host call. Interruptible between batches.
 */
export const eachEntry = (
  dirfd: number,
  path: string,
  f: (name: Buffer) => void
): Effect.Effect<void, VolumeFsFailure> =>
  Effect.acquireUseRelease(
    // A second descriptor of the same directory (the magic link is the directory itself).
    hostCall(path, () => NodeFs.opendirSync(self(dirfd), { encoding: "buffer" as BufferEncoding, bufferSize: 128 })),
    (dir) =>
      Effect.gen(function*() {
        while (true) {
          const done = yield* hostCall(path, () => {
            for (let i = 0; i < ENTRY_BATCH; i++) {
              const entry = dir.readSync()
              if (entry === null) return true
              f(entry.name as unknown as Buffer)
            }
            return false
          })
          if (done) return
          yield* yieldToEventLoop
        }
      }),
    (dir) => Effect.sync(() => dir.closeSync())
  )

// ---- tree walks -------------------------------------------------------------------------

/**
 * A depth-first walk over a directory tree through descriptors (never paths, which a
 * concurrent rename could redirect). Handles are opened by `descend` and closed by
 * `close`; at most one handle per level is open at a time.
 */
export interface TreeVisitor<H> {
  /** Handles the entries of `dir`; returns the names of the subdirectories to visit. */
  readonly scan: (dir: H) => Effect.Effect<ReadonlyArray<Buffer>, VolumeFsFailure>
  /** Opens subdirectory `name` of `dir`, or `undefined` to skip it (it vanished or changed kind). */
  readonly descend: (dir: H, name: Buffer) => Effect.Effect<H | undefined, VolumeFsFailure>
  /** Runs after subdirectory `name` of `dir` was visited completely, while `child` is still open. */
  readonly leave: (dir: H, name: Buffer, child: H) => Effect.Effect<void, VolumeFsFailure>
  readonly close: (dir: H) => void
}

export interface Frame<H> {
  readonly handle: H
  readonly name: Buffer
  readonly pending: Array<Buffer>
}

/** Visits everything below `top` (whose handle the caller owns and closes). */
export const walkTree = <H>(top: H, visitor: TreeVisitor<H>): Effect.Effect<void, VolumeFsFailure> =>
  Effect.suspend(() => {
    const stack: Array<Frame<H>> = []
    const walk = Effect.gen(function*() {
      const pending = [...(yield* visitor.scan(top))]
      let steps = 0
      while (true) {
        const frame = stack[stack.length - 1]
        const queue = frame?.pending ?? pending
        const name = queue.pop()
        if (name === undefined) {
          if (frame === undefined) return
          stack.pop()
          yield* Effect.ensuring(
            visitor.leave(stack[stack.length - 1]?.handle ?? top, frame.name, frame.handle),
            Effect.sync(() => visitor.close(frame.handle))
          )
        } else {
          const child = yield* visitor.descend(frame?.handle ?? top, name)
          if (child === undefined) continue
          const next: Frame<H> = { handle: child, name, pending: [] }
          stack.push(next)
          next.pending.push(...(yield* visitor.scan(child)))
        }
        if (++steps % WALK_BATCH === 0) yield* yieldToEventLoop
      }
    })
    return Effect.ensuring(
      walk,
      Effect.sync(() => {
        for (const frame of stack) visitor.close(frame.handle)
      })
    )
  })


/**
 * Entries a tree may have to be measured or removed in one synchronous step: an empty or
 * small volume, or its trash entry; small enough that the step is short and its open
 * descriptors (one per level) stay few.
 */
const SMALL_TREE_ENTRIES = 128

/**
 * Sums the usage of regular files and symlinks below a directory. With `doomed`, the same
 * walk first deletes the temporary files (and temporary directories of unfinished copies)
 * of writers that are gone, as `doomed(name)` decides from the name, and counts only what
 * stays; a temporary that cannot be deleted is left (and not counted) for a later walk.
 * Through descriptors like every other walk, so a symlink swapped in meanwhile is never
 * followed.
 */
export const measureTree = (
  dirfd: number,
  path: string,
  doomed?: (name: string) => boolean
): Effect.Effect<Usage.Usage, VolumeFsFailure> =>
  Effect.flatMap(
    hostCall(path, () => measureSmallTreeSync(dirfd, doomed, { left: SMALL_TREE_ENTRIES })),
    (small) => small !== undefined ? Effect.succeed(small) : measureTreeBatched(dirfd, path, doomed)
  )

/**
 * One entry of a directory being measured: what it uses if it is a file or a symlink; a
 * subdirectory goes to `subdirs`; a temporary `doomed` accepts is deleted (a directory goes
 * to `doomedDirs`, for its tree to be removed) and uses nothing.
 */
const measureEntry = (
  dirfd: number,
  name: Buffer,
  doomed: ((name: string) => boolean) | undefined,
  subdirs: Array<Buffer>,
  doomedDirs: Array<Buffer>
): Usage.Usage => {
  const stat = NodeFs.lstatSync(at(dirfd, name), { throwIfNoEntry: false })
  if (stat === undefined) return Usage.zero
  if (doomed !== undefined && doomed(name.toString("utf8"))) {
    if (stat.isDirectory()) doomedDirs.push(name)
    else unlinkQuietlySync(dirfd, name)
    return Usage.zero
  }
  if (stat.isDirectory()) {
    subdirs.push(name)
    return Usage.zero
  }
  return Usage.ofStat(stat)
}

/**
 * {@link measureTree} in one synchronous step for a tree of at most `budget` entries, the
 * same descriptor walk without its per-step effects (an empty volume's re-measure cost
 * ≈0.3 ms through them); `undefined` when the budget runs out (temporaries it deleted stay
 * deleted, and the batched walk starts over).
 */
const measureSmallTreeSync = (
  dirfd: number,
  doomed: ((name: string) => boolean) | undefined,
  budget: { left: number }
): Usage.Usage | undefined => {
  let total = Usage.zero
  const subdirs: Array<Buffer> = []
  const doomedDirs: Array<Buffer> = []
  const dir = NodeFs.opendirSync(self(dirfd), { encoding: "buffer" as BufferEncoding, bufferSize: 128 })
  try {
    for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
      if (--budget.left < 0) return undefined
      total = Usage.add(total, measureEntry(dirfd, entry.name as unknown as Buffer, doomed, subdirs, doomedDirs))
    }
  } finally {
    dir.closeSync()
  }
  // An unfinished copy (a doomed directory) is left to the batched walk, which removes it.
  if (doomedDirs.length > 0) return undefined
  for (const name of subdirs) {
    const child = openSubdirSync(dirfd, name)
    if (child === undefined) continue // vanished or swapped since the listing, as in the batched walk
    try {
      const below = measureSmallTreeSync(child, doomed, budget)
      if (below === undefined) return undefined
      total = Usage.add(total, below)
    } finally {
      closeQuietlySync(child)
    }
  }
  return total
}

const measureTreeBatched = (
  dirfd: number,
  path: string,
  doomed?: (name: string) => boolean
): Effect.Effect<Usage.Usage, VolumeFsFailure> => {
  let total = Usage.zero
  return walkTree<number>(dirfd, {
    scan: (dir) => {
      const subdirs: Array<Buffer> = []
      const doomedDirs: Array<Buffer> = []
      const scanned = eachEntry(dir, path, (name) => {
        total = Usage.add(total, measureEntry(dir, name, doomed, subdirs, doomedDirs))
      })
      return scanned.pipe(
        Effect.zipRight(Effect.forEach(doomedDirs, (name) => Effect.ignore(removeSubtree(dir, name, path)), { discard: true })),
        Effect.as(subdirs)
      )
    },
    descend: (dir, name) => hostCall(path, () => openSubdirSync(dir, name)),
    leave: () => Effect.void,
    close: closeQuietlySync
  }).pipe(Effect.map(() => total))
}

/** Deletes subdirectory `name` of `dir` with everything below it. */
const removeSubtree = (dir: number, name: Buffer, path: string): Effect.Effect<void, VolumeFsFailure> =>
  Effect.acquireUseRelease(
    hostCall(path, () => openSubdirSync(dir, name)),
    (child) =>
      child === undefined ? Effect.void : Effect.zipRight(emptyTree(child, path), hostCall(path, () => NodeFs.rmdirSync(at(dir, name)))),
    (child) => Effect.sync(() => child === undefined ? undefined : closeQuietlySync(child))
  )

/**
 * Deletes everything below a directory (not the directory itself); `removed` hears what
 * each deleted file or symlink held.
 */
export const emptyTree = (dirfd: number, path: string, removed?: UsageSink): Effect.Effect<void, VolumeFsFailure> =>
  walkTree<number>(dirfd, {
    // unlink first: one call for the common case, and EISDIR tells directories apart.
    scan: (dir) => {
      const subdirs: Array<Buffer> = []
      return Effect.as(
        eachEntry(dir, path, (name) => {
          const stat = removed === undefined ? undefined : NodeFs.lstatSync(at(dir, name), { throwIfNoEntry: false })
          try {
            NodeFs.unlinkSync(at(dir, name))
            if (removed !== undefined) removed(Usage.ofStat(stat))
          } catch (error) {
            const code = errnoCode(error)
            if (code === "EISDIR") subdirs.push(name)
            else if (code !== "ENOENT") throw error
          }
        }),
        subdirs
      )
    },
    descend: (dir, name) =>
      hostCall(path, () => {
        const child = openSubdirSync(dir, name)
        // Swapped for a file or symlink since the scan: remove that instead.
        if (child === undefined) {
          const stat = removed === undefined ? undefined : NodeFs.lstatSync(at(dir, name), { throwIfNoEntry: false })
          unlinkQuietlySync(dir, name)
          if (removed !== undefined) removed(Usage.ofStat(stat))
        }
        return child
      }),
    leave: (dir, name) =>
      hostCall(path, () => {
        try {
          NodeFs.rmdirSync(at(dir, name))
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error
        }
      }),
    close: closeQuietlySync
  })

/**
 * Deletes what is below the directory open as `dirfd` in one synchronous step, as long as
 * that takes at most `budget` entries; returns whether it got everything (when the budget
 * runs out, what it deleted stays deleted and the rest is left for the batched walk). The
 * same descriptor walk as {@link emptyTree}, without its per-step effects: removing the
 * two directories of an empty volume cost ≈0.75 ms through them and ≈0.25 ms here.
 */
const emptySmallTreeSync = (dirfd: number, budget: { left: number }): boolean => {
  const dir = NodeFs.opendirSync(self(dirfd), { encoding: "buffer" as BufferEncoding, bufferSize: 128 })
  const subdirs: Array<Buffer> = []
  try {
    for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
      if (--budget.left < 0) return false
      const name = entry.name as unknown as Buffer
      // The entry's type from the directory listing spares an unlink that fails with EISDIR
      // (a thrown error); an unknown type takes that path.
      if (entry.isDirectory()) {
        subdirs.push(name)
        continue
      }
      try {
        NodeFs.unlinkSync(at(dirfd, name))
      } catch (error) {
        const code = errnoCode(error)
        if (code === "EISDIR") subdirs.push(name)
        else if (code !== "ENOENT") throw error
      }
    }
  } finally {
    dir.closeSync()
  }
  for (const name of subdirs) {
    const child = openSubdirSync(dirfd, name)
    if (child === undefined) {
      // Swapped for a file or symlink since the listing: remove that instead.
      unlinkQuietlySync(dirfd, name)
      continue
    }
    try {
      if (!emptySmallTreeSync(child, budget)) return false
    } finally {
      closeQuietlySync(child)
    }
    try {
      NodeFs.rmdirSync(at(dirfd, name))
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error
    }
  }
  return true
}

/**
 * Deletes the trusted host directory `dir` (ours, e.g. a trash entry) and everything
 * below it, without following any symlink inside; nothing when it does not exist. A tree
 * of at most {@link SMALL_TREE_ENTRIES} entries goes in one synchronous step; a larger one
 * in batches, interruptible between them.
 */
export const removeTree = (dir: string): Effect.Effect<void, VolumeFsFailure> =>
  Effect.acquireUseRelease(
    hostCall(dir, () => {
      try {
        return NodeFs.openSync(dir, DIR_FLAGS)
      } catch (error) {
        const code = errnoCode(error)
        if (code === "ENOENT") return undefined
        // A file (a disk image's trash entry is a directory; anything else is unlinked).
        if (code === "ENOTDIR" || code === "ELOOP") {
          NodeFs.unlinkSync(dir)
          return undefined
        }
        throw error
      }
    }),
    (fd) =>
      fd === undefined ? Effect.void : Effect.zipRight(
        Effect.flatMap(
          hostCall(dir, () => emptySmallTreeSync(fd, { left: SMALL_TREE_ENTRIES })),
          (emptied) => emptied ? Effect.void : emptyTree(fd, dir)
        ),
        hostCall(dir, () => NodeFs.rmdirSync(dir))
      ),
    (fd) => Effect.sync(() => fd === undefined ? undefined : closeQuietlySync(fd))
  )
