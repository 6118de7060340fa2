/**
 * Renaming a volume (docs/volumes.md, "Renaming"), run by the test suite
 * (test/examples.test.ts) so it stays true.
 */
import { Effect } from "effect"
import { LocalBackend, Volume } from "../src/index.js"

const program = Effect.gen(function*() {
  const vol = yield* Volume.builder("pip-cache").label("team", "ml").create()
  yield* vol.fs().write("/wheel.txt", "numpy-2.1")
  yield* Volume.snapshot("pip-cache", { name: "known-good" })

  const renamed = yield* Volume.rename("pip-cache", "pip-cache-py312")
  console.log(`renamed=${renamed.name} labels=${renamed.labels.map(([k, v]) => `${k}=${v}`).join(",")}`)
  console.log(`data=${yield* renamed.fs().readToString("/wheel.txt")}`)
  console.log(`snapshots=${(yield* Volume.snapshots("pip-cache-py312")).map((s) => s.name).join(",")}`)

  // The old name is free; renaming onto a taken name changes nothing.
  const old = yield* Effect.flip(Volume.get("pip-cache"))
  console.log(`old name: ${old._tag}`)
  yield* Volume.builder("shared").create()
  const taken = yield* Effect.flip(Volume.rename("pip-cache-py312", "SHARED"))
  console.log(`onto a taken name: ${taken._tag}`)
})

program.pipe(Effect.provide(LocalBackend.layer()), Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
