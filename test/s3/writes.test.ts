/**
 * Writes from two machines through a store that delays or fails chosen requests: usage
 * stays exact (or is recounted), a write either succeeds or leaves nothing, one path is
 * never both a file and a directory, an interrupted write keeps the counter right.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { RECOUNT_EVERY } from "../../src/internal/s3/usage.js"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeHandle } from "../../src/Volume.js"
import type { Machine } from "./machines.js"
import { literal, objectPath, pair } from "./machines.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("writes")

/** Bytes of the volume's files according to a listing (the truth the counter must match). */
const listedBytes = (m: Machine, vol: VolumeHandle) =>
  Effect.gen(function*() {
    const cloud = vol.info.cloud
    assert.isTrue(cloud._tag === "Some")
    if (cloud._tag !== "Some") return 0
    const listing = yield* Effect.orDie(m.s3.list(cloud.value.prefix))
    return listing.objects.reduce((sum, o) => (o.key.endsWith("/") ? sum : sum + o.size), 0)
  })

const usedBytes = (m: Machine, name: string) => Effect.map(m.run(Volume.get(name)), (v) => v.usedBytes)

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)

/** The data key of `path` in `vol`. */
const keyOf = (vol: VolumeHandle, path: string) =>
  vol.info.cloud._tag === "Some" ? vol.info.cloud.value.prefix + path : path

