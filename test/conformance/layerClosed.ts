/**
 * A volume handle used after the backend layer that made it was closed: every operation
 * fails the same way on every backend — a `StorageError` (reason `Unavailable`) saying the
 * layer was closed — instead of some working and others failing with raw driver errors.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { Context } from "./support.js"
import { createVolume, expectFailure } from "./support.js"

export const layerClosedTests = ({ layer, options, test }: Context) => {
  describe("after the backend layer closed", () => {
    const kinds = options.supportsDisk ? (["directory", "disk"] as const) : (["directory"] as const)
    for (const kind of kinds) {
      test(`every operation of a ${kind} volume handle fails with StorageError Unavailable`, () =>
        Effect.gen(function*() {
          // The layer is built for this block only and closed when it ends.
          const vol = yield* createVolume(`closed-${kind}`, (b) => kind === "disk" ? b.disk().size(64) : b).pipe(
            Effect.tap((v) => v.fs().write("/f.txt", "x")),
            Effect.provide(layer)
          )
          const fs = vol.fs()
          const attempts = {
            read: fs.read("/f.txt"),
            write: fs.write("/g.txt", "y"),
            list: fs.list("/"),
            stat: fs.stat("/f.txt"),
            symlink: fs.symlink("f.txt", "/link"),
            readStream: Stream.runDrain(fs.readStream("/f.txt")),
            watch: Stream.runDrain(fs.watch("/")),
            path: vol.path(),
            remove: vol.remove()
          }
          for (const [operation, attempt] of Object.entries(attempts)) {
            const error = yield* expectFailure("StorageError")(attempt as Effect.Effect<unknown, unknown>)
            assert.strictEqual((error as { readonly reason: string }).reason, "Unavailable", operation)
            assert.include(String((error as { readonly message: string }).message), "layer was closed", operation)
          }
        }))
    }
  })
}
