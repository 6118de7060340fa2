/**
 * Shared pieces of the sandbox tests: a fresh home per test with the local backend and
 * the namespace runtime, and the "nothing left behind" check.
 */
import { assert } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import type { Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Cgroups from "../../src/internal/namespace/cgroups.js"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import type { SandboxRuntime } from "../../src/Sandbox.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import type { StorageError } from "../../src/VolumeError.js"

/** A scoped temporary directory (home, host dirs, images). */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "ev-sandbox-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Runs `body` with a fresh home: the local backend there plus the namespace runtime. */
export const withHome = <A, E>(
  body: (dir: string) => Effect.Effect<A, E, VolumeBackend | SandboxRuntime | Scope.Scope>
): Effect.Effect<A, E | StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const layer = Layer.mergeAll(LocalBackend.layer({ home: join(dir, "home") }), NamespaceRuntime.layer)
    // Sandboxes close before the backend they record their attachments in.
    return yield* Effect.provide(Effect.scoped(body(dir)), layer)
  })

/** Writes an executable host file. */
export const writeScript = (path: string, text: string): void => {
  writeFileSync(path, text)
  chmodSync(path, 0o755)
}

/** The staging prefix of the sandboxes of process `owner` (other processes' sandboxes are theirs to check). */
export const stagingPrefix = (owner: number = process.pid): string => `effect-volumes-sandbox-${owner}-`

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures")

/** Processes whose command line mentions `needle` (not us). */
export const processesMentioning = (needle: string): ReadonlyArray<string> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid).flatMap((pid) => {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")
      return cmdline.includes(needle) ? [`${pid}: ${cmdline}`] : []
    } catch {
      return []
    }
  })

/** Sandbox cgroups of process `owner` that still exist. */
export const leftoverCgroups = (owner: number = process.pid): ReadonlyArray<string> =>
  Cgroups.parents().flatMap((parent) =>
    readdirSync(parent).filter((name) => name.startsWith(Cgroups.leafPrefix(owner))).map((name) => join(parent, name))
  )

/** No mount, loop device, FUSE export or process of a sandbox in `dir` (of process `owner`) is left. */
export const assertNothingLeft = (dir: string, marker?: string, owner?: number) =>
  Effect.sync(() => {
    const STAGING = stagingPrefix(owner)
    const mountinfo = readFileSync("/proc/self/mountinfo", "utf8")
    assert.notInclude(mountinfo, dir, "a mount from the test dir is left")
    // Staging directories of this test run only (TMPDIR), not of other runs on the machine.
    const staging = join(tmpdir(), STAGING)
    assert.notInclude(mountinfo, staging, "a staged sandbox mount is left")
    const loops = execFileSync("losetup", ["-a"], { encoding: "utf8" })
    assert.notInclude(loops, dir, "a loop device on an image of the test dir is left")
    assert.notInclude(loops, staging, "a loop device on a FUSE export is left")
    assert.deepStrictEqual(processesMentioning(staging), [], "a sandbox keeper is left")
    if (marker !== undefined) assert.deepStrictEqual(processesMentioning(marker), [], "a sandboxed command is left")
    assert.deepStrictEqual(
      readdirSync(tmpdir()).filter((name) => name.startsWith(STAGING)),
      [],
      "a staging directory is left"
    )
    assert.deepStrictEqual(leftoverCgroups(owner), [], "a sandbox cgroup is left")
  })

/** The failure of an `Either` (fails the test when it is a success). */
export const leftOf = <A, E>(either: Either.Either<A, E>): E => {
  if (Either.isRight(either)) assert.fail(`expected a failure, got ${JSON.stringify(either.right)}`)
  return (either as Either.Left<E, A>).left
}

/**
 * Runs the fixture `test/sandbox/fixtures/<fixture>` in a child process until it prints its
 * first line; `killed` SIGKILLs it and waits until it is gone.
 */
export const startHolder = (fixture: string, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = spawn(process.execPath, ["--import", "tsx", join(fixtures, fixture), ...args], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    const gone = Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
      else child.on("exit", () => resume(Effect.void))
    })
    const ready = yield* Effect.async<string>((resume) => {
      let out = ""
      child.stdout.on("data", (data: Buffer) => {
        out += data.toString("utf8")
        if (out.includes("\n")) resume(Effect.succeed(out))
      })
      child.on("exit", () => resume(Effect.succeed(out)))
    })
    const killed = Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), gone)
    return { ready, killed, pid: child.pid! }
  })
