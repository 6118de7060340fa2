/**
 * Tree operations interrupted by a failing store are finished by a retry (intent records),
 * and a write landing in a directory another machine renamed away leaves a directory that
 * every operation agrees exists.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Volume from "../../src/Volume.js"
import type { VolumeHandle } from "../../src/Volume.js"
import type { Machine } from "./machines.js"
import { objectPath, pair } from "./machines.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("trees")

const listedBytes = (m: Machine, vol: VolumeHandle) =>
  Effect.gen(function*() {
    const prefix = vol.info.cloud._tag === "Some" ? vol.info.cloud.value.prefix : ""
    const listing = yield* Effect.orDie(m.s3.list(prefix))
    return listing.objects.reduce((sum, o) => (o.key.endsWith("/") ? sum : sum + o.size), 0)
  })

const usedBytes = (m: Machine, name: string) => Effect.map(m.run(Volume.get(name)), (v) => v.usedBytes)

const keyOf = (vol: VolumeHandle, path: string) =>
  vol.info.cloud._tag === "Some" ? vol.info.cloud.value.prefix + path : path

const FILES = ["src/a.txt", "src/b.txt", "src/d/c.txt", "src/d/e/f.txt"]

const fill = (vol: VolumeHandle) => Effect.forEach(FILES, (p) => vol.fs().write(p, `content of ${p}`), { discard: true })

describeS3("S3Backend tree operations under faults", () => {
  it.scopedLive("an interrupted tree rename is finished by its retry (fault 6)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 1 })
      const vb = yield* b.run(Volume.builder("mv").create())
      yield* fill(vb)
      const va = yield* a.run(Volume.get("mv"))
      // Everything is copied, then the store fails the deletion of the sources.
      const down = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "fail", status: 503, code: "SlowDown" } })
      const failed = yield* Effect.flip(va.fs().rename("src", "dst"))
      assert.strictEqual(failed._tag, "StorageError")
      yield* down.remove
      // The retry rolls the rename forward instead of failing with DirectoryNotEmpty.
      yield* va.fs().rename("src", "dst")
      assert.deepStrictEqual((yield* vb.fs().list("/")).map((e) => e.path), ["/dst"])
      for (const p of FILES) {
        const moved = p.replace(/^src/, "dst")
        assert.strictEqual(yield* vb.fs().readToString(moved), `content of ${p}`)
      }
      assert.strictEqual(yield* usedBytes(b, "mv"), yield* listedBytes(b, vb))
    }), { timeout: 60_000 })

  it.scopedLive("an interrupted tree copy is finished by its retry with exact usage (fault 6)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 1 })
      const vb = yield* b.run(Volume.builder("cp").create())
      yield* fill(vb)
      const va = yield* a.run(Volume.get("cp"))
      // One object of the copy fails: the target is left half-filled.
      const down = proxy.rule({ method: "PUT", path: objectPath(keyOf(va, "dst/d/c.txt")), action: { _tag: "fail", status: 500, code: "InternalError" } })
      assert.strictEqual((yield* Effect.flip(va.fs().copy("src", "dst")))._tag, "StorageError")
      yield* down.remove
      // The retry finishes the copy instead of failing with AlreadyExists.
      yield* va.fs().copy("src", "dst")
      for (const p of FILES) {
        assert.strictEqual(yield* vb.fs().readToString(p.replace(/^src/, "dst")), `content of ${p}`)
        assert.strictEqual(yield* vb.fs().readToString(p), `content of ${p}`)
      }
      assert.strictEqual(yield* usedBytes(b, "cp"), yield* listedBytes(b, vb))
    }), { timeout: 60_000 })

  it.scopedLive("an interrupted removeDir leaves no phantom usage after its retry (fault 5/6)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 1 })
      const vb = yield* b.run(Volume.builder("rd").create())
      yield* fill(vb)
      yield* vb.fs().write("keep.txt", "keep")
      const va = yield* a.run(Volume.get("rd"))
      // The contents are deleted, then the store fails the directory's own marker.
      const down = proxy.rule({ method: "DELETE", path: objectPath(keyOf(va, "src/")), action: { _tag: "fail", status: 503, code: "SlowDown" } })
      assert.strictEqual((yield* Effect.flip(va.fs().removeDir("src")))._tag, "StorageError")
      yield* down.remove
      yield* va.fs().removeDir("src")
      assert.deepStrictEqual((yield* vb.fs().list("/")).map((e) => e.path), ["/keep.txt"])
      assert.strictEqual(yield* usedBytes(b, "rd"), 4)
    }), { timeout: 60_000 })

  it.scopedLive("a write landing in a directory renamed meanwhile leaves a directory that exists (fault 7)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      const vb = yield* b.run(Volume.builder("late").create())
      yield* vb.fs().write("src/a.txt", "a")
      const va = yield* a.run(Volume.get("late"))
      const late = proxy.rule({ method: "PUT", path: objectPath(keyOf(va, "src/late.txt")), action: { _tag: "hold" }, times: 1 })
      const writer = yield* Effect.fork(va.fs().write("src/late.txt", "late"))
      yield* late.held
      yield* vb.fs().rename("src", "dst")
      yield* late.release
      yield* Fiber.join(writer)
      // Whatever is listed exists, for every operation.
      const listed = yield* vb.fs().list("/")
      for (const entry of listed) {
        assert.isTrue(yield* vb.fs().exists(entry.path), entry.path)
        assert.strictEqual((yield* vb.fs().stat(entry.path)).kind, entry.kind)
      }
      assert.deepStrictEqual(listed.map((e) => [e.path, e.kind]), [["/dst", "directory"], ["/src", "directory"]])
      assert.deepStrictEqual((yield* vb.fs().list("/src")).map((e) => e.path), ["/src/late.txt"])
      yield* vb.fs().removeDir("/src")
      assert.deepStrictEqual((yield* vb.fs().list("/")).map((e) => e.path), ["/dst"])
      assert.strictEqual(yield* usedBytes(b, "late"), yield* listedBytes(b, vb))
    }), { timeout: 60_000 })
})
