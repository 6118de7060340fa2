/**
 * SPEC §3 containment: a sandbox may plant any symlink in a volume; no host-side operation
 * may read, create, modify or delete anything outside the volume through one. Runs on
 * backends whose files are host files (`supportsPath`), where symlinks can be planted.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Either, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Volume from "../../src/Volume.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, names } from "./support.js"

export const containmentTests = ({ options, test }: Context) => {
  if (!options.supportsPath) return

  /**
   * A volume whose data directory holds symlinks a sandbox could have planted:
   * `abs` and `rel` point at a host directory outside the volume, `dangling` at a
   * missing file outside, `inner` at a file inside.
   */
  const planted = Effect.gen(function*() {
    const outside = yield* Effect.acquireRelease(
      Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-outside-"))),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    )
    NodeFs.writeFileSync(NodePath.join(outside, "secret.txt"), "secret")
    const vol = yield* createVolume("jail")
    const fs = vol.fs()
    yield* fs.write("real.txt", "inside")
    const dir = yield* vol.path()
    NodeFs.symlinkSync(outside, NodePath.join(dir, "abs"))
    NodeFs.symlinkSync(NodePath.relative(dir, outside), NodePath.join(dir, "rel"))
    NodeFs.symlinkSync(NodePath.join(outside, "created.txt"), NodePath.join(dir, "dangling"))
    NodeFs.symlinkSync("real.txt", NodePath.join(dir, "inner"))
    /** The outside directory is exactly as planted. */
    const assertOutsideUntouched = () => {
      assert.deepStrictEqual(NodeFs.readdirSync(outside), ["secret.txt"])
      assert.strictEqual(NodeFs.readFileSync(NodePath.join(outside, "secret.txt"), "utf8"), "secret")
    }
    return { fs, outside, assertOutsideUntouched } as const
  })

  describe("containment (symlinks planted in the volume)", () => {
    test("reads through a symlink are refused with InvalidPath", () =>
      Effect.gen(function*() {
        const { assertOutsideUntouched, fs } = yield* planted
        for (const link of ["abs", "rel"]) {
          yield* fs.read(`${link}/secret.txt`).pipe(expectFailure("InvalidPath"))
          yield* fs.readToString(`${link}/secret.txt`).pipe(expectFailure("InvalidPath"))
          yield* Stream.runDrain(fs.readStream(`${link}/secret.txt`)).pipe(expectFailure("InvalidPath"))
          yield* fs.list(link).pipe(expectFailure("InvalidPath"))
          yield* fs.stat(`${link}/secret.txt`).pipe(expectFailure("InvalidPath"))
        }
        yield* fs.read("inner").pipe(expectFailure("InvalidPath"))
        yield* fs.read("dangling").pipe(expectFailure("InvalidPath"))
        assertOutsideUntouched()
      }))

    test("writes through a symlinked directory are refused and create nothing outside", () =>
      Effect.gen(function*() {
        const { assertOutsideUntouched, fs } = yield* planted
        for (const link of ["abs", "rel"]) {
          yield* fs.write(`${link}/secret.txt`, "pwned").pipe(expectFailure("InvalidPath"))
          yield* fs.write(`${link}/new.txt`, "pwned").pipe(expectFailure("InvalidPath"))
          yield* fs.mkdir(`${link}/sub`).pipe(expectFailure("InvalidPath"))
          yield* fs.remove(`${link}/secret.txt`).pipe(expectFailure("InvalidPath"))
          yield* fs.copy("real.txt", `${link}/copied.txt`).pipe(expectFailure("InvalidPath"))
          yield* fs.rename("real.txt", `${link}/moved.txt`).pipe(expectFailure("InvalidPath"))
          yield* Effect.scoped(Effect.flatMap(fs.writeStream(`${link}/streamed.txt`), (s) => s.close())).pipe(
            expectFailure("InvalidPath")
          )
        }
        assert.strictEqual(yield* fs.readToString("real.txt"), "inside")
        assertOutsideUntouched()
      }))

    test("writing onto a dangling symlink never creates its target", () =>
      Effect.gen(function*() {
        const { assertOutsideUntouched, fs } = yield* planted
        yield* Effect.either(fs.write("dangling", "pwned"))
        yield* Effect.either(Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("dangling")
          yield* sink.write("pwned")
          yield* sink.close()
        })))
        yield* Effect.either(fs.copy("real.txt", "dangling"))
        assertOutsideUntouched()
      }))

    test("remove deletes the link itself, never its target", () =>
      Effect.gen(function*() {
        const { assertOutsideUntouched, fs } = yield* planted
        yield* fs.remove("abs")
        yield* fs.remove("inner")
        assert.isFalse(yield* fs.exists("abs"))
        assert.strictEqual(yield* fs.readToString("real.txt"), "inside")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["dangling", "real.txt", "rel"])
        assertOutsideUntouched()
      }))

    test("removeDir, copy and rename of a symlink never reach its target", () =>
      Effect.gen(function*() {
        const { assertOutsideUntouched, fs } = yield* planted
        yield* Effect.either(fs.removeDir("rel"))
        assertOutsideUntouched()
        yield* Effect.either(fs.copy("abs", "abs-copy"))
        const leaked = yield* Effect.either(fs.read("abs-copy/secret.txt"))
        assert.isTrue(Either.isLeft(leaked), "a copied symlink does not expose the outside file")
        yield* fs.copy("abs/secret.txt", "stolen.txt").pipe(expectFailure("InvalidPath"))
        assert.isFalse(yield* fs.exists("stolen.txt"))
        yield* fs.rename("abs", "abs-moved")
        yield* fs.read("abs-moved/secret.txt").pipe(expectFailure("InvalidPath"))
        assertOutsideUntouched()
      }))

    test("stat and list report symlinks as symlinks, and a measurement counts them", () =>
      Effect.gen(function*() {
        const { fs } = yield* planted
        const entries = yield* fs.list("/")
        assert.deepStrictEqual(
          entries.map((e) => [e.path, e.kind]),
          [["/abs", "symlink"], ["/dangling", "symlink"], ["/inner", "symlink"], ["/real.txt", "file"], ["/rel", "symlink"]]
        )
        const inner = yield* fs.stat("inner")
        assert.strictEqual(inner.kind, "symlink")
        assert.strictEqual(inner.size, "real.txt".length)
        assert.isTrue(yield* fs.exists("dangling"))
        const usage = entries.reduce((sum, e) => sum + e.size, 0)
        // The links were planted behind the library's back (as a sandbox would): `measure` sees them.
        assert.strictEqual((yield* Volume.measure("jail")).usedBytes, usage)
      }))
  })
}
