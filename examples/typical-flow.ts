/**
 * The typical flow of docs/sandboxes.md, run by the test suite (test/examples.test.ts):
 * a volume written on the host, read and written in a sandbox, the result read back.
 */
import { Effect, Layer } from "effect"
import { LocalBackend, NamespaceRuntime, Sandbox, Size, Volume } from "../src/index.js"

const program = Effect.scoped(Effect.gen(function*() {
  const vol = yield* Volume.builder("pip-cache").create()
  yield* vol.fs().write("/note.txt", "shared cache")
  const sb = yield* Sandbox.builder("api")
    .image("host")
    .volume("/root/.cache/pip", (m) => m.named("pip-cache"))
    .volume("/scratch", (m) => m.tmpfs().size(64))
    .volume("/var/lib/docker", (m) => m.namedWith("docker-data", (n) => n.ensureExists().disk().size(Size.gib(1))))
    .env("MODE", "test")
    .workdir("/root")
    .create()
  const out = yield* sb.exec("sh", ["-c", "cat /root/.cache/pip/note.txt && echo done > /root/.cache/pip/out.txt"])
  console.log(`exit=${out.exitCode} stdout=${out.stdout}`)
  return vol
})).pipe(
  // After the scope: the sandbox is stopped and its write is on the host.
  Effect.flatMap((vol) => vol.fs().readToString("/out.txt")),
  Effect.tap((text) => Effect.sync(() => console.log(`out.txt=${text.trim()}`)))
)

program.pipe(Effect.provide(Layer.mergeAll(LocalBackend.layer(), NamespaceRuntime.layer)), Effect.runPromise).catch(
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
