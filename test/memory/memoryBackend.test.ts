/**
 * What is specific to the in-memory backend: unsupported operations, a fresh store per
 * layer build, private copies of buffers, the disk-volume capacity cap, and a smoke test
 * of the whole `Volume` API on it. The shared behaviour is the conformance suite's job.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, DateTime, Effect, Either, Exit, Option, Scope, Stream, TestClock } from "effect"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeFs } from "../../src/VolumeFs.js"

const MiB = 1024 * 1024

/** Runs `program` on a backend built for it alone. */
const withMemory = <A, E, R>(program: Effect.Effect<A, E, R>) => Effect.provide(program, MemoryBackend.layer)

/** The error of a failed effect, or a test failure if it succeeded. */
const failureOf = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.either(self), (result) =>
    Either.isLeft(result)
      ? Effect.succeed(result.left)
      : Effect.sync(() => assert.fail(`expected a failure, got ${String(result.right)}`)))

const assertFsError = (error: unknown, reason: string) => {
  assert.strictEqual((error as { _tag?: unknown })._tag, "VolumeFsError", String(error))
  assert.strictEqual((error as { reason?: unknown }).reason, reason, String(error))
}

/** Sum of file sizes found by walking the tree through `list`. */
const walkBytes = (fs: VolumeFs, path: string): Effect.Effect<number, unknown> =>
  Effect.gen(function*() {
    let total = 0
    for (const entry of yield* fs.list(path)) {
      total += entry.kind === "directory" ? yield* walkBytes(fs, entry.path) : entry.size
    }
    return total
  })

