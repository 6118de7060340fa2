/**
 * How the cloud backend fails: within a bounded time when the store does not answer, with
 * the `StorageError` reason that says what kind of failure it was, and with the library's
 * own error types where one applies (a volume removed meanwhile, a path too long, a bucket
 * that is gone).
 */
import { DeleteBucketCommand } from "@aws-sdk/client-s3"
import { assert, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Volume from "../../src/Volume.js"
import type { VolumeHandle } from "../../src/Volume.js"
import { machine, objectPath, pair } from "./machines.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("errors")

const keyOf = (vol: VolumeHandle, path: string) =>
  vol.info.cloud._tag === "Some" ? vol.info.cloud.value.prefix + path : path

/** A path of exactly `bytes` bytes: 200-byte segments, then the rest. */
const pathOf = (bytes: number) => {
  const full = Math.floor((bytes - 1) / 201)
  return `${"s".repeat(200)}/`.repeat(full) + "f".repeat(bytes - 201 * full)
}

/** The failure of `self`, which must be a `StorageError` with `reason`. */
const storageFailure = <A, E extends { readonly _tag: string }, R>(
  self: Effect.Effect<A, E, R>,
  reason: string,
  what: string
) =>
  Effect.map(Effect.flip(self), (error) => {
    assert.strictEqual(error._tag, "StorageError", `${what}: ${String(error)}`)
    assert.strictEqual((error as { readonly reason?: string }).reason, reason, `${what}: ${String(error)}`)
  })

describeS3("S3Backend failures", () => {
  it.scopedLive("a frozen gateway fails reads and writes with StorageError Unavailable, not a hang (fault 9)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 2, requestTimeoutMillis: 300 })
      const vb = yield* b.run(Volume.builder("frozen").create())
      yield* vb.fs().write("f.txt", "data")
      const va = yield* a.run(Volume.get("frozen"))
      proxy.freezeAll()
      yield* storageFailure(va.fs().read("f.txt"), "Unavailable", "read")
      yield* storageFailure(va.fs().write("g.txt", "new"), "Unavailable", "write")
      yield* storageFailure(Stream.runDrain(va.fs().readStream("f.txt")), "Unavailable", "readStream")
      yield* storageFailure(a.run(Volume.list()), "Unavailable", "list")
      proxy.thaw()
      assert.strictEqual(yield* va.fs().readToString("f.txt"), "data")
    }), { timeout: 60_000 })

  it.scopedLive("a body that stops arriving fails readStream with StorageError Unavailable (fault 9)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix(), { maxAttempts: 2, requestTimeoutMillis: 300 })
      const vb = yield* b.run(Volume.builder("stall").create())
      yield* vb.fs().write("f.bin", new Uint8Array(256 * 1024).fill(5))
      const va = yield* a.run(Volume.get("stall"))
      proxy.rule({ method: "GET", path: objectPath(keyOf(va, "f.bin")), action: { _tag: "stall", afterBytes: 1000 } })
      yield* storageFailure(Stream.runDrain(va.fs().readStream("f.bin")), "Unavailable", "stalled readStream")
    }), { timeout: 60_000 })

  it.scopedLive("failures carry their kind: Busy, Unavailable, Conflict, Corrupt (issue 16, item 8)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix, { maxAttempts: 1 })
      const vb = yield* b.run(Volume.builder("kinds").create())
      yield* vb.fs().write("f.txt", "data")
      const va = yield* a.run(Volume.get("kinds"))
      // Throttled.
      const slow = proxy.rule({ method: "GET", path: objectPath(keyOf(va, "f.txt")), action: { _tag: "fail", status: 503, code: "SlowDown" } })
      yield* storageFailure(va.fs().read("f.txt"), "Busy", "throttled read")
      yield* slow.remove
      // Every conditional PUT of one file loses its race.
      const lost = proxy.rule({ method: "PUT", path: objectPath(keyOf(va, "f.txt")), action: { _tag: "fail", status: 412, code: "PreconditionFailed" } })
      yield* storageFailure(va.fs().write("f.txt", "mine"), "Conflict", "write that always loses")
      yield* lost.remove
      // Nobody listening.
      const closed = yield* machine(bucket, prefix, { endpoint: "http://127.0.0.1:1", maxAttempts: 1 })
      yield* storageFailure(closed.run(Volume.get("kinds")), "Unavailable", "connection refused")
      // A record that is not valid.
      yield* Effect.orDie(b.s3.put(b.layout.recordKey("kinds"), new TextEncoder().encode("{ not json")))
      yield* storageFailure(b.run(Volume.get("kinds")), "Corrupt", "invalid record")
    }), { timeout: 60_000 })

  it.scopedLive("a usage update answered 404 is VolumeNotFound and the written file is deleted again (fault 13)", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      yield* b.run(Volume.builder("gone").create())
      const va = yield* a.run(Volume.get("gone"))
      // The record vanishes while the write is in flight: its compare-and-swap is answered 404.
      proxy.rule({ method: "PUT", path: objectPath(a.layout.recordKey("gone")), action: { _tag: "fail", status: 404, code: "NoSuchKey" } })
      const error = yield* Effect.flip(va.fs().write("f.txt", "orphan?"))
      assert.strictEqual(error._tag, "VolumeNotFound")
      const left = yield* Effect.orDie(b.s3.head(keyOf(va, "f.txt")))
      assert.isTrue(left._tag === "None", "the object written was deleted again")
    }), { timeout: 60_000 })

  it.scopedLive("an over-long path is InvalidPath naming the path budget (fault 13)", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      const vol = yield* b.run(Volume.builder("long").create())
      const prefixBytes = Buffer.byteLength(keyOf(vol, ""))
      const budget = 1024 - prefixBytes - 1
      const tooLong = pathOf(budget + 1)
      for (const op of [vol.fs().write(tooLong, "x"), vol.fs().read(tooLong), vol.fs().mkdir(tooLong), vol.fs().stat(tooLong)]) {
        const error = yield* Effect.flip(op)
        assert.strictEqual(error._tag, "InvalidPath")
        if (error._tag === "InvalidPath") assert.include(error.reason, `path budget is ${budget} bytes`)
      }
      // Exactly the budget fits.
      yield* vol.fs().write(pathOf(budget), "x")
      // A tree copy whose deepest object would not fit below the target is refused up front.
      const deep = pathOf(budget - 9)
      yield* vol.fs().write(`t/${deep}/x`, "x")
      assert.strictEqual((yield* Effect.flip(vol.fs().copy("t", "t-with-a-longer-name")))._tag, "InvalidPath")
    }), { timeout: 60_000 })

  it.scopedLive("with the bucket deleted every operation says StorageError Unavailable (fault 13)", () =>
    Effect.gen(function*() {
      const own = `${bucket}-gone`
      const m = yield* machine(own, uniquePrefix())
      const vol = yield* m.run(Volume.builder("v").create())
      yield* vol.fs().write("d/f.txt", "x")
      const all = yield* Effect.orDie(m.s3.list(""))
      yield* Effect.orDie(m.s3.deleteMany(all.objects.map((o) => o.key)))
      yield* Effect.promise(() => m.s3.sdk.send(new DeleteBucketCommand({ Bucket: own })))
      const checks = [
        ["get", m.run(Volume.get("v"))],
        ["list", m.run(Volume.list())],
        ["create", m.run(Volume.builder("w").create())],
        ["remove", m.run(Volume.remove("v"))],
        ["read", vol.fs().read("d/f.txt")],
        ["stat", vol.fs().stat("d")],
        ["write", vol.fs().write("g.txt", "x")],
        ["list files", vol.fs().list("/")]
      ] as const
      for (const [what, op] of checks) yield* storageFailure(op as Effect.Effect<unknown, { readonly _tag: string }>, "Unavailable", what)
    }), { timeout: 60_000 })
})
