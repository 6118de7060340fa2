/**
 * SPEC §9 with sandboxes on the local backend: who may snapshot, fork and restore a
 * volume a sandbox holds, in-place writes in forks, and read-only snapshot mounts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import * as Mount from "../../src/Mount.js"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { expectFailure } from "../conformance/support.js"
import { withHome } from "./support.js"

const sh = (sandbox: Sandbox.Sandbox, script: string) => sandbox.exec("sh", ["-c", script])

describe("m.snapshot(volume, snapshot)", () => {
  it.effect("builds a read-only named mount of an existing volume that round-trips through JSON", () =>
    Effect.gen(function*() {
      const mount = yield* Mount.build("/ref", (m) => m.snapshot("workspace", "known-good"))
      assert.strictEqual(mount._tag, "Named")
      if (mount._tag !== "Named") return
      assert.isTrue(mount.readonly)
      assert.strictEqual(mount.mode, "existing")
      assert.deepStrictEqual(mount.snapshot, Option.some("known-good"))
      const json = yield* Schema.encode(Mount.VolumeMountFromJson)(mount)
      assert.deepStrictEqual(yield* Schema.decodeUnknown(Mount.VolumeMountFromJson)(json), mount)
    }))

  it.effect("refuses a bad snapshot name and a writable snapshot mount", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(Mount.build("/ref", (m) => m.snapshot("workspace", "not valid")))
      assert.include(bad.message, "snapshot")
      const built = yield* Mount.build("/ref", (m) => m.snapshot("workspace", "s"))
      if (built._tag !== "Named") return assert.fail("expected a named mount")
      const writable = yield* Effect.flip(Mount.validate(new Mount.NamedMount({ ...built, readonly: false })))
      assert.include(writable.message, "read-only")
    }))
})

describe("snapshots with sandboxes (namespace runtime; local backend unless said)", () => {
  it.scopedLive("a volume a running sandbox holds read-write: snapshot and fork refused unless live, restore refused", () =>
    withHome(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.create(Volume.builder("work").build())
        yield* vol.fs().write("f.txt", "before")
        yield* Volume.snapshot("work", { name: "s" })
        const sandbox = yield* Sandbox.builder("writer").image("host").volume("/work", (m) => m.named("work")).create()
        const refused = yield* expectFailure("VolumeInUse")(Volume.snapshot("work", { name: "while-running" }))
        assert.deepStrictEqual(refused.holders, ["sandbox writer"])
        yield* expectFailure("VolumeInUse")(Volume.fork("work", "copy"))
        yield* expectFailure("VolumeInUse")(Volume.restore("work", "s"))
        // A fork of an existing snapshot does not read the volume.
        yield* Volume.fork("work", "from-snapshot", { snapshot: "s" })
        yield* sh(sandbox, "echo live > /work/live.txt")
        const live = yield* Volume.snapshot("work", { name: "live", live: true })
        assert.strictEqual(yield* live.fs().readToString("live.txt"), "live\n")
        yield* sandbox.stop()
        yield* Volume.restore("work", "s")
        assert.isFalse(yield* vol.fs().exists("live.txt"))
        // A read-only holder blocks restore too (it reads the tree restore replaces).
        const reader = yield* Sandbox.builder("reader").image("host").volume("/work", (m) => m.named("work").readonly())
          .create()
        yield* Volume.snapshot("work", { name: "with-reader" })
        const error = yield* expectFailure("VolumeInUse")(Volume.restore("work", "s"))
        assert.deepStrictEqual(error.holders, ["sandbox reader"])
        yield* reader.stop()
      })
    ))

  it.scopedLive("an in-place append in one fork changes nothing in another fork, the snapshot or the source", () =>
    withHome(() =>
      Effect.gen(function*() {
        const base = yield* Volume.create(Volume.builder("workspace").build())
        yield* base.fs().write("f", "v1\n")
        yield* Volume.snapshot("workspace", { name: "known-good" })
        const runs = yield* Effect.forEach(
          [1, 2],
          (i) => Volume.fork("workspace", `run-${i}`, { snapshot: "known-good" }),
          { concurrency: 2 }
        )
        const sandbox = yield* Sandbox.builder("run-1").image("host").volume("/w", (m) => m.named("run-1")).create()
        const out = yield* sh(sandbox, "echo x >> /w/f && cat /w/f")
        assert.strictEqual(out.stdout, "v1\nx\n")
        yield* sandbox.stop()
        assert.strictEqual(yield* runs[0]!.fs().readToString("f"), "v1\nx\n")
        assert.strictEqual(yield* runs[1]!.fs().readToString("f"), "v1\n")
        assert.strictEqual(yield* (yield* Volume.getSnapshot("workspace", "known-good")).fs().readToString("f"), "v1\n")
        assert.strictEqual(yield* base.fs().readToString("f"), "v1\n")
      })
    ))

  it.scopedLive("m.snapshot mounts a snapshot read-only; it cannot be removed while mounted", () =>
    withHome(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.create(Volume.builder("workspace").build())
        yield* vol.fs().write("repo/README.md", "v1")
        yield* Volume.snapshot("workspace", { name: "known-good" })
        yield* vol.fs().write("repo/README.md", "v2")
        const sandbox = yield* Sandbox.builder("ref").image("host")
          .volume("/ref", (m) => m.snapshot("workspace", "known-good"))
          .volume("/work", (m) => m.named("workspace"))
          .create()
        assert.strictEqual((yield* sh(sandbox, "cat /ref/repo/README.md")).stdout, "v1")
        assert.strictEqual((yield* sh(sandbox, "cat /work/repo/README.md")).stdout, "v2")
        const write = yield* sh(sandbox, "echo x >> /ref/repo/README.md")
        assert.notStrictEqual(write.exitCode, 0, "the snapshot mount is read-only")
        yield* expectFailure("VolumeInUse")(Volume.removeSnapshot("workspace", "known-good"))
        yield* sandbox.stop()
        assert.strictEqual(yield* (yield* Volume.getSnapshot("workspace", "known-good")).fs().readToString("repo/README.md"), "v1")
        yield* Volume.removeSnapshot("workspace", "known-good")
        yield* expectFailure("SnapshotNotFound")(
          Sandbox.builder("late").image("host").volume("/ref", (m) => m.snapshot("workspace", "known-good")).create()
        )
      })
    ))

  it.scopedLive("a disk volume: snapshot refused while a sandbox writes it; its snapshot mounts read-only", () =>
    withHome(() =>
      Effect.gen(function*() {
        const disk = yield* Volume.create(Volume.builder("disk").disk().size(64).build())
        yield* disk.fs().write("data.txt", "disk v1")
        yield* Volume.snapshot("disk", { name: "s" })
        const writer = yield* Sandbox.builder("disk-writer").image("host").volume("/d", (m) => m.named("disk")).create()
        yield* sh(writer, "echo v2 > /d/data.txt")
        yield* expectFailure("VolumeInUse")(Volume.snapshot("disk", { name: "busy" }))
        const reader = yield* Sandbox.builder("disk-reader").image("host")
          .volume("/snap", (m) => m.snapshot("disk", "s")).create()
        assert.strictEqual((yield* sh(reader, "cat /snap/data.txt")).stdout, "disk v1")
        assert.notStrictEqual((yield* sh(reader, "touch /snap/new")).exitCode, 0)
        yield* reader.stop()
        yield* writer.stop()
        assert.strictEqual(yield* disk.fs().readToString("data.txt"), "v2\n")
      })
    ))

  it.scopedLive("on the memory backend a snapshot mount is a read-only materialised copy", () =>
    Effect.gen(function*() {
      const vol = yield* Volume.create(Volume.builder("workspace").build())
      yield* vol.fs().write("repo/README.md", "v1")
      yield* Volume.snapshot("workspace", { name: "known-good" })
      yield* vol.fs().write("repo/README.md", "v2")
      const sandbox = yield* Sandbox.builder("memory-ref").image("host")
        .volume("/ref", (m) => m.snapshot("workspace", "known-good")).create()
      assert.strictEqual((yield* sh(sandbox, "cat /ref/repo/README.md")).stdout, "v1")
      assert.notStrictEqual((yield* sh(sandbox, "echo x > /ref/new")).exitCode, 0)
      yield* sandbox.stop()
      assert.deepStrictEqual((yield* (yield* Volume.getSnapshot("workspace", "known-good")).fs().list("/")).length, 1)
    }).pipe(Effect.provide(Layer.mergeAll(MemoryBackend.layer, NamespaceRuntime.layer))))
})
