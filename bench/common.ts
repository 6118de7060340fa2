/**
 * Shared setup: a scratch root per run, effect runtimes over a backend layer.
 */
import { Layer, ManagedRuntime } from "effect"
import type { Effect } from "effect"
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import * as LocalBackend from "../dist/LocalBackend.js"
import * as NamespaceRuntime from "../dist/NamespaceRuntime.js"
import type { SandboxRuntime } from "../dist/Sandbox.js"
import type { VolumeBackend } from "../dist/VolumeBackend.js"

/** All bench data lives below one directory on the same disk as the node:fs baselines. */
export const scratchRoot = (): string => {
  const base = process.env["BENCH_DIR"] ?? tmpdir()
  mkdirSync(base, { recursive: true })
  return mkdtempSync(join(base, "ev-bench-"))
}

export const removeTree = (dir: string): void => rmSync(dir, { recursive: true, force: true })

export type Runtime<R> = ManagedRuntime.ManagedRuntime<R, unknown>

/** A runtime over the local backend at `home` (plus the namespace runtime for sandboxes). */
export const localRuntime = (
  home: string,
  options: Omit<LocalBackend.LocalBackendOptions, "home"> = {}
): Runtime<VolumeBackend | SandboxRuntime> =>
  ManagedRuntime.make(Layer.mergeAll(LocalBackend.layer({ ...options, home }), NamespaceRuntime.layer))

export const runner = <R>(rt: Runtime<R>) => <A, E>(effect: Effect.Effect<A, E, R>): Promise<A> => rt.runPromise(effect)

/** Deterministic non-constant bytes (so nothing can be deduplicated or compressed away). */
export const bytes = (size: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(size)
  let x = seed * 2654435761 >>> 0
  for (let i = 0; i < size; i += 4) {
    x = (x * 1664525 + 1013904223) >>> 0
    out[i] = x & 0xff
    out[i + 1] = (x >>> 8) & 0xff
    out[i + 2] = (x >>> 16) & 0xff
    out[i + 3] = x >>> 24
  }
  return out
}

/** Runs `body` with a fresh local home (scratch dir + runtime), disposed and deleted after. */
export const withLocalHome = async <A>(
  body: (home: { readonly root: string; readonly run: ReturnType<typeof runner<VolumeBackend | SandboxRuntime>> }) => Promise<A>,
  options: Omit<LocalBackend.LocalBackendOptions, "home"> = {}
): Promise<A> => {
  const root = scratchRoot()
  const rt = localRuntime(join(root, "home"), options)
  try {
    return await body({ root, run: runner(rt) })
  } finally {
    await rt.dispose()
    removeTree(root)
  }
}


/** Why sandboxes cannot run here (bubblewrap unusable), or `undefined` when they can. */
export const bwrapProblem = async (): Promise<string | undefined> => {
  try {
    await promisify(execFile)("bwrap", ["--ro-bind", "/", "/", "true"])
    return undefined
  } catch (e) {
    return `bwrap does not run here: ${String(e)}`
  }
}
