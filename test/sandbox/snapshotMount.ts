/**
 * Shared by the memory and S3 runs: directory volumes without a host directory (memory, cloud) are mounted into namespace
 * sandboxes as snapshots: materialised into a local cache at start, committed back at stop.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as NodePath from "node:path"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import { tempDir } from "./support.js"

/** The snapshot round trip every backend without host directories must pass. */
export const snapshotMountTests = (layer: () => Layer.Layer<VolumeBackend, unknown>) => {
  it.scopedLive("a sandbox reads the volume's files and its writes and deletions are committed at stop", () =>
    Effect.gen(function*() {
      const cache = yield* tempDir
      process.env["EFFECT_VOLUMES_CLOUD_CACHE"] = NodePath.join(cache, "cache")
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("snap").create()
        yield* vol.fs().write("/in.txt", "from the host")
        yield* vol.fs().write("/gone.txt", "delete me")
        const stop = yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("snapper").volume("/data", (m) => m.named("snap")).create()
          const out = yield* sb.exec("sh", ["-c", "cat /data/in.txt; echo written > /data/out.txt; rm /data/gone.txt"])
          assert.strictEqual(out.exitCode, 0, out.stderr)
          assert.strictEqual(out.stdout, "from the host")
          // Nothing is committed while the sandbox runs.
          assert.isFalse(yield* vol.fs().exists("/out.txt"))
          return yield* sb.stop()
        }))
        assert.deepStrictEqual(stop.overQuota, [])
        assert.strictEqual(yield* vol.fs().readToString("/out.txt"), "written\n")
        assert.isFalse(yield* vol.fs().exists("/gone.txt"))
        assert.strictEqual(yield* vol.fs().readToString("/in.txt"), "from the host")
        // A read-only mount never commits anything.
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("reader").volume("/data", (m) => m.named("snap").readonly()).create()
          const out = yield* sb.exec("sh", ["-c", "echo x > /data/nope.txt"])
          assert.notStrictEqual(out.exitCode, 0)
        }))
        assert.isFalse(yield* vol.fs().exists("/nope.txt"))
      }).pipe(Effect.provide(Layer.mergeAll(layer(), NamespaceRuntime.layer)))
    }).pipe(Effect.ensuring(Effect.sync(() => delete process.env["EFFECT_VOLUMES_CLOUD_CACHE"]))))
}

