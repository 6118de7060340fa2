/**
 * SPEC §10: `Volume.update(name, { size })` grows a disk volume, data kept; it never
 * shrinks, never applies to a directory volume, and waits for no holder (refused).
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import type { Context } from "./support.js"
import { bytes, createVolume, expectFailure, expectFsError, MiB } from "./support.js"

const capacityMib = (name: string) =>
  Effect.map(Volume.get(name), (handle) => Option.getOrThrow(handle.capacityBytes) / MiB)

export const resizeTests = ({ options, test }: Context) => {
  describe("resize", () => {
    test("a directory volume has no size to change: InvalidConfig, nothing changed", () =>
      Effect.gen(function*() {
        yield* createVolume("dir")
        const refused = yield* expectFailure("InvalidConfig")(Volume.update("dir", { size: 128 }))
        assert.include(refused.message, "only to disk volumes")
        assert.isTrue(Option.isNone((yield* Volume.get("dir")).capacityBytes))
        yield* expectFailure("VolumeNotFound")(Volume.update("ghost", { size: 128 }))
      }))

    if (!options.supportsDisk) return

    test("a disk volume grows: the new size is reported, the data kept, and more fits than before", () =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(64).create()
        yield* vol.fs().write("docs/keep.bin", bytes(256 * 1024, 7))
        // 70 MiB do not fit in 64 MiB...
        yield* expectFsError("NoSpace")(vol.fs().write("big.bin", bytes(70 * MiB, 3)))
        const grown = yield* Volume.update("IMG", { size: "128M", labels: { set: { grown: "yes" } } })
        assert.strictEqual(Option.getOrThrow(grown.capacityBytes), 128 * MiB)
        assert.deepStrictEqual(grown.labels, [["grown", "yes"]], "the other changes apply too")
        assert.strictEqual(yield* capacityMib("img"), 128)
        const after = yield* Volume.get("img")
        assert.deepStrictEqual(yield* after.fs().read("docs/keep.bin"), bytes(256 * 1024, 7))
        // ...and fit once it has grown.
        yield* after.fs().write("big.bin", bytes(70 * MiB, 3))
        assert.strictEqual((yield* after.fs().stat("big.bin")).size, 70 * MiB)
      }))

    test("a disk volume never shrinks; the same size changes nothing; sizes outside the limits are refused", () =>
      Effect.gen(function*() {
        yield* Volume.builder("img").disk().size(128).create()
        const shrink = yield* expectFailure("InvalidConfig")(Volume.update("img", { size: 64 }))
        assert.include(shrink.message, "only grows")
        assert.include(shrink.message, "128 MiB")
        yield* expectFailure("InvalidConfig")(Volume.update("img", { size: 0 }))
        yield* expectFailure("InvalidConfig")(Volume.update("img", { size: "lots" }))
        yield* expectFailure("InvalidConfig")(Volume.update("img", { size: 1024 * 1024 * 1024 }))
        const same = yield* Volume.update("img", { size: "128M" })
        assert.strictEqual(Option.getOrThrow(same.capacityBytes), 128 * MiB)
        assert.strictEqual(yield* capacityMib("img"), 128)
      }))

    test("a held disk volume is not resized (VolumeInUse names the holder); once let go it grows", () =>
      Effect.gen(function*() {
        yield* Volume.builder("img").disk().size(64).create()
        const backend = yield* VolumeBackend
        for (const mode of ["rw", "ro"] as const) {
          const scope = yield* Scope.make()
          yield* backend.holders.acquire("img", `sandbox ${mode}`, mode).pipe(Scope.extend(scope))
          const refused = yield* expectFailure("VolumeInUse")(Volume.update("img", { size: 128 }))
          assert.deepStrictEqual(refused.holders, [`sandbox ${mode}`])
          assert.strictEqual(yield* capacityMib("img"), 64, "nothing changed")
          yield* Scope.close(scope, Exit.void)
        }
        yield* Volume.update("img", { size: 128 })
        assert.strictEqual(yield* capacityMib("img"), 128)
      }))
  })
}
