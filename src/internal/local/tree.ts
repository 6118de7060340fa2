/**
 * Directory-tree walks for the local directory driver, through descriptors only (a
 * concurrent rename cannot redirect them), in batches that let other fibers run.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { VolumeFsFailure } from "../../VolumeError.js"
import { errnoCode } from "./errno.js"
import { at, closeQuietlySync, hostCall, openSubdirSync, readdirRaw, unlinkQuietlySync, WALK_BATCH } from "./fd.js"

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
        if (++steps % WALK_BATCH === 0) yield* Effect.yieldNow()
      }
    })
    return Effect.ensuring(
      walk,
      Effect.sync(() => {
        for (const frame of stack) visitor.close(frame.handle)
      })
    )
  })


/** Sums apparent sizes of regular files and symlinks below a directory. */
export const measureTree = (dirfd: number, path: string): Effect.Effect<number, VolumeFsFailure> => {
  let total = 0
  return walkTree<number>(dirfd, {
    scan: (dir) =>
      hostCall(path, () => {
        const subdirs: Array<Buffer> = []
        for (const name of readdirRaw(dir)) {
          const stat = NodeFs.lstatSync(at(dir, name), { throwIfNoEntry: false })
          if (stat === undefined) continue
          if (stat.isDirectory()) subdirs.push(name)
          else if (stat.isFile() || stat.isSymbolicLink()) total += stat.size
        }
        return subdirs
      }),
    descend: (dir, name) => hostCall(path, () => openSubdirSync(dir, name)),
    leave: () => Effect.void,
    close: closeQuietlySync
  }).pipe(Effect.map(() => total))
}

/** Deletes everything below a directory (not the directory itself). */
export const emptyTree = (dirfd: number, path: string): Effect.Effect<void, VolumeFsFailure> =>
  walkTree<number>(dirfd, {
    // unlink first: one call for the common case, and EISDIR tells directories apart.
    scan: (dir) =>
      hostCall(path, () => {
        const subdirs: Array<Buffer> = []
        for (const name of readdirRaw(dir)) {
          try {
            NodeFs.unlinkSync(at(dir, name))
          } catch (error) {
            const code = errnoCode(error)
            if (code === "EISDIR") subdirs.push(name)
            else if (code !== "ENOENT") throw error
          }
        }
        return subdirs
      }),
    descend: (dir, name) =>
      hostCall(path, () => {
        const child = openSubdirSync(dir, name)
        // Swapped for a file or symlink since the scan: remove that instead.
        if (child === undefined) unlinkQuietlySync(dir, name)
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
