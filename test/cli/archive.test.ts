import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Option, Stream } from "effect"
import { Archive, MemoryBackend, Volume } from "../../src/index.js"
import * as Tar from "../../src/internal/archive/tarEncode.js"
import { TEMP_PREFIX } from "../../src/internal/paths.js"

const text = new TextEncoder()

/** A tar with the given files, built with the same encoder export uses. */
const tarOf = (files: ReadonlyArray<readonly [string, string]>): Uint8Array => {
  const parts: Array<Uint8Array> = []
  for (const [name, content] of files) {
    const data = text.encode(content)
    parts.push(Tar.encodeHeader({ name, type: "file", size: data.length, mode: 0o644, uid: 0, gid: 0, mtime: 0 }))
    parts.push(data, Tar.padding(data.length))
  }
  parts.push(Tar.trailer())
  return Buffer.concat(parts)
}

const collect = (stream: Stream.Stream<Uint8Array, unknown, any>) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Buffer.concat(Chunk.toArray(chunks)))

/** Every file of a volume as path → content. */
const snapshot = (name: string) =>
  Effect.gen(function*() {
    const fs = (yield* Volume.get(name)).fs()
    const out: Record<string, string> = {}
    const walk = (dir: string): Effect.Effect<void, unknown> =>
      Effect.flatMap(fs.list(dir), (entries) =>
        Effect.forEach(entries, (entry) =>
          entry.kind === "directory"
            ? Effect.zipRight(Effect.sync(() => (out[entry.path + "/"] = "")), walk(entry.path))
            : Effect.map(fs.read(entry.path), (content) => {
              out[entry.path] = Buffer.from(content).toString("base64")
            }), { discard: true }))
    yield* walk("/")
    return out
  })

describe("Archive", () => {
  it.effect("export then import reproduces the tree byte for byte", () =>
    Effect.gen(function*() {
      const source = yield* Volume.builder("src").create()
      const fs = source.fs()
      yield* fs.write("a.txt", "alpha")
      yield* fs.write("dir/sub/b.bin", new Uint8Array(200_000).map((_, i) => i % 251))
      yield* fs.write(`dir/${"long-name-".repeat(20)}.txt`, "long")
      yield* fs.write("dir/ünïcode.txt", "utf8 name")
      yield* fs.mkdir("empty")
      yield* fs.write("dir/exact-blocks.bin", new Uint8Array(1024).fill(9))
      yield* fs.write("dir/empty.txt", "")
      const tar = yield* collect(Archive.exportTar("src"))
      assert.strictEqual(tar.length % 512, 0)
      // Sinks such as the platform's file sink refuse zero-length writes.
      const chunks = yield* Stream.runCollect(Archive.exportTar("src"))
      assert.isFalse(Chunk.some(chunks, (chunk) => chunk.length === 0))
      const summary = yield* Archive.importTar("copy", Stream.make(tar), { create: true })
      assert.strictEqual(summary.bytes, 5 + 200_000 + 4 + 9 + 1024)
      assert.deepStrictEqual(yield* snapshot("copy"), yield* snapshot("src"))
      const copied = yield* (yield* Volume.get("copy")).fs().read("dir/sub/b.bin")
      assert.deepStrictEqual(copied, yield* fs.read("dir/sub/b.bin"))
      assert.isFalse((yield* (yield* Volume.get("copy")).fs().list("/")).some((e) => e.path.includes(TEMP_PREFIX)))
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("an entry escaping the volume is refused and nothing changes", () =>
    Effect.gen(function*() {
      const target = yield* Volume.builder("target").create()
      yield* target.fs().write("keep.txt", "old")
      const before = yield* snapshot("target")
      const exit = yield* Effect.exit(
        Archive.importTar("target", Stream.make(tarOf([["ok.txt", "fine"], ["keep.txt", "new"], ["../evil", "x"]])))
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(Exit.isFailure(exit) && Option.getOrThrow(Exit.causeOption(exit)) !== undefined, true)
      const error = yield* Effect.flip(Archive.importTar("target", Stream.make(tarOf([["/../../etc/x", "x"]]))))
      assert.strictEqual(error._tag, "InvalidPath")
      assert.deepStrictEqual(yield* snapshot("target"), before)
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("a quota overflow fails the import and leaves the volume as it was", () =>
    Effect.gen(function*() {
      const target = yield* Volume.builder("small").quota(1).create()
      yield* target.fs().write("keep.txt", "old")
      const before = yield* snapshot("small")
      const big = "x".repeat(700_000)
      const error = yield* Effect.flip(Archive.importTar("small", Stream.make(tarOf([["a", big], ["b", big]]))))
      assert.strictEqual(error._tag, "QuotaExceeded")
      assert.deepStrictEqual(yield* snapshot("small"), before)
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("a file where the volume has a directory fails before anything moves", () =>
    Effect.gen(function*() {
      const target = yield* Volume.builder("conflict").create()
      yield* target.fs().write("d/inner.txt", "old")
      const before = yield* snapshot("conflict")
      const error = yield* Effect.flip(Archive.importTar("conflict", Stream.make(tarOf([["a.txt", "new"], ["d", "file"]]))))
      assert.strictEqual(error._tag, "ArchiveError")
      assert.deepStrictEqual(yield* snapshot("conflict"), before)
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("with create, a failed import removes the volume it created", () =>
    Effect.gen(function*() {
      const garbage = new Uint8Array(1024).fill(7)
      const error = yield* Effect.flip(Archive.importTar("fresh", Stream.make(garbage), { create: true }))
      assert.strictEqual(error._tag, "ArchiveError")
      assert.strictEqual((yield* Volume.list()).length, 0)
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("a failing input stream fails the import with its own error", () =>
    Effect.gen(function*() {
      yield* Volume.builder("v").create()
      const input = Stream.make(tarOf([["a", "x"]]).subarray(0, 512)).pipe(Stream.concat(Stream.fail("boom" as const)))
      const error = yield* Effect.flip(Archive.importTar("v", input))
      assert.strictEqual(error, "boom")
      assert.deepStrictEqual(yield* snapshot("v"), {})
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.effect("an input stream that dies ends the import with that defect (it never waits for more entries)", () =>
    Effect.gen(function*() {
      yield* Volume.builder("v").create()
      const input = Stream.make(tarOf([["a", "x"]]).subarray(0, 512)).pipe(Stream.concat(Stream.dieMessage("boom")))
      const exit = yield* Effect.exit(Archive.importTar("v", input))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), String(exit))
      assert.deepStrictEqual(yield* snapshot("v"), {})
    }).pipe(Effect.provide(MemoryBackend.layer)))
})
