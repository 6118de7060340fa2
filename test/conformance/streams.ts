/**
 * SPEC §3: streaming reads (bounded chunks), atomic streaming writes and sinks.
 */
import { assert, describe } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import { MAX_CHUNK_BYTES } from "../../src/VolumeFs.js"
import type { VolumeFs } from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { assertSameBytes, bytes, concat, createVolume, expectFailure, expectFsError, MiB, names, utf8 } from "./support.js"

export const streamsTests = ({ options, test }: Context) => {
  /** A fresh volume and, where the backend has one, its host directory. */
  const freshVolume = Effect.gen(function*() {
    const vol = yield* createVolume("streams")
    const hostDir = options.supportsPath ? Option.some(yield* vol.path()) : Option.none<string>()
    return { fs: vol.fs(), hostDir } as const
  })

  /** Nothing but `expected` in the volume root, as listed and (where visible) on the host. */
  const assertOnly = (fs: VolumeFs, hostDir: Option.Option<string>, expected: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      assert.deepStrictEqual(names(yield* fs.list("/")), expected, "listed")
      if (Option.isSome(hostDir)) {
        assert.deepStrictEqual(NodeFs.readdirSync(hostDir.value).sort(), [...expected].sort(), "no temporary file on the host")
      }
    })

  const collect = (stream: Stream.Stream<Uint8Array, unknown>) => Effect.map(Stream.runCollect(stream), Chunk.toArray)

  describe("readStream", () => {
    test("a 1 MiB + 3 byte file comes back byte-identical in chunks of at most 64 KiB", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        const data = bytes(MiB + 3, 11)
        yield* fs.write("big.bin", data)
        const chunks = yield* collect(fs.readStream("big.bin"))
        assert.isAtLeast(chunks.length, Math.ceil(data.byteLength / MAX_CHUNK_BYTES))
        for (const chunk of chunks) {
          assert.isAtMost(chunk.byteLength, MAX_CHUNK_BYTES)
          assert.isAbove(chunk.byteLength, 0)
        }
        assertSameBytes(concat(chunks), data)
      }))

    test("chunkSize bounds the chunks and is capped at 64 KiB", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        const data = bytes(200_000, 5)
        yield* fs.write("f.bin", data)
        const small = yield* collect(fs.readStream("f.bin", { chunkSize: 1000 }))
        assert.isAtLeast(small.length, 200)
        for (const chunk of small) assert.isAtMost(chunk.byteLength, 1000)
        assertSameBytes(concat(small), data)
        const large = yield* collect(fs.readStream("f.bin", { chunkSize: 4 * MiB }))
        for (const chunk of large) assert.isAtMost(chunk.byteLength, MAX_CHUNK_BYTES)
        assertSameBytes(concat(large), data)
      }))

    test("an empty file streams no bytes", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        yield* fs.write("empty", "")
        assert.strictEqual(concat(yield* collect(fs.readStream("empty"))).byteLength, 0)
      }))

    test("a missing file fails with PathNotFound, a directory with IsADirectory", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        yield* fs.mkdir("dir")
        const error = yield* Stream.runDrain(fs.readStream("/dir/../missing.bin")).pipe(expectFailure("PathNotFound"))
        assert.strictEqual(error.path, "/missing.bin")
        yield* Stream.runDrain(fs.readStream("dir")).pipe(expectFsError("IsADirectory"))
      }))
  })

  describe("writeStream", () => {
    test("content appears only when close() succeeds", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        yield* fs.write("f.txt", "old")
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("f.txt")
          yield* sink.write("new ")
          yield* sink.write(utf8("content"))
          assert.strictEqual(yield* fs.readToString("f.txt"), "old", "not visible before close")
          assert.deepStrictEqual(names(yield* fs.list("/")), ["f.txt"], "no temporary name is listed")
          yield* sink.close()
          assert.strictEqual(yield* fs.readToString("f.txt"), "new content")
        }))
        assert.strictEqual(yield* fs.readToString("f.txt"), "new content")
        yield* assertOnly(fs, hostDir, ["f.txt"])
      }))

    test("a new file streamed in chunks, with parents created, reads back identically", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        const data = bytes(MiB + 3, 2)
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("deep/dir/big.bin")
          assert.isFalse(yield* fs.exists("deep/dir/big.bin"))
          for (let offset = 0; offset < data.byteLength; offset += 100_000) {
            yield* sink.write(data.subarray(offset, offset + 100_000))
          }
          yield* sink.close()
        }))
        assertSameBytes(yield* fs.read("deep/dir/big.bin"), data)
      }))

    test("a scope that fails before close() leaves the old content and no temporary file", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        yield* fs.write("f.txt", "old")
        const error = yield* Effect.flip(Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("f.txt")
          yield* sink.write("half-written new content")
          return yield* Effect.fail("boom" as const)
        })))
        assert.strictEqual(error, "boom")
        assert.strictEqual(yield* fs.readToString("f.txt"), "old")
        yield* assertOnly(fs, hostDir, ["f.txt"])
      }))

    test("an interrupted writer leaves the old content and no temporary file", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        yield* fs.write("dir/f.txt", "old")
        const written = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("dir/f.txt")
          yield* sink.write(bytes(100_000))
          yield* Deferred.succeed(written, undefined)
          return yield* Effect.never
        })))
        yield* Deferred.await(written)
        const exit = yield* Fiber.interrupt(fiber)
        assert.isTrue(Exit.isInterrupted(exit))
        assert.strictEqual(yield* fs.readToString("dir/f.txt"), "old")
        assert.deepStrictEqual(names(yield* fs.list("dir")), ["f.txt"])
        if (Option.isSome(hostDir)) {
          assert.deepStrictEqual(NodeFs.readdirSync(`${hostDir.value}/dir`), ["f.txt"], "no temporary file on the host")
        }
      }))

    test("an abandoned write of a new file leaves nothing at the path", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("new.txt")
          yield* sink.write("never published")
          return yield* Effect.fail("boom")
        })))
        assert.isFalse(yield* fs.exists("new.txt"))
        yield* assertOnly(fs, hostDir, [])
      }))
  })

  describe("sink", () => {
    test("Stream.run(fs.sink(path)) writes the stream", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        const data = bytes(300_000, 9)
        const pieces = Array.from({ length: 30 }, (_, i) => data.subarray(i * 10_000, (i + 1) * 10_000))
        yield* Stream.fromIterable(pieces).pipe(Stream.run(fs.sink("out/sunk.bin")))
        assertSameBytes(yield* fs.read("out/sunk.bin"), data)
        yield* Stream.make(utf8("ab"), utf8("cd")).pipe(Stream.run(fs.sink("out/sunk.bin")))
        assert.strictEqual(yield* fs.readToString("out/sunk.bin"), "abcd")
        yield* assertOnly(fs, hostDir, ["out"])
      }))

    test("a stream that fails leaves the old content", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* freshVolume
        yield* fs.write("f.txt", "old")
        const failing = Stream.concat(Stream.make(utf8("partial")), Stream.fail("boom" as const))
        const error = yield* Effect.flip(Stream.run(failing, fs.sink("f.txt")))
        assert.strictEqual(error, "boom")
        assert.strictEqual(yield* fs.readToString("f.txt"), "old")
        yield* assertOnly(fs, hostDir, ["f.txt"])
      }))

    test("fs.readStream piped into fs.sink copies a file byte for byte", () =>
      Effect.gen(function*() {
        const { fs } = yield* freshVolume
        const data = bytes(MiB + 3, 4)
        yield* fs.write("a.bin", data)
        yield* Stream.run(fs.readStream("a.bin"), fs.sink("b.bin"))
        assertSameBytes(yield* fs.read("b.bin"), data)
      }))
  })
}
