/**
 * docs/volumes.md, "Growing a disk volume" and "Last use", run by the test suite
 * (test/examples.test.ts) so it stays true.
 */
import { Effect, Option } from "effect"
import { LocalBackend, Size, Volume } from "../src/index.js"

const program = Effect.gen(function*() {
  const disk = yield* Volume.builder("docker-data").disk().size(Size.mib(64)).create()
  yield* disk.fs().write("/layers/base.txt", "kept") // a host-side write: lastUsedAt moves
  // Offline: refused with VolumeInUse while a sandbox (or an open fs() stream) holds it.
  const grown = yield* Volume.update("docker-data", { size: Size.mib(128) })
  const sizeMib = Option.getOrThrow(grown.capacityBytes) / (1024 * 1024)
  console.log(`size=${sizeMib}MiB data=${yield* grown.fs().readToString("/layers/base.txt")}`)
  const shrink = yield* Effect.flip(Volume.update("docker-data", { size: Size.mib(32) }))
  console.log(`shrink refused: ${shrink._tag}`)
  console.log(`used recently: ${Option.isSome(grown.lastUsedAt)}`)
  const idle = yield* Volume.prune({ unusedFor: "7 days", dryRun: true })
  console.log(`unused for a week: ${idle.removed.length}`)
})

program.pipe(Effect.provide(LocalBackend.layer()), Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
