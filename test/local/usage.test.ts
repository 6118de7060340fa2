/**
 * The usage account of directory volumes (docs/design.md, "Usage and quota accounting"):
 * `get` and `list` read the account instead of walking the tree, the library's own writes
 * keep it exact, and it is re-measured when something the library did not see may have
 * changed the files (a sandbox held the volume, a writer crashed) or on `measure`.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Option, TestClock } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import { LocalAttachments } from "../../src/internal/local/attachments.js"
import * as Volume from "../../src/Volume.js"
import { spawnWorker } from "./fixtures/child.js"
import { assertConsistent, makeHome, withHome } from "./fixtures/home.js"

const KiB = 1024

/** The full usage figures of a handle. */
const usageOf = (handle: Volume.VolumeHandle) => {
  const usage = handle.info.usage
  assert.isDefined(usage, "a directory volume reports full usage")
  return { logicalBytes: usage!.logicalBytes, allocatedBytes: usage!.allocatedBytes, files: usage!.files }
}

describe("LocalBackend usage account", () => {
  it.scopedLive("get reads the account: a file written behind the library's back shows only after measure", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("acct").create()
        yield* vol.fs().write("known.txt", "12345")
        const dir = yield* vol.path()
        writeFileSync(NodePath.join(dir, "behind-the-back.bin"), new Uint8Array(1000))
        assert.strictEqual((yield* Volume.get("acct")).usedBytes, 5, "get did not walk the tree")
        const listed = (yield* Volume.list()).find((v) => v.name === "acct")
        assert.strictEqual(listed?.usedBytes, 5)
        const measured = yield* Volume.measure("acct")
        assert.strictEqual(measured.usedBytes, 1005)
        assert.strictEqual(usageOf(measured).files, 2)
        assert.strictEqual((yield* Volume.get("acct")).usedBytes, 1005, "the measurement is stored")
      }).pipe(withHome(home))
    }))

  it.scopedLive("the library's own changes keep the account equal to a measurement", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("exact").create()
        const fs = vol.fs()
        yield* fs.write("a.bin", new Uint8Array(10 * KiB))
        yield* fs.write("a.bin", new Uint8Array(3 * KiB)) // overwrite shrinks
        yield* fs.write("dir/sub/b.bin", new Uint8Array(100 * KiB)) // large: through the writer
        yield* fs.write("dir/c.txt", "c")
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("dir/stream.bin")
          yield* sink.write(new Uint8Array(70 * KiB))
          yield* sink.close()
        }))
        yield* fs.copy("dir", "dir-copy")
        yield* fs.copy("a.bin", "dir/c.txt") // a copy over a file replaces it
        yield* fs.rename("dir/stream.bin", "a.bin") // a rename over a file frees it
        yield* fs.remove("dir-copy/c.txt")
        yield* fs.removeDir("dir-copy/sub")
        yield* fs.mkdir("empty")
        const kept = usageOf(yield* Volume.get("exact"))
        const measured = usageOf(yield* Volume.measure("exact"))
        assert.deepStrictEqual(kept, measured)
        // a.bin (70 KiB), dir/sub/b.bin, dir/c.txt (3 KiB), dir-copy/stream.bin (70 KiB)
        assert.strictEqual(measured.logicalBytes, 70 * KiB + 100 * KiB + 3 * KiB + 70 * KiB)
        assert.strictEqual(measured.files, 4)
      }).pipe(withHome(home))
    }))

  it.scopedLive("while a sandbox holds the volume get re-measures; after it lets go the next get is exact again", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("held").create()
        const dir = yield* vol.path()
        // The local layer provides its attachments beside VolumeBackend (as the sandbox runtime finds them).
        const attachments = Option.getOrThrow(yield* Effect.serviceOption(LocalAttachments))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* attachments.acquire("held", { holder: "sandbox api", mode: "rw" })
          writeFileSync(NodePath.join(dir, "by-sandbox.bin"), new Uint8Array(300))
          assert.strictEqual((yield* Volume.get("held")).usedBytes, 300, "re-measured while held")
          writeFileSync(NodePath.join(dir, "more.bin"), new Uint8Array(20))
        }))
        assert.strictEqual((yield* Volume.get("held")).usedBytes, 320, "re-measured after the sandbox let go")
        writeFileSync(NodePath.join(dir, "after.bin"), new Uint8Array(1))
        assert.strictEqual((yield* Volume.get("held")).usedBytes, 320, "then the account is trusted again")
      }).pipe(withHome(home))
    }))

  it.scopedLive("a writer killed with changes not yet counted: the next get re-measures", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const dir = yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("crashy").create()
        return yield* vol.path()
      }).pipe(withHome(home))
      const worker = yield* spawnWorker(["write", home, "crashy", "/w.bin", String(4 * KiB), "-", "hang"])
      yield* worker.line((line) => line === "written")
      yield* worker.kill
      // A change the killed process might not have counted, and one nobody counted.
      writeFileSync(NodePath.join(dir, "planted.bin"), new Uint8Array(7))
      yield* Effect.gen(function*() {
        assert.strictEqual((yield* Volume.get("crashy")).usedBytes, 4 * KiB + 7)
        assert.lengthOf(yield* assertConsistent(home), 1)
      }).pipe(withHome(home))
    }))

  it.scopedLive("two processes writing into a quota'd volume at once cannot both squeeze under the quota", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Volume.builder("shared-quota").quota(1).create().pipe(withHome(home))
      const barrier = NodePath.join(home, "barrier")
      mkdirSync(barrier)
      const workers = yield* Effect.forEach(
        [0, 1, 2, 3],
        (i) => spawnWorker(["write", home, "shared-quota", `/w${i}.bin`, String(600 * KiB), barrier])
      )
      yield* Effect.forEach(workers, (worker) => worker.line((line) => line === "ready"))
      writeFileSync(NodePath.join(barrier, "go"), "")
      const outcomes = yield* Effect.forEach(workers, (worker) => worker.result, { concurrency: "unbounded" })
      assert.deepStrictEqual(outcomes.map((o) => o.outcome).sort(), ["QuotaExceeded", "QuotaExceeded", "QuotaExceeded", "ok"])
      yield* Effect.gen(function*() {
        assert.strictEqual((yield* Volume.get("shared-quota")).usedBytes, 600 * KiB)
        assert.strictEqual((yield* Volume.measure("shared-quota")).usedBytes, 600 * KiB)
      }).pipe(withHome(home))
    }))

  it.scopedLive("a disk volume reports its image's allocation and no file account", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(64).create()
        const got = yield* Volume.get("img")
        assert.isAbove(got.usedBytes, 0)
        assert.isUndefined(got.info.usage)
        assert.isTrue(Option.isSome(vol.diskPath))
      }).pipe(withHome(home))
    }))
})

describe("LocalBackend time", () => {
  // Issue 16 item 10: time comes from the Effect clock, so TestClock drives it.
  it.scoped("createdAt follows the Effect clock", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const at = Date.UTC(2031, 0, 2, 3, 4, 5)
      yield* TestClock.setTime(at)
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("clocked").create()
        assert.strictEqual(DateTime.toEpochMillis(vol.createdAt), at)
        assert.strictEqual(DateTime.toEpochMillis((yield* Volume.get("clocked")).createdAt), at)
      }).pipe(withHome(home))
    }))
})
