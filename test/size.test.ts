/**
 * Sizes given by users: one way (`number | string` on the builders) that reports every bad
 * size as `InvalidConfig` in the typed channel, never as an exception.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as MemoryBackend from "../src/MemoryBackend.js"
import * as Size from "../src/Size.js"
import * as Volume from "../src/Volume.js"

describe("Size", () => {
  it("mib/gib/tib never throw, whatever the number", () => {
    assert.doesNotThrow(() => Size.mib(0))
    assert.doesNotThrow(() => Size.mib(1.5))
    assert.doesNotThrow(() => Size.gib(-1))
    assert.strictEqual(Size.gib(2), 2048)
  })

  it("decode checks numbers and strings alike", () => {
    assert.deepStrictEqual(Size.decode("1G"), Either.right(Size.mib(1024)))
    assert.deepStrictEqual(Size.decode(64), Either.right(Size.mib(64)))
    for (const bad of [0, 1.5, -3, Number.NaN, "1.5M", "0", "lots"]) {
      const result = Size.decode(bad)
      assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidConfig", `decode(${String(bad)})`)
    }
  })

  it.effect("builders take numbers or strings, and bad sizes fail create() with InvalidConfig", () =>
    Effect.gen(function*() {
      for (const bad of [Size.mib(0), Size.mib(1.5), "1.5M", "huge"] as const) {
        const quota = yield* Effect.flip(Volume.builder("q").quota(bad).create())
        assert.strictEqual(quota._tag, "InvalidConfig", `quota(${String(bad)})`)
        const disk = yield* Effect.flip(Volume.builder("d").disk().size(bad).create())
        assert.strictEqual(disk._tag, "InvalidConfig", `size(${String(bad)})`)
      }
      const byString = yield* Volume.builder("s").quota("20M").create()
      assert.deepStrictEqual(byString.quotaMib, Option.some(Size.mib(20)))
      const byNumber = yield* Volume.builder("n").quota(Size.mib(5)).create()
      assert.deepStrictEqual(byNumber.quotaMib, Option.some(Size.mib(5)))
      assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name).sort(), ["n", "s"])
    }).pipe(Effect.provide(MemoryBackend.layer)))
})
