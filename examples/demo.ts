/**
 * The main job on the embedded local backend: create a volume, seed it from a host
 * directory, mount it into a sandbox, run a command there, and read the result back.
 *
 *   npm run demo                 # uses ~/.effect-volumes (or $EFFECT_VOLUMES_HOME)
 */
import { Console, Effect, Layer } from "effect"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { LocalBackend, NamespaceRuntime, Sandbox, Size, Volume } from "../src/index.js"

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

  // Mount it into a sandbox (Linux namespaces), run a command, and let the scope stop it.
  const out = yield* Effect.scoped(Effect.gen(function*() {
    const sb = yield* Sandbox.builder("demo")
      .image("host")
      .volume("/notes", (m) => m.named("demo-notes"))
      .volume("/scratch", (m) => m.tmpfs().size(16))
      .create()
    return yield* sb.exec("sh", ["-c", "cat /notes/readme.txt && wc -l < /notes/notes/list.txt > /notes/line-count.txt"])
  }))
  yield* Console.log(`sandbox exit=${out.exitCode} stdout=${out.stdout.trim()}`)

  // Back on the host: the sandbox's output is in the volume, and the usage is measured.
  for (const v of yield* Volume.list({ labels: { app: "demo" } })) {
    const handle = yield* Volume.get(v.name) // get measures usage for real
    yield* Console.log(`${handle.name}  kind=${handle.kind}  used=${handle.usedBytes} bytes  path=${yield* handle.path()}`)
  }
  for (const entry of yield* vol.fs().list("/")) {
    yield* Console.log(`  ${entry.kind.padEnd(9)} ${String(entry.size).padStart(6)}  ${entry.path}`)
  }
  yield* Console.log(`line-count.txt (written in the sandbox): ${(yield* vol.fs().readToString("/line-count.txt")).trim()}`)
})

program.pipe(Effect.provide(Layer.mergeAll(LocalBackend.layer(), NamespaceRuntime.layer)), Effect.runPromise).catch((error) => {
  console.error(String(error))
  process.exit(1)
})
