/**
 * `volumes resize` and `volumes update --size` through the built binary (`npm run build`
 * first): a disk volume grows with its data, and each refusal exits with its code.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { assertOneLineError, session } from "./harness.js"

const MiB = 1024 * 1024

describe("volumes resize", () => {
  it.scopedLive("grows a disk volume (resize and update --size); refuses to shrink, a directory volume, a bad size", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "img", "--disk", "--size", "64M"])
      yield* ok(["fs", "img", "put", "-", "/notes.txt"], { input: new TextEncoder().encode("kept") })

      const grown = JSON.parse((yield* ok(["resize", "img", "--size", "128M", "--json"])).stdout)
      assert.strictEqual(grown.capacityBytes, 128 * MiB)
      assert.include((yield* ok(["resize", "img", "--size", "128M"])).stdout, "img", "the same size changes nothing")
      const updated = JSON.parse((yield* ok(["update", "img", "--size", "192M", "--json"])).stdout)
      assert.strictEqual(updated.capacityBytes, 192 * MiB)
      assert.strictEqual((yield* ok(["fs", "img", "cat", "/notes.txt"])).stdout, "kept")

      assertOneLineError(yield* volumes(["resize", "img", "--size", "64M"]), 3, "only grows")
      yield* ok(["create", "dir"])
      assertOneLineError(yield* volumes(["resize", "dir", "--size", "1G"]), 3, "only to disk volumes")
      assertOneLineError(yield* volumes(["resize", "img", "--size", "lots"]), 3, "--size")
      assertOneLineError(yield* volumes(["resize", "ghost", "--size", "1G"]), 4, "ghost")
      const inspected = JSON.parse((yield* ok(["inspect", "img", "--json"])).stdout)
      assert.strictEqual(inspected.capacityBytes, 192 * MiB, "the refusals changed nothing")
    }), { timeout: 120_000 })
})
