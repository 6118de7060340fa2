/**
 * Renaming a local volume across processes: a renamer killed with SIGKILL at each step
 * leaves exactly one of the two names, with all its data and snapshots, once the home is
 * next opened; a live renamer's half-moved directories are never taken for garbage; and
 * eight processes renaming and creating the same names at once agree on one outcome.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as Volume from "../../src/Volume.js"
import { spawnWorker } from "./fixtures/child.js"
import { assertConsistent, entries, makeHome, withDatabase, withHome } from "./fixtures/home.js"

const renameWorker = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "fixtures", "renameWorker.ts")

/** A home with volume `src`: two files, and a snapshot taken before the second changed. */
const seed = (home: string) =>
  Effect.gen(function*() {
    const vol = yield* Volume.builder("src").label("team", "ml").create()
    yield* vol.fs().write("/a.txt", "alpha")
    yield* vol.fs().write("/dir/b.txt", "old")
    yield* Volume.snapshot("src", { name: "before" })
    yield* vol.fs().write("/dir/b.txt", "new")
  }).pipe(withHome(home))

/** Asserts `dst` holds everything `seed` made and `src` is gone. */
const assertRenamed = (home: string) =>
  Effect.gen(function*() {
    const [vol] = yield* assertConsistent(home)
    assert.strictEqual(vol?.name, "dst")
    yield* Effect.gen(function*() {
      const dst = yield* Volume.get("dst")
      assert.deepStrictEqual(dst.labels, [["team", "ml"]])
      assert.strictEqual(yield* dst.fs().readToString("/a.txt"), "alpha")
      assert.strictEqual(yield* dst.fs().readToString("/dir/b.txt"), "new")
      assert.strictEqual(dst.usedBytes, "alpha".length + "new".length)
      const snaps = yield* Volume.snapshots("dst")
      assert.deepStrictEqual(snaps.map((s) => s.name), ["before"])
      assert.strictEqual(yield* snaps[0]!.fs().readToString("/dir/b.txt"), "old")
      yield* Volume.get("src").pipe(Effect.flip)
      yield* Volume.snapshots("src").pipe(Effect.flip)
      // Both names work normally afterwards.
      yield* Volume.builder("src").create()
      assert.deepStrictEqual(yield* Volume.snapshots("src"), [])
      yield* Volume.rename("dst", "dst2")
      assert.strictEqual(yield* (yield* Volume.getSnapshot("dst2", "before")).fs().readToString("/a.txt"), "alpha")
    }).pipe(withHome(home))
    assert.deepStrictEqual(entries(NodePath.join(home, "snapshots")).filter((key) =>
      entries(NodePath.join(home, "snapshots", key)).length > 0
    ), ["dst2"])
  })

const journal = (home: string) =>
  withDatabase(home, (sql) => sql<{ readonly from_key: string; readonly to_key: string }>`SELECT * FROM renames`)

describe("LocalBackend rename across processes", () => {
  for (const pause of ["before-data", "after-data", "after-snapshots"]) {
    it.scopedLive(`killed ${pause}: the home is finished forward to the new name with data and snapshots`, () =>
      Effect.gen(function*() {
        const home = yield* makeHome
        yield* seed(home)
        const worker = yield* spawnWorker(["rename", home, "src", "dst", "-", pause], renameWorker)
        yield* worker.line((line) => line === "paused")
        assert.deepStrictEqual(yield* journal(home), [{ from_key: "src", to_key: "dst" }], "killed mid-rename")
        yield* worker.kill
        yield* assertRenamed(home)
        assert.deepStrictEqual(yield* journal(home), [])
      }))
  }

  it.scopedLive("a live renamer's half-moved directories survive another process opening the home", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* seed(home)
      const worker = yield* spawnWorker(["rename", home, "src", "dst", "-", "after-data"], renameWorker)
      yield* worker.line((line) => line === "paused")
      // Opening runs recovery: the renamer lives, so nothing of it is discarded or finished.
      const listed = yield* Volume.list().pipe(withHome(home))
      assert.deepStrictEqual(listed, [], "neither name is ready while the rename runs")
      assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), ["dst"])
      assert.deepStrictEqual(entries(NodePath.join(home, "snapshots", "src")), ["before"])
      yield* worker.kill
      yield* assertRenamed(home)
    }))

  it.scopedLive("8 processes renaming and creating the same names at once agree on one outcome", () =>
    Effect.gen(function*() {
      const scratch = yield* makeHome
      const home = NodePath.join(scratch, "home")
      const barrier = NodePath.join(scratch, "barrier")
      mkdirSync(barrier)
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("a").create()
        yield* vol.fs().write("/a.txt", "alpha")
        yield* Volume.snapshot("a", { name: "s" })
      }).pipe(withHome(home))
      const commands = [
        ["rename", home, "a", "b", barrier],
        ["rename", home, "A", "B", barrier],
        ["rename", home, "a", "c", barrier],
        ["rename", home, "a", "C", barrier],
        ["rename", home, "b", "a", barrier],
        ["create", home, "b", barrier],
        ["create", home, "a", barrier],
        ["create", home, "c", barrier]
      ]
      const workers = yield* Effect.forEach(commands, (command) => spawnWorker(command, renameWorker))
      yield* Effect.forEach(workers, (worker) => worker.line((line) => line === "ready"))
      writeFileSync(NodePath.join(barrier, "go"), "")
      const outcomes = yield* Effect.forEach(workers, (worker) => Effect.map(worker.result, (r) => r.outcome))
      for (const outcome of outcomes) assert.oneOf(outcome, ["ok", "VolumeNotFound", "VolumeAlreadyExists"])

      const volumes = yield* assertConsistent(home)
      // The original volume lives on under exactly one name, with its data and snapshot.
      const holders = yield* Effect.filter(volumes, (vol) =>
        Effect.flatMap(Volume.get(vol.name), (got) => got.fs().exists("/a.txt"))).pipe(withHome(home))
      assert.lengthOf(holders, 1, `one volume holds the data; outcomes ${outcomes.join(", ")}`)
      const owner = holders[0]!.name
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* (yield* Volume.get(owner)).fs().readToString("/a.txt"), "alpha")
        assert.deepStrictEqual((yield* Volume.snapshots(owner)).map((s) => s.name), ["s"])
        for (const vol of volumes.filter((v) => v.name !== owner)) {
          assert.deepStrictEqual(yield* Volume.snapshots(vol.name), [], `${vol.name} has no snapshots`)
        }
      }).pipe(withHome(home))
      // Every successful create made one of the other volumes; every successful rename moved the data once.
      const creates = outcomes.filter((outcome, i) => commands[i]![0] === "create" && outcome === "ok").length
      assert.strictEqual(volumes.length, 1 + creates)
    }), { timeout: 120_000 })
})
