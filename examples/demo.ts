/**
 * The main job on the embedded local backend: create a volume, seed it from a host
 * directory, list it with its real usage, and read the files back.
 *
 *   npm run demo                 # uses ~/.effect-volumes (or $EFFECT_VOLUMES_HOME)
 */
import { Console, Effect } from "effect"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { LocalBackend, Size, Volume } from "../src/index.js"

const seedDir = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "seed")

/** Copies every file below a host directory into the volume, keeping relative paths. */
const seedFromHost = (fs: ReturnType<Volume.Volume["fs"]>, hostDir: string) =>
  Effect.gen(function*() {
    const entries = yield* Effect.promise(() => NodeFs.readdir(hostDir, { recursive: true, withFileTypes: true }))
    for (const entry of entries.filter((e) => e.isFile())) {
      const hostPath = NodePath.join(entry.parentPath, entry.name)
      const bytes = yield* Effect.promise(() => NodeFs.readFile(hostPath))
      yield* fs.write(NodePath.relative(hostDir, hostPath), bytes)
    }
  })

const program = Effect.gen(function*() {
  // Start from a clean slate so the demo can run again.
  yield* Volume.remove("demo-notes").pipe(Effect.catchTag("VolumeNotFound", () => Effect.void))

  const vol = yield* Volume.builder("demo-notes").quota(Size.mib(64)).label("app", "demo").create()
  yield* seedFromHost(vol.fs(), seedDir)
  yield* vol.fs().write("/generated/hello.txt", "hello from effect-volumes\n")

  for (const v of yield* Volume.list({ labels: { app: "demo" } })) {
    const handle = yield* Volume.get(v.name) // get measures usage for real
    yield* Console.log(`${handle.name}  kind=${handle.kind}  used=${handle.usedBytes} bytes  path=${yield* handle.path()}`)
  }
  for (const entry of yield* vol.fs().list("/")) {
    yield* Console.log(`  ${entry.kind.padEnd(9)} ${String(entry.size).padStart(6)}  ${entry.path}`)
  }
  yield* Console.log(`\n/readme.txt:\n${yield* vol.fs().readToString("/readme.txt")}`)
  yield* Console.log(`/generated/hello.txt: ${yield* vol.fs().readToString("/generated/hello.txt")}`)
})

program.pipe(Effect.provide(LocalBackend.layer()), Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
