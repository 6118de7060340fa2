/**
 * docs/files.md, "Links, modes and watch" and "An Effect FileSystem over a volume": run by
 * the test suite (test/examples.test.ts) so it stays true.
 */
import { FileSystem } from "@effect/platform"
import { Effect, Fiber, Stream } from "effect"
import { LocalBackend, Volume, VolumeFs } from "../src/index.js"

const program = Effect.gen(function*() {
  const vol = yield* Volume.builder("tools").create()
  const fs = vol.fs()

  // Links are data: stored as given, listed with their target, never followed host-side.
  yield* fs.write("/node_modules/tool/lib/cli.js", "console.log('tool')\n")
  yield* fs.symlink("../tool/lib/cli.js", "/node_modules/.bin/tool")
  console.log(`readlink=${yield* fs.readlink("/node_modules/.bin/tool")}`)

  // Modes: on write, or afterwards (never through a link).
  yield* fs.write("/bin/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 })
  yield* fs.mkdir("/pgdata")
  yield* fs.chmod("/pgdata", 0o700)
  console.log(`run.sh=${(yield* fs.stat("/bin/run.sh")).mode.toString(8)} pgdata=${(yield* fs.stat("/pgdata")).mode.toString(8)}`)

  // Watch: a scoped stream; here until the first change below /logs is seen.
  yield* fs.mkdir("/logs")
  const watching = yield* fs.watch("/logs", { recursive: true }).pipe(
    Stream.filter((event) => event.path === "/logs/today.log"),
    Stream.runHead,
    Effect.fork
  )
  const first = yield* Effect.gen(function*() {
    // Until the watch has started, a write may go unseen: write until it is seen.
    for (let attempt = 0;; attempt++) {
      yield* fs.write("/logs/today.log", `line ${attempt}\n`)
      const seen = yield* Fiber.join(watching).pipe(Effect.timeoutOption("500 millis"))
      if (seen._tag === "Some") return seen.value
    }
  })
  if (first._tag === "Some") console.log(`watch=${first.value._tag} ${first.value.path}`)

  // Existing Effect code, unchanged, on the volume.
  const names = yield* Effect.gen(function*() {
    const pfs = yield* FileSystem.FileSystem
    yield* pfs.writeFileString("/notes/a.txt", "hi")
    return yield* pfs.readDirectory("/notes")
  }).pipe(Effect.provide(VolumeFs.layerFileSystem(vol)))
  console.log(`notes=${names.join(",")}`)
})

program.pipe(Effect.provide(LocalBackend.layer()), Effect.scoped, Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