describeS3("S3Backend writes under concurrency and faults", () => {
  it.effect("names with control characters are InvalidPath on every backend (fault 3)", () =>
    Effect.gen(function*() {
      const vol = yield* Volume.builder("ctl").create()
      for (const name of ["a\u0001b", "dir\u001f/x", "tab\there", "line\nbreak"]) {
        const error = yield* Effect.flip(vol.fs().write(name, "x"))
        assert.strictEqual(error._tag, "InvalidPath", JSON.stringify(name))
        assert.strictEqual((yield* Effect.flip(vol.fs().mkdir(name)))._tag, "InvalidPath")
      }
    }).pipe(Effect.provide(MemoryBackend.layer)))

  it.scopedLive("control characters never reach the store, so trees stay removable (fault 3)", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      const vol = yield* b.run(Volume.builder("ctl").create())
      yield* vol.fs().write("d/ok.txt", "ok")
      assert.strictEqual((yield* Effect.flip(vol.fs().write("d/bad\u0007.txt", "x")))._tag, "InvalidPath")
      yield* vol.fs().removeDir("d")
      yield* b.run(Volume.remove("ctl"))
    }), { timeout: 60_000 })

  it.scopedLive("a write whose usage update the store keeps refusing still succeeds whole (fault 4)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 1 })
      yield* b.run(Volume.builder("busy").create())
      const vol = yield* a.run(Volume.get("busy"))
      // Every compare-and-swap of the record fails: the counter cannot move for a while.
      const refused = proxy.rule({
        method: "PUT",
        path: objectPath(a.layout.recordKey("busy")),
        action: { _tag: "fail", status: 503, code: "SlowDown" }
      })
      const outcomes = yield* Effect.forEach(
        ["1.txt", "2.txt", "3.txt", "4.txt"],
        (p) => Effect.either(vol.fs().write(p, bytes(1000, 1))),
        { concurrency: "unbounded" }
      )
      // Each write succeeded, or left nothing behind.
      for (const [i, outcome] of outcomes.entries()) {
        const exists = yield* vol.fs().exists(`${i + 1}.txt`)
        assert.strictEqual(exists, outcome._tag === "Right", `write ${i + 1}: ${outcome._tag}`)
      }
      yield* refused.remove
      // The delta that could not be applied travels with the next one.
      yield* vol.fs().write("5.txt", bytes(10, 2))
      assert.strictEqual(yield* usedBytes(b, "busy"), yield* listedBytes(b, vol))
    }), { timeout: 120_000 })

  it.scopedLive("32 concurrent writers on two machines: all succeed and usage is exact (fault 4)", () =>
    Effect.gen(function*() {
      const { a, b } = yield* pair(bucket, uniquePrefix())
      yield* b.run(Volume.builder("many").create())
      const [va, vb] = yield* Effect.all([a.run(Volume.get("many")), b.run(Volume.get("many"))])
      yield* Effect.forEach(
        Array.from({ length: 32 }, (_, i) => i),
        (i) => (i % 2 === 0 ? va : vb).fs().write(`f${i}.bin`, bytes(100 + i, i)),
        { concurrency: "unbounded", discard: true }
      )
      assert.strictEqual((yield* vb.fs().list("/")).length, 32)
      assert.strictEqual(yield* usedBytes(b, "many"), yield* listedBytes(b, vb))
    }), { timeout: 120_000 })

  it.scopedLive("a late overwrite of a file another machine replaced meanwhile keeps usage exact (fault 5)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      const vb = yield* b.run(Volume.builder("over").create())
      yield* vb.fs().write("f.bin", bytes(1000, 1))
      const va = yield* a.run(Volume.get("over"))
      // A probes f.bin (1000 bytes), then its PUT arrives after B's overwrite.
      const late = proxy.rule({ method: "PUT", path: objectPath(keyOf(va, "f.bin")), action: { _tag: "hold" }, times: 1 })
      const slow = yield* Effect.fork(va.fs().write("f.bin", bytes(2000, 2)))
      yield* late.held
      yield* vb.fs().write("f.bin", bytes(3000, 3))
      yield* late.release
      yield* Fiber.join(slow)
      assert.strictEqual((yield* vb.fs().read("f.bin")).byteLength, 2000)
      assert.strictEqual(yield* usedBytes(b, "over"), yield* listedBytes(b, vb))
    }), { timeout: 60_000 })

  it.scopedLive("usage is recountable on demand from a listing (fault 5)", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      const vol = yield* b.run(Volume.builder("drift").create())
      yield* vol.fs().write("a.bin", bytes(500, 1))
      // Objects the counter never heard of (a writer killed between its PUT and the update).
      yield* Effect.orDie(b.s3.put(keyOf(vol, "ghost.bin"), bytes(700, 9)))
      assert.strictEqual(yield* usedBytes(b, "drift"), 500)
      const report = yield* b.run(S3Backend.recount(vol))
      assert.deepStrictEqual(report, { logicalBytes: 1200, allocatedBytes: 1200, files: 2, pendingUploads: 0 })
      assert.strictEqual(yield* usedBytes(b, "drift"), 1200)
    }), { timeout: 60_000 })

  it.scopedLive("a counter that would go below zero is recounted (drift detected, fault 5)", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      const vol = yield* b.run(Volume.builder("neg").create())
      yield* vol.fs().write("a.bin", bytes(500, 1))
      // Behind the counter's back: a file it never counted appears, a counted one vanishes.
      yield* Effect.orDie(b.s3.put(keyOf(vol, "ghost.bin"), bytes(700, 9)))
      yield* Effect.orDie(b.s3.delete(keyOf(vol, "a.bin")))
      yield* vol.fs().write("c.bin", bytes(50, 3))
      assert.strictEqual(yield* usedBytes(b, "neg"), 550, "the counter does not know yet")
      // Removing the ghost would take the counter to 550 - 700 < 0: a sure drift, recounted.
      yield* vol.fs().remove("ghost.bin")
      assert.strictEqual(yield* usedBytes(b, "neg"), 50)
    }), { timeout: 60_000 })

  it.scopedLive("a drifted counter is recounted within RECOUNT_EVERY changes (fault 5)", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      const vol = yield* b.run(Volume.builder("bounded").create())
      yield* Effect.orDie(b.s3.put(keyOf(vol, "ghost.bin"), bytes(700, 9)))
      // Each write changes the counter (the size alternates), none of them knows the ghost.
      for (let i = 1; i <= RECOUNT_EVERY; i++) yield* vol.fs().write("f.txt", bytes(1 + (i % 2), 1))
      assert.strictEqual(yield* usedBytes(b, "bounded"), yield* listedBytes(b, vol))
      assert.strictEqual(yield* usedBytes(b, "bounded"), 701)
    }), { timeout: 120_000 })

  it.scopedLive("concurrent write(x) and write(x/y.txt): never both; x is one kind (fault 8)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      const vb = yield* b.run(Volume.builder("kind").create())
      const va = yield* a.run(Volume.get("kind"))
      // A's file PUT at x arrives after B created the directory x/ and wrote x/y.txt.
      const late = proxy.rule({ method: "PUT", path: objectPath(keyOf(va, "x")), action: { _tag: "hold" }, times: 1 })
      const file = yield* Effect.fork(Effect.either(va.fs().write("x", "file")))
      yield* late.held
      const dir = yield* Effect.either(vb.fs().write("x/y.txt", "in a directory"))
      yield* late.release
      const fileOutcome = yield* Fiber.join(file)
      assert.isFalse(fileOutcome._tag === "Right" && dir._tag === "Right", "both writes succeeded")
      const listed = yield* vb.fs().list("/")
      assert.deepStrictEqual(listed.map((e) => e.path), ["/x"])
      const kind = listed[0]!.kind
      assert.strictEqual(kind, dir._tag === "Right" ? "directory" : "file")
      if (fileOutcome._tag === "Left") assert.strictEqual(fileOutcome.left._tag, "VolumeFsError")
      assert.strictEqual(yield* usedBytes(b, "kind"), yield* listedBytes(b, vb))
    }), { timeout: 60_000 })

  it.scopedLive("a directory created late under a new file undoes itself (fault 8)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      const vb = yield* b.run(Volume.builder("kind2").create())
      const va = yield* a.run(Volume.get("kind2"))
      // A's directory marker x/ arrives after B wrote the file x.
      const late = proxy.rule({
        method: "PUT",
        path: new RegExp(`${literal(keyOf(va, "x/"))}(\\?|$)`),
        action: { _tag: "hold" },
        times: 1
      })
      const dir = yield* Effect.fork(Effect.either(va.fs().write("x/y.txt", "in a directory")))
      yield* late.held
      const file = yield* Effect.either(vb.fs().write("x", "file"))
      yield* late.release
      const dirOutcome = yield* Fiber.join(dir)
      assert.isFalse(file._tag === "Right" && dirOutcome._tag === "Right", "both writes succeeded")
      const listed = yield* vb.fs().list("/")
      assert.deepStrictEqual(listed.map((e) => [e.path, e.kind]), [["/x", file._tag === "Right" ? "file" : "directory"]])
    }), { timeout: 60_000 })

  it.scopedLive("an interrupt after the object landed still moves the counter (issue 16, item 7)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      yield* b.run(Volume.builder("intr").create())
      const va = yield* a.run(Volume.get("intr"))
      yield* va.fs().write("base.bin", bytes(100, 1))
      // The file's PUT lands; the counter's compare-and-swap is held, then the writer is interrupted.
      const cas = proxy.rule({ method: "PUT", path: objectPath(a.layout.recordKey("intr")), action: { _tag: "hold" }, times: 1 })
      const writer = yield* Effect.fork(va.fs().write("new.bin", bytes(4000, 2)))
      yield* cas.held
      const interrupting = yield* Effect.fork(Fiber.interrupt(writer))
      yield* cas.release
      yield* Fiber.join(interrupting)
      const vb = yield* b.run(Volume.get("intr"))
      assert.strictEqual(vb.usedBytes, yield* listedBytes(b, vb))
      assert.strictEqual(vb.usedBytes, 4100)
    }), { timeout: 60_000 })
})
