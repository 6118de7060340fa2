/**
 * Reads of a cloud file as parallel ranged GETs (`src/internal/s3/objectRead.ts`): exact bytes
 * at every size around a part boundary, chunks of at most 64 KiB, no HEAD, at most a window of
 * parts requested ahead of the consumer, and a file replaced or removed between the first
 * part and a later one fails the read instead of mixing versions.
 */
import { assert, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Option, Stream } from "effect"
import { makeService } from "../../src/internal/s3/backend.js"
import * as Client from "../../src/internal/s3/client.js"
import * as Layout from "../../src/internal/s3/layout.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeHandle } from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { MAX_CHUNK_BYTES } from "../../src/VolumeFs.js"
import { assertSameBytes, bytes, concat, KiB } from "../conformance/support.js"
import { machine, objectPath } from "./machines.js"
import * as Proxy from "./proxy.js"
import { bucketFor, describeS3, settings, uniquePrefix } from "./support.js"

const bucket = bucketFor("reads")

/** Small parts so a few hundred KiB span many of them. */
const PART = 64 * KiB
const WINDOW = 2

/** A reader through a fault proxy with small parts, beside a direct machine on the same prefix. */
const setup = Effect.gen(function*() {
  const prefix = uniquePrefix()
  const direct = yield* machine(bucket, prefix)
  const proxy = yield* Proxy.make(direct.s3.endpoint)
  const s3 = yield* Client.make({
    ...settings(bucket, { endpoint: proxy.endpoint }),
    readPartBytes: PART,
    readWindow: WINDOW
  })
  const reader = Layer.succeed(VolumeBackend, makeService(s3, Layout.make(prefix)))
  const vol = yield* Volume.builder("reads").create().pipe(Effect.provide(direct.layer))
  const viaProxy = yield* Volume.get("reads").pipe(Effect.provide(reader))
  return { proxy, writer: vol.fs(), reader: viaProxy.fs(), key: (path: string) => keyOf(vol, path) } as const
})

const keyOf = (vol: VolumeHandle, path: string) => Option.getOrThrow(vol.info.cloud).prefix + path

describeS3("S3Backend reads (parallel ranged GETs)", () => {
  it.scopedLive("read and readStream return the exact bytes around part boundaries, one GET per part, no HEAD", () =>
    Effect.gen(function*() {
      const { proxy, writer, reader, key } = yield* setup
      for (const size of [0, 1, PART - 1, PART, PART + 1, 5 * PART + 3]) {
        const data = bytes(size, size + 1)
        yield* writer.write(`f${size}.bin`, data)
        const seen = proxy.log.length
        assertSameBytes(yield* reader.read(`f${size}.bin`), data, `read of ${size} bytes`)
        const requests = proxy.log.slice(seen).filter((line) => line.includes(key(`f${size}.bin`)))
        assert.deepStrictEqual(
          requests.map((line) => line.split(" ")[0]),
          Array(Math.max(1, Math.ceil(size / PART))).fill("GET"),
          `requests of a ${size}-byte read`
        )
        const chunks = Chunk.toArray(yield* Stream.runCollect(reader.readStream(`f${size}.bin`)))
        for (const chunk of chunks) assert.isAtMost(chunk.byteLength, MAX_CHUNK_BYTES)
        assertSameBytes(concat(chunks), data, `readStream of ${size} bytes`)
        const small = Chunk.toArray(yield* Stream.runCollect(reader.readStream(`f${size}.bin`, { chunkSize: 1000 })))
        for (const chunk of small) assert.isAtMost(chunk.byteLength, 1000)
        assertSameBytes(concat(small), data, `readStream of ${size} bytes in 1,000-byte chunks`)
      }
    }), { timeout: 60_000 })

  it.scopedLive("a stalled consumer holds at most a window of parts: later ranges are not requested", () =>
    Effect.gen(function*() {
      const { proxy, writer, reader, key } = yield* setup
      const parts = 32
      const data = bytes(parts * PART, 7)
      yield* writer.write("big.bin", data)
      const seen = proxy.log.length
      const gets = () => proxy.log.slice(seen).filter((line) => line.includes(key("big.bin"))).length
      const rest = yield* Effect.scoped(Effect.gen(function*() {
        const pull = yield* Stream.toPull(reader.readStream("big.bin"))
        const first = yield* pull
        // Whatever the timing, the reader may not run further ahead than its window.
        yield* Effect.sleep("300 millis")
        assert.isAtLeast(gets(), 1)
        assert.isAtMost(gets(), WINDOW + 2, "ranges requested while the consumer waits")
        const chunks = [...first]
        for (;;) {
          const next = yield* Effect.option(pull)
          if (Option.isNone(next)) break
          chunks.push(...next.value)
        }
        return chunks
      }))
      assertSameBytes(concat(rest), data)
      assert.strictEqual(gets(), parts, "one GET per part in all")
    }), { timeout: 60_000 })

  it.scopedLive("a file replaced between its first and a later part fails read and readStream ('replaced')", () =>
    Effect.gen(function*() {
      const { proxy, writer, reader, key } = yield* setup
      const size = 6 * PART
      for (const how of ["read", "readStream"] as const) {
        yield* writer.write("f.bin", bytes(size, 1))
        // The first GET passes; every later one waits until the file was replaced.
        const first = proxy.rule({ method: "GET", path: objectPath(key("f.bin")), action: { _tag: "delay", millis: 0 }, times: 1 })
        const later = proxy.rule({ method: "GET", path: objectPath(key("f.bin")), action: { _tag: "hold" } })
        const reading = yield* Effect.fork(Effect.flip(
          how === "read" ? reader.read("f.bin") : Stream.runDrain(reader.readStream("f.bin"))
        ))
        yield* later.held
        yield* writer.write("f.bin", bytes(size, 2))
        yield* later.release
        const error = yield* Fiber.join(reading)
        assert.strictEqual(error._tag, "VolumeFsError", `${how}: ${String(error)}`)
        assert.include(error.message, "replaced", how)
        yield* first.remove
        yield* later.remove
      }
    }), { timeout: 60_000 })

  it.scopedLive("a file removed between its first and a later part fails the read ('removed')", () =>
    Effect.gen(function*() {
      const { proxy, writer, reader, key } = yield* setup
      yield* writer.write("f.bin", bytes(4 * PART, 1))
      proxy.rule({ method: "GET", path: objectPath(key("f.bin")), action: { _tag: "delay", millis: 0 }, times: 1 })
      const later = proxy.rule({ method: "GET", path: objectPath(key("f.bin")), action: { _tag: "hold" } })
      const reading = yield* Effect.fork(Effect.flip(reader.read("f.bin")))
      yield* later.held
      yield* writer.remove("f.bin")
      yield* later.release
      const error = yield* Fiber.join(reading)
      assert.strictEqual(error._tag, "VolumeFsError", String(error))
      assert.include(error.message, "removed")
    }), { timeout: 60_000 })
})
