/**
 * One quota account for a directory volume (SPEC §12 "host-side and guest writes share one
 * account"): the file servers of sandboxes are writers of the volume's usage account, like
 * host-side writes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, startHolder, tempDir, withHome } from "./support.js"

const MIB = 1024 * 1024

/** Writes `mib` MiB to `path` inside the sandbox; what dd said and the file's size. */
const fill = (sb: Sandbox.Sandbox, path: string, mib: number) =>
  Effect.map(
    sb.exec("sh", ["-c", `dd if=/dev/zero of=${path} bs=1M count=${mib} status=none; echo rc=$?; stat -c %s ${path}`]),
    (out) => ({ ok: out.stdout.includes("rc=0"), stderr: out.stderr, size: Number(out.stdout.split("\n")[1]) })
  )

const quotaSandbox = (name: string, volume: string) =>
  Sandbox.builder(name).volume("/v", (m) => m.named(volume)).create()

describe("file server: one quota account with the host and other sandboxes", () => {
  it.scopedLive("a sandbox fills the volume close to its quota: a host write past the rest fails QuotaExceeded", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("shared").quota(64).create()
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* quotaSandbox("a", "shared")
          const wrote = yield* fill(sb, "/v/big", 56)
          assert.isTrue(wrote.ok, wrote.stderr)
          // 8 MiB are left on disk, but the sandbox's unspent grant is reserved too.
          const error = yield* Effect.flip(vol.fs().write("/host", new Uint8Array(9 * MIB)))
          assert.strictEqual(error._tag, "QuotaExceeded")
          yield* sb.stop()
        }))
        // After the sandbox, its grant is given back: the rest fits again.
        yield* vol.fs().write("/host", new Uint8Array(7 * MIB))
        const after = yield* Volume.get("shared")
        assert.strictEqual(after.usedBytes, 63 * MIB)
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("two sandboxes on one 64 MiB volume writing 40 MiB each: one gets ENOSPC, the total stays within the quota", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("pair").quota(64).create()
        const a = yield* quotaSandbox("a", "pair")
        const b = yield* quotaSandbox("b", "pair")
        const [wa, wb] = yield* Effect.all([fill(a, "/v/a", 40), fill(b, "/v/b", 40)], { concurrency: 2 })
        assert.isFalse(wa.ok && wb.ok, "both wrote 40 MiB")
        assert.include(wa.ok ? wb.stderr : wa.stderr, "No space left on device")
        assert.isAtMost(wa.size + wb.size, 64 * MIB)
        const stopped = yield* Effect.all([a.stop(), b.stop()])
        assert.deepStrictEqual(stopped.map((s) => s.overQuota), [[], []])
        const after = yield* Volume.get("pair")
        assert.strictEqual(after.usedBytes, wa.size + wb.size)
        assert.isAtMost(after.usedBytes, 64 * MIB)
      })
    ))

  it.scopedLive("a host write made while a sandbox runs makes the sandbox's dd hit ENOSPC earlier", () =>
    withHome(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("host-first").quota(64).create()
        const sb = yield* quotaSandbox("c", "host-first")
        yield* vol.fs().write("/host", new Uint8Array(40 * MIB))
        const wrote = yield* fill(sb, "/v/big", 40)
        assert.isFalse(wrote.ok)
        assert.include(wrote.stderr, "No space left on device")
        assert.strictEqual(wrote.size, 24 * MIB)
        yield* sb.stop()
        const after = yield* Volume.get("host-first")
        assert.strictEqual(after.usedBytes, 64 * MIB)
      })
    ))
})

describe("file server: the quota account after kill -9", () => {
  it.scopedLive("SIGKILL of the process whose sandbox held a grant: the next get re-measures; no reservation is left", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const home = join(dir, "home")
      yield* Volume.builder("q").quota(64).create().pipe(Effect.provide(LocalBackend.layer({ home })))
      const { killed, ready } = yield* startHolder("quotaHolder.ts", [home, "10"])
      // Also when an assertion fails before the kill below.
      yield* Effect.addFinalizer(() => killed)
      assert.include(ready, "ready wrote")
      // Its file server holds an unspent grant: counted as used while it runs.
      const during = yield* Volume.get("q").pipe(Effect.provide(LocalBackend.layer({ home })))
      assert.isAbove(during.usedBytes, 10 * MIB)
      yield* killed
      const after = yield* Volume.get("q").pipe(Effect.provide(LocalBackend.layer({ home })))
      assert.strictEqual(after.usedBytes, 10 * MIB)
      // and the whole rest of the quota is there for the host
      yield* Effect.scoped(
        Effect.flatMap(Volume.get("q"), (vol) => vol.fs().write("/rest", new Uint8Array(54 * MIB)))
      ).pipe(Effect.provide(LocalBackend.layer({ home })))
    }))
})
