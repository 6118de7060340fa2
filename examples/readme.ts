/**
 * The README's example, run by the test suite (test/examples.test.ts) so it stays true.
 */
import { Effect } from "effect"
import { LocalBackend, Size, Volume } from "../src/index.js"

const program = Effect.gen(function*() {
  const vol = yield* Volume.builder("pip-cache").quota(Size.gib(1)).label("team", "ml").create()
  yield* vol.fs().write("/note.txt", "shared cache") // atomic, quota-checked
  const h = yield* Volume.get("pip-cache") // h.usedBytes === 12
  const disk = yield* Volume.builder("docker-data").disk().size(Size.mib(256)).create()
  yield* disk.fs().write("/inside-the-image.txt", "ext4") // written inside disk.raw
  for (const v of yield* Volume.list({ labels: { team: "ml" } })) console.log(v.name, v.kind, v.usedBytes)
  console.log(`used=${h.usedBytes}`)
  console.log(`disk=${yield* disk.fs().readToString("/inside-the-image.txt")}`)
})

program.pipe(Effect.provide(LocalBackend.layer()), Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
