/**
 * One sandbox at a time per cache directory. A cache directory is reused by the next sandbox
 * of the same name (so only what changed is downloaded), but two of them running at once
 * must not share it: the second one's materialise would reset the first one's uncommitted
 * changes.
 *
 * A sandbox first writes a claim file of its own beside the directory
 * (`<dir>#claim#<pid>-<start>-<token>`; `#` never occurs in sandbox or volume names), then
 * looks at every claim: if another claim's owner still runs (this process included), it
 * drops its own claim and takes a fresh directory, removed again once its commit is done. Two sandboxes claiming at the same instant may both
 * take fresh directories, never both the shared one. Claims of processes that died (even by
 * `kill -9`) are ignored and removed.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { StorageError } from "../../VolumeError.js"
import * as Liveness from "../liveness.js"
import { io, manifestPath } from "./manifest.js"

const CLAIM = "#claim#"

/** The owner a claim file's name records, if it is one. */
const ownerOf = (name: string, prefix: string): Liveness.ProcessId | undefined => {
  if (!name.startsWith(prefix)) return undefined
  const match = /^(\d+)-(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length))
  return match === null ? undefined : { pid: Number(match[1]), start: Number(match[2]) }
}

/**
 * The cache directory a sandbox may use for `directory`: `directory` itself when no live
 * sandbox holds it, else a fresh sibling that the scope removes.
 */
export const claim = (directory: string): Effect.Effect<string, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = NodePath.dirname(directory)
    const prefix = `${NodePath.basename(directory)}${CLAIM}`
    const me = yield* Liveness.current
    const mine = `${prefix}${me.pid}-${me.start}-${NodeCrypto.randomBytes(6).toString("hex")}`
    yield* io("creating the cache", () => NodeFs.promises.mkdir(parent, { recursive: true }))
    const claimPath = NodePath.join(parent, mine)
    const unclaim = Effect.ignore(io("releasing the cache claim", () => NodeFs.promises.rm(claimPath, { force: true })))
    // Claim, look, and either keep the claim for the scope or drop it, without a gap.
    const shared = yield* Effect.uninterruptible(Effect.gen(function*() {
      yield* io("claiming the cache", () => NodeFs.promises.writeFile(claimPath, "", { flag: "wx" }))
      const names = yield* io("reading the cache claims", () => NodeFs.promises.readdir(parent)).pipe(
        Effect.tapError(() => unclaim)
      )
      let alone = true
      for (const name of names) {
        const owner = name === mine ? undefined : ownerOf(name, prefix)
        if (owner === undefined) continue
        if (yield* Liveness.isAlive(owner)) alone = false
        else yield* Effect.ignore(io("removing a stale claim", () => NodeFs.promises.rm(NodePath.join(parent, name), { force: true })))
      }
      if (alone) yield* Effect.addFinalizer(() => unclaim)
      else yield* unclaim
      return alone
    }))
    if (shared) return directory
    return yield* Effect.acquireRelease(
      io("creating a cache of its own", () => NodeFs.promises.mkdtemp(`${directory}.instance-`)),
      (fresh) =>
        Effect.ignore(io("removing the cache of its own", async () => {
          await NodeFs.promises.rm(fresh, { recursive: true, force: true })
          await NodeFs.promises.rm(manifestPath(fresh), { force: true })
        }))
    )
  })
