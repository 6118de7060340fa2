/**
 * The example of docs/snapshots.md, run by the test suite (test/examples.test.ts): a known-good
 * snapshot, three private forks for three agent runs, a sandbox reading the snapshot, a
 * rollback.
 */
import { Effect, Layer } from "effect"
import { LocalBackend, NamespaceRuntime, Sandbox, Size, Volume } from "../src/index.js"

const program = Effect.scoped(Effect.gen(function*() {
  const base = yield* Volume.builder("workspace").quota(Size.gib(2)).create()
  yield* base.fs().write("/repo/README.md", "v1")
  const snap = yield* Volume.snapshot("workspace", { name: "known-good", labels: { ci: "green" } })
  yield* base.fs().write("/repo/README.md", "v2 (broken)")
  console.log(`snapshot reads: ${yield* snap.fs().readToString("/repo/README.md")}`)
  const refused = yield* Effect.flip(snap.fs().write("/repo/README.md", "nope"))
  console.log(`snapshot write: ${refused._tag} ${refused._tag === "VolumeFsError" ? refused.reason : ""}`)

  // Three private copies of the known-good state, one per agent run.
  const runs = yield* Effect.forEach(
    [1, 2, 3],
    (i) => Volume.fork("workspace", `run-${i}`, { snapshot: "known-good" }),
    { concurrency: 3 }
  )
  const sandbox = yield* Sandbox.builder("run-1")
    .image("host")
    .volume("/work", (m) => m.named("run-1"))
    .volume("/ref", (m) => m.snapshot("workspace", "known-good"))
    .create()
  // In place: the fork's file is appended to, nothing else changes.
  const out = yield* sandbox.exec("sh", ["-c", "echo x >> /work/repo/README.md && cat /ref/repo/README.md"])
  console.log(`sandbox sees the snapshot: ${out.stdout}`)
  yield* sandbox.stop()
  for (const run of runs) console.log(`${run.name}: ${JSON.stringify(yield* run.fs().readToString("/repo/README.md"))}`)

  yield* Volume.restore("workspace", "known-good")
  console.log(`after restore: ${yield* base.fs().readToString("/repo/README.md")}`)
  console.log(`snapshots: ${(yield* Volume.snapshots("workspace")).map((s) => s.name).join(",")}`)
  yield* Volume.remove("workspace", { withSnapshots: true })
}))

program.pipe(Effect.provide(Layer.mergeAll(LocalBackend.layer(), NamespaceRuntime.layer)), Effect.runPromise).catch(
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
