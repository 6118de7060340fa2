/**
 * SPEC §3 quotas: every host-side write path of a directory volume with a quota refuses
 * to grow it past the quota, charges only growth, and changes nothing when it refuses.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Either, Fiber, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as Volume from "../../src/Volume.js"
import type { Context } from "./support.js"
import { assertSameBytes, bytes, createVolume, expectFailure, KiB, MiB, names } from "./support.js"

const QUOTA_MIB = 1

export const quotaTests = ({ options, test }: Context) => {
  /** A directory volume "q" with a 1 MiB quota. */
  const quotaVolume = Effect.gen(function*() {
    const vol = yield* createVolume("q", (b) => b.quota(QUOTA_MIB))
    const hostDir = options.supportsPath ? Option.some(yield* vol.path()) : Option.none<string>()
    return { fs: vol.fs(), hostDir } as const
  })

  const used = Effect.map(Volume.get("q"), (v) => v.usedBytes)

  describe("quota", () => {
    test("writes within the quota succeed", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("a.bin", new Uint8Array(512 * KiB))
        yield* fs.write("b.bin", new Uint8Array(256 * KiB))
        assert.strictEqual(yield* used, 768 * KiB)
      }))

    test("filling the quota exactly is allowed; one more byte is QuotaExceeded", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("full.bin", new Uint8Array(MiB))
        assert.strictEqual(yield* used, MiB)
        const error = yield* fs.write("one-more", "x").pipe(expectFailure("QuotaExceeded"))
        assert.strictEqual(error.volume, "q")
        assert.strictEqual(error.quotaBytes, MiB)
        assert.strictEqual(error.usedBytes, MiB)
        assert.strictEqual(error.requestedBytes, 1)
        assert.isFalse(yield* fs.exists("one-more"))
      }))

    test("a write exceeding the quota fails with QuotaExceeded and changes nothing", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* quotaVolume
        yield* fs.write("a.bin", new Uint8Array(600 * KiB))
        const error = yield* fs.write("new/dir/b.bin", new Uint8Array(600 * KiB)).pipe(expectFailure("QuotaExceeded"))
        assert.strictEqual(error.volume, "q")
        assert.strictEqual(error.quotaBytes, QUOTA_MIB * MiB)
        assert.strictEqual(error.usedBytes, 600 * KiB)
        assert.strictEqual(error.requestedBytes, 600 * KiB)
        assert.isFalse(yield* fs.exists("new"), "not even the parent directories are created")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["a.bin"])
        assert.strictEqual(yield* used, 600 * KiB)
        if (Option.isSome(hostDir)) assert.deepStrictEqual(NodeFs.readdirSync(hostDir.value), ["a.bin"])
      }))

    test("an overwrite that would exceed the quota keeps the old content", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        const old = bytes(300 * KiB, 1)
        yield* fs.write("a.bin", new Uint8Array(600 * KiB))
        yield* fs.write("b.bin", old)
        const error = yield* fs.write("b.bin", new Uint8Array(500 * KiB)).pipe(expectFailure("QuotaExceeded"))
        assert.strictEqual(error.usedBytes, 900 * KiB)
        assertSameBytes(yield* fs.read("b.bin"), old)
        assert.strictEqual(yield* used, 900 * KiB)
      }))

    test("overwriting charges only the growth", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("f.bin", new Uint8Array(900 * KiB))
        yield* fs.write("f.bin", new Uint8Array(1000 * KiB))
        assert.strictEqual(yield* used, 1000 * KiB)
        yield* fs.write("f.bin", new Uint8Array(10 * KiB))
        assert.strictEqual(yield* used, 10 * KiB)
      }))

    test("removing files frees quota again", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("dir/a.bin", new Uint8Array(800 * KiB))
        yield* fs.write("b.bin", new Uint8Array(800 * KiB)).pipe(expectFailure("QuotaExceeded"))
        yield* fs.removeDir("dir")
        yield* fs.write("b.bin", new Uint8Array(800 * KiB))
        assert.strictEqual(yield* used, 800 * KiB)
      }))

    test("rename does not charge the quota", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("a.bin", new Uint8Array(900 * KiB))
        yield* fs.rename("a.bin", "moved/a.bin")
        assert.strictEqual(yield* used, 900 * KiB)
      }))

    test("a writeStream exceeding the quota fails with QuotaExceeded and keeps the old content", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* quotaVolume
        const old = bytes(100 * KiB, 2)
        yield* fs.write("s.bin", old)
        const error = yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("s.bin")
          for (let i = 0; i < 8; i++) yield* sink.write(new Uint8Array(256 * KiB))
          yield* sink.close()
        })).pipe(expectFailure("QuotaExceeded"))
        assert.strictEqual(error.volume, "q")
        assert.strictEqual(error.quotaBytes, MiB)
        assertSameBytes(yield* fs.read("s.bin"), old)
        assert.deepStrictEqual(names(yield* fs.list("/")), ["s.bin"])
        assert.strictEqual(yield* used, 100 * KiB)
        if (Option.isSome(hostDir)) assert.deepStrictEqual(NodeFs.readdirSync(hostDir.value), ["s.bin"])
      }))

    test("after a writeStream is closed, other writes in the same scope proceed", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        const result = yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("s.bin")
          yield* sink.write(new Uint8Array(100 * KiB))
          yield* sink.close()
          yield* fs.write("after.bin", new Uint8Array(100 * KiB))
          return "done"
        })).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "write blocked after close()" }))
        assert.strictEqual(result, "done")
        assert.strictEqual(yield* used, 200 * KiB)
      }))

    test("a sink exceeding the quota fails with QuotaExceeded and writes nothing", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("old.bin", "old")
        const chunks = Array.from({ length: 12 }, () => new Uint8Array(128 * KiB))
        yield* Stream.run(Stream.fromIterable(chunks), fs.sink("big.bin")).pipe(expectFailure("QuotaExceeded"))
        yield* Stream.run(Stream.fromIterable(chunks), fs.sink("old.bin")).pipe(expectFailure("QuotaExceeded"))
        assert.isFalse(yield* fs.exists("big.bin"))
        assert.strictEqual(yield* fs.readToString("old.bin"), "old")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["old.bin"])
      }))

    test("a copy exceeding the quota fails with QuotaExceeded and creates nothing", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("a.bin", new Uint8Array(600 * KiB))
        const error = yield* fs.copy("a.bin", "copies/b.bin").pipe(expectFailure("QuotaExceeded"))
        assert.strictEqual(error.requestedBytes, 600 * KiB)
        assert.isFalse(yield* fs.exists("copies"))
        // 600 + 300 KiB used; a copy of the 300 KiB tree would need 1200 KiB.
        yield* fs.write("tree/one.bin", new Uint8Array(150 * KiB))
        yield* fs.write("tree/sub/two.bin", new Uint8Array(150 * KiB))
        yield* fs.copy("tree", "tree2").pipe(expectFailure("QuotaExceeded"))
        assert.isFalse(yield* fs.exists("tree2"))
        assert.strictEqual(yield* used, 900 * KiB)
      }))

    test("a copy within the quota succeeds", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* fs.write("tree/one.bin", new Uint8Array(100 * KiB))
        yield* fs.write("tree/sub/two.bin", new Uint8Array(100 * KiB))
        yield* fs.copy("tree", "tree2")
        assert.strictEqual(yield* used, 400 * KiB)
      }))

    test("concurrent writes cannot both squeeze under the quota", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        const results = yield* Effect.all(
          Array.from({ length: 4 }, (_, i) => Effect.either(fs.write(`w${i}.bin`, new Uint8Array(600 * KiB)))),
          { concurrency: "unbounded" }
        )
        assert.lengthOf(results.filter(Either.isRight), 1)
        for (const r of results.filter(Either.isLeft)) assert.strictEqual(r.left._tag, "QuotaExceeded")
        assert.strictEqual(yield* used, 600 * KiB)
      }))

    // Issue 16 item 2: an open write stream must not hold the volume's lock across user code.
    /** Fails (instead of hanging the suite) when `effect` deadlocks; not a timing assertion. */
    const noDeadlock = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.disconnect, Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => `deadlock: ${what}` }))

    test("two write streams open at once on a quota'd volume both commit", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* noDeadlock(
          "second stream",
          Effect.scoped(Effect.gen(function*() {
            const first = yield* fs.writeStream("one.bin")
            const second = yield* fs.writeStream("two.bin")
            yield* first.write(new Uint8Array(100 * KiB))
            yield* second.write(new Uint8Array(200 * KiB))
            yield* second.close()
            yield* first.close()
          }))
        )
        assert.deepStrictEqual(names(yield* fs.list("/")), ["one.bin", "two.bin"])
        assert.strictEqual(yield* used, 300 * KiB)
      }))

    test("fs.write while a write stream is open completes, and the stream's bytes count against the quota", () =>
      Effect.gen(function*() {
        const { fs } = yield* quotaVolume
        yield* noDeadlock(
          "write beside an open stream",
          Effect.scoped(Effect.gen(function*() {
            const stream = yield* fs.writeStream("s.bin")
            yield* stream.write(new Uint8Array(600 * KiB))
            yield* fs.write("small.bin", new Uint8Array(100 * KiB))
            // 600 KiB reserved by the open stream + 100 KiB written: 600 KiB more cannot fit.
            const error = yield* fs.write("big.bin", new Uint8Array(600 * KiB)).pipe(expectFailure("QuotaExceeded"))
            assert.strictEqual(error.requestedBytes, 600 * KiB)
            yield* stream.close()
          }))
        )
        assert.deepStrictEqual(names(yield* fs.list("/")), ["s.bin", "small.bin"])
        assert.strictEqual(yield* used, 700 * KiB)
      }))

    test("Fiber.interrupt returns for a writer waiting beside an open stream; reservations are given back", () =>
      Effect.gen(function*() {
        const { fs, hostDir } = yield* quotaVolume
        yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* fs.writeStream("kept.bin")
          yield* first.write(new Uint8Array(100 * KiB))
          const blocked = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
            const second = yield* fs.writeStream("dropped.bin")
            yield* second.write(new Uint8Array(800 * KiB))
            return yield* Effect.never
          })))
          yield* noDeadlock("Fiber.interrupt", Fiber.interrupt(blocked))
          yield* first.close()
        }))
        assert.deepStrictEqual(names(yield* fs.list("/")), ["kept.bin"])
        if (Option.isSome(hostDir)) assert.deepStrictEqual(NodeFs.readdirSync(hostDir.value), ["kept.bin"])
        // Nothing of the interrupted stream's reservation is left: the rest of the quota is free.
        yield* fs.write("rest.bin", new Uint8Array(MiB - 100 * KiB))
        assert.strictEqual(yield* used, MiB)
      }))

    test("a volume without a quota is not limited by one", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("free")).fs()
        yield* fs.write("big.bin", new Uint8Array(3 * MiB))
        assert.strictEqual((yield* Volume.get("free")).usedBytes, 3 * MiB)
      }))
  })
}
