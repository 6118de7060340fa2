/**
 * A process sharing the home is killed with SIGKILL in the middle of an operation; the
 * next process to open the home must find it consistent: no half volume visible, no
 * stale directory, and the name usable again.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, readdirSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import { TEMP_PREFIX } from "../../src/internal/paths.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { onFirstEntry, spawnWorker } from "./fixtures/child.js"
import { assertConsistent, entries, makeHome, withDatabase, withHome } from "./fixtures/home.js"

/** Every state the killed process left, straight from the database. */
const states = (home: string) =>
  withDatabase(home, (sql) => sql<{ readonly key: string; readonly state: string }>`SELECT key, state FROM volumes`)

describe("LocalBackend crash safety", () => {
  it.scopedLive("killed while a disk image is being built: no volume, nothing left, name free", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.void.pipe(withHome(home)) // the home exists before the worker starts
      const worker = yield* spawnWorker(["create", home, "big", "disk", String(Size.gib(8))])
      // Kill the instant the staging entry appears: the image is still being made.
      yield* onFirstEntry(NodePath.join(home, "staging"), () => process.kill(-worker.pid, "SIGKILL"))
      yield* worker.exit
      assert.deepStrictEqual(yield* states(home), [{ key: "big", state: "creating" }], "killed mid-create")
      assert.lengthOf(entries(NodePath.join(home, "staging")), 1)

      const after = yield* assertConsistent(home)
      assert.deepStrictEqual(after, [])
      yield* Effect.gen(function*() {
        yield* Volume.builder("BIG").disk().size(Size.mib(64)).create()
      }).pipe(withHome(home))
      assert.lengthOf(yield* assertConsistent(home), 1)
    }))

  it.scopedLive("killed during a streaming write: the old content stays and no temporary file remains", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const dataDir = yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("notes").create()
        yield* vol.fs().write("docs/readme.txt", "old content")
        return yield* vol.path()
      }).pipe(withHome(home))

      const worker = yield* spawnWorker(["stream", home, "notes", "docs/readme.txt"])
      yield* worker.line((line) => line === "streaming")
      yield* worker.kill
      const leftovers = readdirSync(NodePath.join(dataDir, "docs")).filter((name) => name.startsWith(TEMP_PREFIX))
      assert.lengthOf(leftovers, 1, "the killed writer left its temporary file")

      yield* Effect.gen(function*() {
        const vol = yield* Volume.get("notes")
        assert.strictEqual(yield* vol.fs().readToString("docs/readme.txt"), "old content")
        assert.deepStrictEqual((yield* vol.fs().list("docs")).map((e) => e.path), ["/docs/readme.txt"])
        assert.strictEqual(vol.usedBytes, "old content".length)
      }).pipe(withHome(home))
      assert.deepStrictEqual(readdirSync(NodePath.join(dataDir, "docs")), ["readme.txt"], "no temporary file on disk")
      yield* assertConsistent(home)
    }))

  it.scopedLive("killed while holding a disk volume open: its attachment does not outlive it", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(Size.mib(64)).create()
        yield* vol.fs().write("doc.txt", "old content")
      }).pipe(withHome(home))

      const worker = yield* spawnWorker(["stream", home, "img", "doc.txt"])
      yield* worker.line((line) => line === "streaming")
      const held = yield* withDatabase(home, (sql) => sql<{ readonly holder: string }>`SELECT holder FROM attachments`)
      assert.deepStrictEqual(held.map((row) => row.holder), ["host fs"], "the worker holds the image")
      yield* worker.kill

      yield* Effect.gen(function*() {
        const vol = yield* Volume.get("img")
        assert.strictEqual(yield* vol.fs().readToString("doc.txt"), "old content")
        assert.deepStrictEqual((yield* vol.fs().list("/")).map((e) => e.path), ["/doc.txt"])
        yield* Volume.remove("img")
      }).pipe(withHome(home))
      yield* assertConsistent(home)
    }))

  it.scopedLive("killed while removing: the volume is gone for good and can be created again", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const dataDir = yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("big").create()
        return yield* vol.path()
      }).pipe(withHome(home))
      // Enough files that emptying the trash takes a while.
      for (let d = 0; d < 40; d++) {
        const dir = NodePath.join(dataDir, `d${d}`)
        mkdirSync(dir)
        for (let f = 0; f < 250; f++) writeFileSync(NodePath.join(dir, `f${f}`), "x")
      }

      const worker = yield* spawnWorker(["remove", home, "big"])
      // Kill the instant the data lands in the trash.
      yield* onFirstEntry(NodePath.join(home, "trash"), () => process.kill(-worker.pid, "SIGKILL"))
      yield* worker.exit
      assert.lengthOf(entries(NodePath.join(home, "trash")), 1, "killed before the trash was emptied")
      assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), [])

      assert.deepStrictEqual(yield* assertConsistent(home), [])
      yield* Effect.gen(function*() {
        yield* Volume.get("big").pipe(Effect.flip)
        const again = yield* Volume.builder("big").create()
        assert.deepStrictEqual(yield* again.fs().list("/"), [])
      }).pipe(withHome(home))
    }))

  it.scopedLive("killed at random moments of a create/remove loop: always consistent afterwards", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      for (let round = 0; round < 4; round++) {
        const worker = yield* spawnWorker(["churn", home, "100000"])
        yield* worker.line((line) => line === "ready")
        // Let it run a random number of steps, then kill it wherever it is.
        const steps = 1 + Math.floor(Math.random() * 6)
        yield* worker.line((line) => line === `step ${steps}`)
        yield* Effect.sleep(`${Math.floor(Math.random() * 40)} millis`)
        yield* worker.kill
        const volumes = yield* assertConsistent(home)
        for (const vol of volumes) assert.match(vol.name, /^churn-[0-2]$/)
      }
      yield* Effect.gen(function*() {
        for (const name of ["churn-0", "churn-1", "churn-2"]) {
          yield* Volume.remove(name).pipe(Effect.ignore)
          yield* Volume.builder(name).create()
        }
      }).pipe(withHome(home))
      assert.lengthOf(yield* assertConsistent(home), 3)
    }), { timeout: 300_000 })
})
