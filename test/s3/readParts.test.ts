/**
 * Part sizes of cloud reads and the waves of `list`: a whole-file `read` fetches ranges of
 * `readWholePartBytes` (fewer requests; it holds the whole file anyway) while `readStream`
 * keeps `readPartBytes` (bounded memory); `Waves.forEach` starts a wave only when the whole
 * previous one has answered, never more than its width at once, results in order.
 */
import { assert, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Layer, Stream } from "effect"
import { makeService } from "../../src/internal/s3/backend.js"
import * as Client from "../../src/internal/s3/client.js"
import * as Layout from "../../src/internal/s3/layout.js"
import * as Waves from "../../src/internal/s3/waves.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { assertSameBytes, bytes, concat, KiB } from "../conformance/support.js"
import { bucketFor, describeS3, settings, uniquePrefix } from "./support.js"

const bucket = bucketFor("read-parts")

describeS3("S3Backend read part sizes", () => {
  it.scopedLive("read fetches readWholePartBytes ranges, readStream readPartBytes ranges", () =>
    Effect.gen(function*() {
      const s3 = yield* Client.make({ ...settings(bucket), readPartBytes: 64 * KiB, readWholePartBytes: 256 * KiB })
      yield* s3.ensureBucket
      const gets: Array<string> = []
      s3.sdk.middlewareStack.add(
        (next, context) => async (args) => {
          // Ranged GETs only: a read also GETs the volume's record (its generation), unranged.
          const range = (args.input as { Range?: string }).Range
          if (context.commandName === "GetObjectCommand" && range !== undefined) gets.push(range)
          return next(args)
        },
        { step: "initialize" }
      )
      const layer = Layer.succeed(VolumeBackend, makeService(s3, Layout.make(uniquePrefix())))
      const fs = (yield* Volume.builder("parts").create().pipe(Effect.provide(layer))).fs()
      const data = bytes(600 * KiB, 5)
      yield* fs.write("f.bin", data)

      gets.length = 0
      assertSameBytes(yield* fs.read("f.bin"), data, "read")
      assert.deepStrictEqual(gets, ["bytes=0-262143", "bytes=262144-524287", "bytes=524288-614399"], "read: 256 KiB ranges")

      gets.length = 0
      assertSameBytes(concat(Chunk.toArray(yield* Stream.runCollect(fs.readStream("f.bin")))), data, "readStream")
      assert.strictEqual(gets.length, Math.ceil(600 / 64), "readStream: 64 KiB ranges")
    }), { timeout: 60_000 })

  it.scopedLive("without readWholePartBytes, an explicit readPartBytes sets the part size of read too", () =>
    Effect.gen(function*() {
      const s3 = yield* Client.make({ ...settings(bucket), readPartBytes: 64 * KiB })
      assert.strictEqual(s3.readWholePartBytes, 64 * KiB)
      const defaults = yield* Client.make(settings(bucket))
      assert.strictEqual(defaults.readWholePartBytes, Client.DEFAULT_READ_WHOLE_PART_BYTES)
      assert.strictEqual(defaults.readPartBytes, Client.DEFAULT_READ_PART_BYTES)
    }))
})

it.effect("Waves.forEach: a wave starts only after the previous one answered, at most `width` at once, in order", () =>
  Effect.gen(function*() {
    let inFlight = 0
    let most = 0
    const started: Array<number> = []
    const done = new Set<number>()
    const gate = yield* Deferred.make<void>()
    const out = yield* Waves.forEach(
      Array.from({ length: 70 }, (_, i) => i),
      (i) =>
        Effect.gen(function*() {
          // Everything of the previous wave has answered before anything of this one starts.
          const wave = Math.floor(i / 32)
          for (let j = 0; j < wave * 32; j++) assert.isTrue(done.has(j), `item ${j} before item ${i}`)
          started.push(i)
          inFlight++
          most = Math.max(most, inFlight)
          // The first item of each wave waits until its whole wave has started.
          if (i % 32 === 0 && i + 31 < 70) yield* Deferred.await(gate)
          if (started.filter((s) => Math.floor(s / 32) === wave).length === Math.min(32, 70 - wave * 32)) {
            yield* Deferred.succeed(gate, undefined)
          }
          yield* Effect.yieldNow()
          inFlight--
          done.add(i)
          return i * 2
        }),
      32
    )
    assert.deepStrictEqual(out, Array.from({ length: 70 }, (_, i) => i * 2))
    assert.strictEqual(most, 32)
  }))
