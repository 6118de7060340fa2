/**
 * Work a sandbox controls the size of (a directory of 100,000 files), and waits on other
 * processes (SQLite's write lock), must never stall the process: other fibers keep making
 * progress while it runs, and long work stops when interrupted. No timing assertions: a
 * ticking fiber must advance during the operation.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Ref, Schedule } from "effect"
import { spawn } from "node:child_process"
import { mkdirSync, readdirSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import { createInterface } from "node:readline"
import { SqlError } from "@effect/sql/SqlError"
import * as Database from "../../src/internal/local/database.js"
import * as Volume from "../../src/Volume.js"
import { assertConsistent, entries, makeHome, withHome } from "./fixtures/home.js"

/** How many ticks the other fiber must make during the operation (it makes none when the loop is blocked). */
const PROGRESS = 20

/** Runs `operation` while a fiber ticks every millisecond; returns its result and the ticks seen meanwhile. */
const withTicker = <A, E, R>(operation: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const ticks = yield* Ref.make(0)
    const ticker = yield* Effect.fork(Effect.forever(Effect.zipRight(Effect.sleep("1 millis"), Ref.update(ticks, (n) => n + 1))))
    // Let the ticker start before the operation does.
    yield* Effect.sleep("5 millis")
    const before = yield* Ref.get(ticks)
    const result = yield* operation
    const during = (yield* Ref.get(ticks)) - before
    yield* Fiber.interrupt(ticker)
    return { result, during }
  })

/** Files of the large directory the tests make. */
const FILES = 20_000

/** Writes `count` small files straight into `dir` (as a sandbox would). */
const plantFiles = (dir: string, count: number) =>
  Effect.sync(() => {
    for (let i = 0; i < count; i++) writeFileSync(NodePath.join(dir, `f${i}`), "x")
  })

describe("LocalBackend and the event loop", () => {
  // 20,000 entries block the loop for most of a second with a synchronous listing (the
  // 3.4 s stall of issue 16 was 100,000); the benchmark measures the full size.
  it.scopedLive("listing and measuring a directory of 20,000 files let other fibers run", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("wide").create()
        yield* plantFiles(yield* vol.path(), FILES)
        const { during, result } = yield* withTicker(vol.fs().list("/"))
        assert.lengthOf(result, FILES)
        assert.isAtLeast(during, PROGRESS, "another fiber made progress during the listing")
        const measured = yield* withTicker(Volume.measure("wide"))
        assert.strictEqual(measured.result.usedBytes, FILES)
        assert.isAtLeast(measured.during, PROGRESS, "another fiber made progress during the measurement")
      }).pipe(withHome(home))
    }), 120_000)

  it.scopedLive("remove of a large volume: Fiber.interrupt returns once the removal is decided; the rest is cleaned up later", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const trash = NodePath.join(home, "trash")
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("big").create()
        const dir = yield* vol.path()
        for (let d = 0; d < FILES / 1000; d++) {
          mkdirSync(NodePath.join(dir, `d${d}`))
          yield* plantFiles(NodePath.join(dir, `d${d}`), 1000)
        }
        const removal = yield* Effect.fork(Volume.remove("big"))
        // Interrupt as soon as the data is in the trash, i.e. while it is being deleted.
        yield* Effect.sync(() => entries(trash).length > 0).pipe(
          Effect.repeat({ until: (moved) => moved, schedule: Schedule.spaced("1 millis") })
        )
        yield* Fiber.interrupt(removal)
        const left = entries(trash)
        assert.lengthOf(left, 1, "the deletion was cut short, not awaited")
        assert.isAbove(readdirSync(NodePath.join(trash, left[0]!, "data")).length, 0)
        // The removal itself happened: the volume is gone for everyone.
        const gone = yield* Effect.either(Volume.get("big"))
        assert.isTrue(gone._tag === "Left" && gone.left._tag === "VolumeNotFound")
      }).pipe(withHome(home))
      // The next open empties the trash.
      assert.deepStrictEqual(yield* assertConsistent(home).pipe(withHome(home)), [])
      assert.deepStrictEqual(entries(trash), [])
    }), 120_000)

  it.scopedLive("waiting for another process's SQLite write lock lets other fibers run", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const database = NodePath.join(home, "db", "volumes.db")
      // The backend is open before the other process takes the lock; then it creates.
      yield* Effect.gen(function*() {
        const holder = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn(process.execPath, [
              "-e",
              `const D = require("better-sqlite3"); const db = new D(${JSON.stringify(database)});
               db.exec("BEGIN IMMEDIATE"); console.log("locked");
               setTimeout(() => { db.exec("COMMIT"); process.exit(0) }, 1500)`
            ], { stdio: ["ignore", "pipe", "inherit"] })
          ),
          (child) => Effect.sync(() => child.kill("SIGKILL"))
        )
        yield* Effect.async<void>((resume) => {
          createInterface({ input: holder.stdout! }).on("line", (line) => {
            if (line === "locked") resume(Effect.void)
          })
        })
        const { during, result } = yield* withTicker(Volume.builder("waits").create())
        assert.strictEqual(result.name, "waits")
        assert.isAtLeast(during, PROGRESS, "another fiber made progress while create waited for the lock")
      }).pipe(withHome(home))
    }), 60_000)
})

describe("StorageError reasons of the local backend", () => {
  it("a busy database is Busy, a corrupt one Corrupt, a full disk Unavailable", () => {
    const sqlError = (code: string) => new SqlError({ cause: Object.assign(new Error(code), { code }) })
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_BUSY")), "Busy")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_BUSY_SNAPSHOT")), "Busy")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_LOCKED")), "Busy")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_CORRUPT")), "Corrupt")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_NOTADB")), "Corrupt")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_FULL")), "Unavailable")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_CONSTRAINT_PRIMARYKEY")), "Conflict")
    assert.strictEqual(Database.reasonOf(sqlError("SQLITE_MISMATCH")), "Unknown")
  })
})
