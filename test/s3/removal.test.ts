/**
 * Removing volumes with two machines and a store that delays or fails requests: a slow
 * remover never touches a newer volume of the same name, and a removal that failed half-way
 * is finished by a retry or by `S3Backend.cleanup`.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import type { Machine } from "./machines.js"
import { machine, objectPath, pair } from "./machines.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("removal")

/** Every object the store holds below `prefix` (data, bookkeeping and records). */
const objectsBelow = (m: Machine, prefix: string) =>
  Effect.map(Effect.orDie(m.s3.list(prefix)), (listing) => listing.objects.map((o) => o.key))

describeS3("S3Backend removal under concurrency and faults", () => {
  it.scopedLive("a slow remove never deletes a newer volume of the same name (fault 1)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix)
      yield* b.run(Effect.flatMap(Volume.builder("x").create(), (v) => v.fs().write("old.txt", "old")))
      // A reads the record of x; its destructive request on the record (whatever the method)
      // arrives late.
      const late = proxy.rule({
        method: ["PUT", "DELETE"],
        path: objectPath(a.layout.recordKey("x")),
        action: { _tag: "hold" },
        times: 1
      })
      const slowRemove = yield* Effect.fork(Effect.either(a.run(Volume.remove("x"))))
      yield* late.held
      // Meanwhile B removes x, creates a new x and writes to it.
      yield* b.run(Volume.remove("x"))
      const fresh = yield* b.run(Volume.builder("x").create())
      yield* fresh.fs().write("new.txt", "B's data")
      yield* late.release
      const outcome = yield* Fiber.join(slowRemove)
      if (outcome._tag === "Left") assert.strictEqual(outcome.left._tag, "VolumeNotFound")
      // B's volume and its file survive A's late request.
      const again = yield* b.run(Volume.get("x"))
      assert.strictEqual(yield* again.fs().readToString("new.txt"), "B's data")
      assert.strictEqual(again.usedBytes, "B's data".length)
    }), { timeout: 60_000 })

  it.scopedLive("a remove that failed half-way is finished by a retry (fault 2)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix, { maxAttempts: 2 })
      const vol = yield* b.run(Volume.builder("x").create())
      yield* Effect.forEach(["a.txt", "d/b.txt", "d/e/c.txt"], (p) => vol.fs().write(p, p), { discard: true })
      // The gateway fails every batch delete: the data cannot be deleted.
      const down = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "fail", status: 503, code: "ServiceUnavailable" } })
      const failed = yield* Effect.flip(a.run(Volume.remove("x")))
      assert.strictEqual(failed._tag, "StorageError")
      if (failed._tag === "StorageError") assert.strictEqual(failed.reason, "Busy")
      // The volume is gone for everyone already; its data is still stored.
      assert.strictEqual((yield* Effect.flip(b.run(Volume.get("x"))))._tag, "VolumeNotFound")
      assert.isAbove((yield* objectsBelow(b, `${prefix}/data/`)).length, 0)
      yield* down.remove
      // The retry finishes the removal instead of saying VolumeNotFound.
      yield* a.run(Volume.remove("x"))
      assert.deepStrictEqual(yield* objectsBelow(b, `${prefix}/data/`), [])
      // Nothing is left to finish now.
      assert.strictEqual((yield* Effect.flip(a.run(Volume.remove("x"))))._tag, "VolumeNotFound")
      // The name can be created again, empty.
      const again = yield* b.run(Volume.builder("x").create())
      assert.deepStrictEqual(yield* again.fs().list("/"), [])
    }), { timeout: 60_000 })

  it.scopedLive("S3Backend.cleanup reclaims what a failed remove left (fault 2)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix, { maxAttempts: 1 })
      const keep = yield* b.run(Volume.builder("keep").create())
      yield* keep.fs().write("k.txt", "keep me")
      const vol = yield* b.run(Volume.builder("gone").create())
      yield* Effect.forEach(["1.txt", "2/2.txt"], (p) => vol.fs().write(p, p), { discard: true })
      const down = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "fail", status: 503, code: "ServiceUnavailable" } })
      yield* Effect.flip(a.run(Volume.remove("gone")))
      yield* down.remove
      const reclaimed = yield* b.run(S3Backend.cleanup())
      assert.strictEqual(reclaimed.incarnations, 1)
      assert.strictEqual(reclaimed.objects, 3, "two files and the directory marker")
      const left = yield* objectsBelow(b, `${prefix}/data/`)
      assert.isTrue(left.every((key) => key.startsWith(`${prefix}/data/keep/`)), left.join(", "))
      assert.strictEqual(yield* keep.fs().readToString("k.txt"), "keep me")
      // Idempotent: a second cleanup finds nothing.
      assert.deepStrictEqual(yield* b.run(S3Backend.cleanup()), { incarnations: 0, objects: 0, uploads: 0 })
    }), { timeout: 60_000 })

  it.scopedLive("cleanup never takes another store's objects below its prefix for leftovers", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const outer = yield* machine(bucket, prefix)
      // A second store whose prefix lies inside the first one's data area.
      const inner = yield* machine(bucket, `${prefix}/data/x`)
      const vol = yield* inner.run(Volume.builder("v").create())
      yield* vol.fs().write("f.txt", "inner store")
      yield* outer.run(Volume.builder("x").create())
      yield* outer.run(Volume.remove("x"))
      yield* outer.run(S3Backend.cleanup({ uploadGrace: 0 }))
      assert.strictEqual(yield* vol.fs().readToString("f.txt"), "inner store")
    }), { timeout: 60_000 })

  it.scopedLive("a sweep running while a fork copies never takes the fork's objects (its record comes last)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix)
      const source = yield* b.run(Volume.builder("src").create())
      yield* source.fs().write("seed.txt", "seed")
      // A forks; its record write (the last step) arrives late. Meanwhile B sweeps everything.
      const late = proxy.rule({
        method: "PUT",
        path: objectPath(a.layout.recordKey("copy")),
        action: { _tag: "hold" },
        times: 1
      })
      const forking = yield* Effect.fork(a.run(Volume.fork("src", "copy")))
      yield* late.held
      const reclaimed = yield* b.run(S3Backend.cleanup({ uploadGrace: 0 }))
      assert.strictEqual(reclaimed.incarnations, 0)
      yield* late.release
      yield* Fiber.join(forking)
      const copy = yield* b.run(Volume.get("copy"))
      assert.strictEqual(yield* copy.fs().readToString("seed.txt"), "seed")
      // The marker goes with the fork's success: a later sweep finds nothing to protect or take.
      assert.deepStrictEqual(yield* b.run(S3Backend.cleanup({ uploadGrace: 0 })), { incarnations: 0, objects: 0, uploads: 0 })
      assert.isFalse((yield* objectsBelow(b, `${prefix}/meta/`)).some((key) => key.endsWith("/pending")))
    }), { timeout: 60_000 })
})
