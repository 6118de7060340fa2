/**
 * Several processes share one home. Eight of them open a fresh home and create the same
 * name at the same moment: exactly one wins, the rest get VolumeAlreadyExists, and the
 * winner's volume is whole.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdirSync, statSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import * as Volume from "../../src/Volume.js"
import { spawnWorker } from "./fixtures/child.js"
import { assertConsistent, entries, makeHome, withHome } from "./fixtures/home.js"

const PROCESSES = 8

describe("LocalBackend across processes", () => {
  it.scopedLive("of 8 processes creating one name at once, exactly one wins and the volume is whole", () =>
    Effect.gen(function*() {
      const scratch = yield* makeHome
      const home = NodePath.join(scratch, "home") // fresh: the workers also race to set it up
      const barrier = NodePath.join(scratch, "barrier")
      mkdirSync(barrier)
      const workers = yield* Effect.forEach(
        Array.from({ length: PROCESSES }, (_, i) => i),
        (i) => spawnWorker(["create", home, i % 2 === 0 ? "Shared" : "SHARED", "disk", "64", barrier])
      )
      yield* Effect.forEach(workers, (worker) => worker.line((line) => line === "ready"))
      assert.lengthOf(entries(barrier), PROCESSES)
      writeFileSync(NodePath.join(barrier, "go"), "")

      const outcomes = yield* Effect.forEach(workers, (worker) => worker.result, { concurrency: "unbounded" })
      const counts = outcomes.reduce<Record<string, number>>(
        (acc, { outcome }) => ({ ...acc, [outcome]: (acc[outcome] ?? 0) + 1 }),
        {}
      )
      assert.deepStrictEqual(counts, { ok: 1, VolumeAlreadyExists: PROCESSES - 1 })
      for (const worker of workers) assert.strictEqual(yield* worker.exit, 0)

      const volumes = yield* assertConsistent(home)
      assert.lengthOf(volumes, 1)
      const vol = yield* Volume.get("shared").pipe(withHome(home))
      assert.strictEqual(vol.kind, "disk")
      const image = NodePath.join(home, "volumes", "shared", "disk.raw")
      assert.strictEqual(statSync(image).size, 64 * 1024 * 1024)
      // A whole, clean ext4 file system (e2fsck -n exits 0 only when nothing is wrong).
      execFileSync("e2fsck", ["-fn", image], { stdio: "ignore" })
    }))
})