describe("MemoryBackend", () => {
  it.effect("path() and getDefault() are Unsupported by the memory backend", () =>
    withMemory(Effect.gen(function*() {
      const vol = yield* Volume.builder("v").create()
      assert.strictEqual(vol.backendKind, "memory")
      const pathError = yield* failureOf(vol.path())
      assert.deepStrictEqual(
        { tag: pathError._tag, operation: (pathError as { operation?: string }).operation, backend: (pathError as { backend?: string }).backend },
        { tag: "Unsupported", operation: "path", backend: "memory" }
      )
      const defaultError = yield* failureOf(Volume.getDefault())
      assert.strictEqual(defaultError._tag, "Unsupported")
      assert.strictEqual((defaultError as { operation?: string }).operation, "getDefault")
    })))

  it.effect("each build of the layer starts with an empty store", () =>
    Effect.gen(function*() {
      yield* withMemory(Effect.gen(function*() {
        const vol = yield* Volume.builder("shared-name").create()
        yield* vol.fs().write("a.txt", "first")
      }))
      yield* withMemory(Effect.gen(function*() {
        assert.deepStrictEqual(yield* Volume.list(), [])
        assert.strictEqual((yield* failureOf(Volume.get("shared-name")))._tag, "VolumeNotFound")
        const vol = yield* Volume.builder("shared-name").create()
        assert.isFalse(yield* vol.fs().exists("a.txt"))
      }))
    }))

  it.effect("stores copies: mutating written or read buffers never changes a file", () =>
    withMemory(Effect.gen(function*() {
      const fs = (yield* Volume.builder("v").create()).fs()
      const written = new Uint8Array([1, 2, 3])
      yield* fs.write("f", written)
      written[0] = 99
      assert.deepStrictEqual(Array.from(yield* fs.read("f")), [1, 2, 3])

      const read = yield* fs.read("f")
      read[1] = 99
      assert.deepStrictEqual(Array.from(yield* fs.read("f")), [1, 2, 3])

      // A Buffer's slice() shares memory; the backend must copy anyway.
      const buffer = Buffer.from([4, 5, 6])
      yield* fs.write("b", buffer)
      buffer[0] = 99
      assert.deepStrictEqual(Array.from(yield* fs.read("b")), [4, 5, 6])

      // Copies of a file are independent of later writes to the original.
      yield* fs.copy("f", "g")
      yield* fs.write("f", new Uint8Array([7]))
      assert.deepStrictEqual(Array.from(yield* fs.read("g")), [1, 2, 3])

      // Chunks given to a stream writer are copied before the writer returns.
      yield* Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("s")
        const chunk = new Uint8Array([8, 9])
        yield* sink.write(chunk)
        chunk[0] = 99
        yield* sink.close()
      }))
      assert.deepStrictEqual(Array.from(yield* fs.read("s")), [8, 9])

      // Chunks of a read stream are the caller's to change.
      const chunks = yield* Stream.runCollect(fs.readStream("f", { chunkSize: 1 }))
      Chunk.forEach(chunks, (c) => c.fill(99))
      assert.deepStrictEqual(Array.from(yield* fs.read("f")), [7])
    })))

  it.effect("readStream yields chunks of at most chunkSize that add up to the file", () =>
    withMemory(Effect.gen(function*() {
      const fs = (yield* Volume.builder("v").create()).fs()
      const data = Uint8Array.from({ length: 1000 }, (_, i) => i % 251)
      yield* fs.write("f", data)
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(fs.readStream("f", { chunkSize: 300 })))
      assert.deepStrictEqual(chunks.map((c) => c.byteLength), [300, 300, 300, 100])
      assert.deepStrictEqual(Buffer.concat(chunks), Buffer.from(data))
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(fs.readStream("f"))).length, 1)
    })))

  it.effect("a disk volume is hard-capped by its size: NoSpace and nothing changes", () =>
    withMemory(Effect.gen(function*() {
      const vol = yield* Volume.builder("disk").disk().size(64).create()
      assert.strictEqual(vol.kind, "disk")
      assert.deepStrictEqual(vol.capacityBytes, Option.some(64 * MiB))
      const fs = vol.fs()
      yield* fs.write("a", new Uint8Array(40 * MiB))

      // A second file that does not fit: refused, no parent directory created.
      assertFsError(yield* failureOf(fs.write("dir/b", new Uint8Array(25 * MiB))), "NoSpace")
      assert.isFalse(yield* fs.exists("dir"))
      // Overwriting charges only the growth, and the whole capacity is usable.
      yield* fs.write("a", new Uint8Array(64 * MiB - 10))
      yield* fs.write("c", new Uint8Array(10))
      assertFsError(yield* failureOf(fs.write("d", new Uint8Array(1))), "NoSpace")
      // Copies and streams are capped too and leave the old content.
      assertFsError(yield* failureOf(fs.copy("c", "e")), "NoSpace")
      assert.isFalse(yield* fs.exists("e"))
      const streamed = yield* failureOf(Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("c")
        yield* sink.write(new Uint8Array(10))
        yield* sink.write(new Uint8Array(1))
        yield* sink.close()
      })))
      assertFsError(streamed, "NoSpace")
      assert.strictEqual((yield* fs.read("c")).byteLength, 10)
      // Freeing space makes room again.
      yield* fs.remove("c")
      yield* fs.write("d", new Uint8Array(10))
      assert.strictEqual((yield* Volume.get("disk")).usedBytes, 64 * MiB)
    })))

  it.effect("a stream writer publishes only on close; an abandoned one leaves the old file", () =>
    withMemory(Effect.gen(function*() {
      const fs = (yield* Volume.builder("v").create()).fs()
      yield* fs.write("f", "old")
      const scope = yield* Scope.make()
      const sink = yield* Scope.extend(fs.writeStream("f"), scope)
      yield* sink.write("new content")
      assert.strictEqual(yield* fs.readToString("f"), "old")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* fs.readToString("f"), "old")
      assert.deepStrictEqual((yield* fs.list("/")).map((e) => e.path), ["/f"])
    })))

  it.effect("smoke test of the Volume API", () =>
    withMemory(Effect.gen(function*() {
      const before = yield* DateTime.now
      const first = yield* Volume.builder("Cache").quota(1).label("team", "a").create()
      assert.strictEqual(first.name, "Cache")
      assert.strictEqual(first.kind, "directory")
      assert.deepStrictEqual(first.quotaMib, Option.some(1))
      assert.deepStrictEqual(first.labels, [["team", "a"]])
      assert.isTrue(Option.isNone(first.diskPath) && Option.isNone(first.local) && Option.isNone(first.cloud))
      assert.isTrue(DateTime.toEpochMillis(first.createdAt) >= DateTime.toEpochMillis(before))

      // Names are case-insensitive and keep their display case.
      assert.strictEqual((yield* failureOf(Volume.builder("cache").create()))._tag, "VolumeAlreadyExists")
      assert.strictEqual((yield* Volume.get("CACHE")).name, "Cache")

      // Exactly one of many concurrent creators wins.
      const racers = yield* Effect.all(
        Array.from({ length: 8 }, () => Effect.either(Volume.builder("raced").create())),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(racers.filter(Either.isRight).length, 1)

      // Newest first, even when created within one millisecond; label filters apply.
      yield* Volume.builder("b").label("team", "b").create()
      yield* Volume.builder("c").label("team", "a").create()
      assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["c", "b", "raced", "Cache"])
      assert.deepStrictEqual((yield* Volume.list({ labels: { team: "a" } })).map((v) => v.name), ["c", "Cache"])

      // Files, with usage measured by get.
      const fs = first.fs()
      yield* fs.write("/docs/readme.txt", "hello")
      yield* fs.mkdir("/empty/nested")
      yield* fs.copy("/docs", "/backup/docs")
      yield* fs.rename("/backup/docs/readme.txt", "/backup/docs/README")
      yield* Stream.run(Stream.make(new TextEncoder().encode("streamed")), fs.sink("/s.txt"))
      assert.deepStrictEqual((yield* fs.list("/")).map((e) => [e.path, e.kind]), [
        ["/backup", "directory"],
        ["/docs", "directory"],
        ["/empty", "directory"],
        ["/s.txt", "file"]
      ])
      const meta = yield* fs.stat("/docs/readme.txt")
      assert.deepStrictEqual(
        [meta.kind, meta.size, meta.mode, meta.uid, meta.readonly],
        ["file", 5, 0o644, process.getuid?.() ?? 0, false]
      )
      assert.strictEqual((yield* fs.stat("/empty")).mode, 0o755)
      assert.strictEqual(yield* fs.readToString("/backup/docs/README"), "hello")
      assert.strictEqual((yield* Volume.get("cache")).usedBytes, 5 + 5 + 8)
      yield* fs.remove("/s.txt")
      yield* fs.removeDir("/backup")
      assert.strictEqual((yield* Volume.get("cache")).usedBytes, yield* walkBytes(fs, "/"))
      assert.strictEqual((yield* Volume.get("cache")).usedBytes, 5)

      // Quota through VolumeFs.
      assert.strictEqual((yield* failureOf(fs.write("big", new Uint8Array(MiB))))._tag, "QuotaExceeded")
      assert.isFalse(yield* fs.exists("big"))

      // After remove, the old handle's fs fails and never re-creates anything, even once
      // a new volume of the same name exists.
      const untouched = yield* Volume.get("cache")
      yield* first.remove()
      assert.strictEqual((yield* failureOf(Volume.remove("cache")))._tag, "VolumeNotFound")
      assert.strictEqual((yield* failureOf(fs.read("/docs/readme.txt")))._tag, "VolumeNotFound")
      const again = yield* Volume.builder("cache").create()
      assert.strictEqual((yield* failureOf(fs.write("/x", "stale")))._tag, "VolumeNotFound")
      assert.strictEqual((yield* failureOf(fs.mkdir("/d")))._tag, "VolumeNotFound")
      assert.strictEqual((yield* failureOf(fs.list("/")))._tag, "VolumeNotFound")
      assert.strictEqual((yield* failureOf(Stream.runDrain(fs.readStream("/docs/readme.txt"))))._tag, "VolumeNotFound")
      // A handle obtained before the removal whose fs() is first called now is stale too.
      assert.strictEqual((yield* failureOf(untouched.fs().stat("/")))._tag, "VolumeNotFound")
      assert.deepStrictEqual(yield* again.fs().list("/"), [])
      assert.strictEqual((yield* Volume.get("cache")).usedBytes, 0)
    })))
})

describe("MemoryBackend time", () => {
  // Issue 16 item 10: time comes from the Effect clock, so TestClock drives it.
  it.effect("createdAt and file times follow the Effect clock", () =>
    Effect.gen(function*() {
      const at = Date.UTC(2031, 0, 2, 3, 4, 5)
      yield* TestClock.setTime(at)
      const vol = yield* Volume.builder("clocked").create()
      assert.strictEqual(DateTime.toEpochMillis(vol.createdAt), at)
      yield* vol.fs().write("f.txt", "x")
      const meta = yield* vol.fs().stat("f.txt")
      assert.strictEqual(Option.map(meta.modified, DateTime.toEpochMillis).pipe(Option.getOrThrow), at)
    }).pipe(Effect.provide(MemoryBackend.layer)))
})
