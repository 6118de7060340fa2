/**
 * What the conformance suite cannot see: several "machines" (independent clients) on one
 * bucket, more than 1,000 volumes, the number of requests an operation costs, multipart
 * uploads and their abort, ranged reads, and the store failing (injected faults).
 */
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3"
import { assert, it } from "@effect/vitest"
import { Chunk, ConfigProvider, Effect, Either, Layer, Option, Stream } from "effect"
import * as Client from "../../src/internal/s3/client.js"
import type { S3 } from "../../src/internal/s3/client.js"
import { makeService } from "../../src/internal/s3/backend.js"
import * as Layout from "../../src/internal/s3/layout.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { MAX_CHUNK_BYTES } from "../../src/VolumeFs.js"
import { assertSameBytes, bytes, concat, expectFailure, MiB } from "../conformance/support.js"
import { bucketFor, describeS3, settings, uniquePrefix } from "./support.js"

const bucket = bucketFor("backend")

/** A fault the store should seem to have: return an error instead of (or after) the real answer. */
interface Fault {
  readonly command: string
  /** `before`: the request never reaches the server; `after`: it does, the answer is lost. */
  readonly when: "before" | "after"
  readonly status: number
  readonly code: string
  times: number
}

/** One "machine": its own client on the shared bucket and prefix, counting its requests. */
const machine = (
  prefix: string,
  extra: { readonly maxAttempts?: number; readonly endpoint?: string; readonly readPartBytes?: number } = {}
) =>
  Effect.gen(function*() {
    const s3: S3 = yield* Client.make({
      ...settings(bucket, extra),
      ...(extra.readPartBytes === undefined ? {} : { readPartBytes: extra.readPartBytes })
    })
    const requests: Array<string> = []
    const faults: Array<Fault> = []
    s3.sdk.middlewareStack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName ?? "").replace(/Command$/, "")
        requests.push(command)
        const fault = faults.find((f) => f.command === command && f.times > 0)
        const injected = () => {
          fault!.times--
          return Object.assign(new Error(`injected ${fault!.code}`), {
            name: fault!.code,
            $metadata: { httpStatusCode: fault!.status }
          })
        }
        if (fault?.when === "before") throw injected()
        const result = await next(args)
        if (fault?.when === "after") throw injected()
        return result
      },
      { step: "finalizeRequest", name: "testCountAndInject" }
    )
    if (extra.endpoint === undefined) yield* s3.ensureBucket
    const service = makeService(s3, Layout.make(prefix))
    /** Requests made while `self` ran, by command name. */
    const counted = <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.gen(function*() {
        const start = requests.length
        const value = yield* self
        return { value, requests: requests.slice(start) } as const
      })
    return { s3, service, requests, faults, counted, layer: Layer.succeed(VolumeBackend, service) } as const
  })

const count = (requests: ReadonlyArray<string>, command: string) => requests.filter((r) => r === command).length

describeS3("S3Backend against RADOS Gateway", () => {
  it.scopedLive("two machines creating the same name at once: exactly one wins and both see it", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(prefix)
      const b = yield* machine(prefix)
      const attempts = Array.from({ length: 12 }, (_, i) =>
        Volume.builder(i % 2 === 0 ? "shared" : "SHARED").label("by", String(i)).create().pipe(
          Effect.provide(i % 3 === 0 ? a.layer : b.layer),
          Effect.either
        ))
      const results = yield* Effect.all(attempts, { concurrency: "unbounded" })
      assert.lengthOf(results.filter(Either.isRight), 1)
      for (const loser of results.filter(Either.isLeft)) assert.strictEqual(loser.left._tag, "VolumeAlreadyExists")
      const seenByA = yield* Volume.list().pipe(Effect.provide(a.layer))
      const seenByB = yield* Volume.list().pipe(Effect.provide(b.layer))
      assert.deepStrictEqual(seenByA.map((v) => v.labels), seenByB.map((v) => v.labels))
      assert.lengthOf(seenByA, 1)
      // Files written through one machine are read through the other.
      const volA = yield* Volume.get("shared").pipe(Effect.provide(a.layer))
      yield* volA.fs().write("from-a.txt", "hello from a")
      const volB = yield* Volume.get("Shared").pipe(Effect.provide(b.layer))
      assert.strictEqual(yield* volB.fs().readToString("from-a.txt"), "hello from a")
      assert.strictEqual(volB.usedBytes, 12)
    }))

  it.scopedLive("list pages through 1,010 volumes; get, read and remove by name cost O(1) requests", () =>
    Effect.gen(function*() {
      const m = yield* machine(uniquePrefix())
      const names = Array.from({ length: 1010 }, (_, i) => `vol-${String(i).padStart(4, "0")}`)
      yield* Effect.forEach(names, (name) => Volume.builder(name).create(), { concurrency: 48, discard: true }).pipe(
        Effect.provide(m.layer)
      )
      const listed = yield* m.counted(Volume.list().pipe(Effect.provide(m.layer)))
      assert.strictEqual(listed.value.length, 1010)
      assert.deepStrictEqual(listed.value.map((v) => v.name).sort(), names)
      assert.isAtLeast(count(listed.requests, "ListObjectsV2"), 2, "more than one page")

      const got = yield* m.counted(Volume.get("VOL-0777").pipe(Effect.provide(m.layer)))
      assert.strictEqual(got.value.name, "vol-0777")
      assert.deepStrictEqual(got.requests, ["GetObject"], "get is one GET of the record")

      yield* got.value.fs().write("f.txt", "x")
      const read = yield* m.counted(got.value.fs().read("f.txt"))
      // The file and, in parallel, the record (which says whether a restore switched the tree).
      assert.deepStrictEqual(read.requests, ["GetObject", "GetObject"], "read is one round trip: two GETs at once")

      const removed = yield* m.counted(Volume.remove("vol-0777").pipe(Effect.provide(m.layer)))
      // Its snapshots (record + one listing), read + tombstone — the tombstone written under
      // the holders' guard: a guard PUT, a listing of the leases, the guard DELETE
      // (docs/volumes.md, "Holders") — then the sweep of this one name: its incarnations
      // (data, meta, uploads), the live record, the dead incarnation's pending marker (a
      // fork in progress), data and meta, one batch delete.
      assert.isAtMost(removed.requests.length, 15, `remove: ${removed.requests.join(", ")}`)
      assert.strictEqual(count(removed.requests, "ListObjectsV2"), 6, "one listing of the leases, the rest of this volume's own prefixes only")
    }), { timeout: 300_000 })

  it.scopedLive("the default volume: shared by every machine, listed, usable, and not removable", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(prefix)
      const b = yield* machine(prefix)
      const [fromA, fromB] = yield* Effect.all(
        [Volume.getDefault().pipe(Effect.provide(a.layer)), Volume.getDefault().pipe(Effect.provide(b.layer))],
        { concurrency: 2 }
      )
      assert.strictEqual(fromA.name, S3Backend.DEFAULT_VOLUME)
      assert.strictEqual(fromA.createdAt.epochMillis, fromB.createdAt.epochMillis, "one default volume")
      assert.deepStrictEqual((yield* Volume.list().pipe(Effect.provide(a.layer))).map((v) => v.name), ["default"])
      yield* fromA.fs().write("notes/a.txt", "in the default volume")
      assert.strictEqual(yield* fromB.fs().readToString("notes/a.txt"), "in the default volume")
      const refused = yield* Volume.remove("default").pipe(Effect.provide(a.layer), expectFailure("Unsupported"))
      assert.include(refused.message, "default")
      assert.strictEqual((yield* Volume.get("default").pipe(Effect.provide(b.layer))).usedBytes, 21)
    }))

  it.scopedLive("a large writeStream is a multipart upload that reads back through ranged GETs", () =>
    Effect.gen(function*() {
      const m = yield* machine(uniquePrefix())
      const vol = yield* Volume.builder("big").create().pipe(Effect.provide(m.layer))
      const fs = vol.fs()
      const data = bytes(20 * MiB + 5, 3)
      const written = yield* m.counted(Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("dir/big.bin")
        for (let offset = 0; offset < data.byteLength; offset += MiB) yield* sink.write(data.subarray(offset, offset + MiB))
        yield* sink.close()
      })))
      assert.strictEqual(count(written.requests, "CreateMultipartUpload"), 1)
      assert.strictEqual(count(written.requests, "UploadPart"), 3)
      assert.strictEqual(count(written.requests, "CompleteMultipartUpload"), 1)
      assert.strictEqual(
        count(written.requests, "PutObject"),
        3,
        "the directory marker, the record's usage and its lastUsedAt stamp (once a minute), no object PUT"
      )

      const read = yield* m.counted(Stream.runCollect(fs.readStream("dir/big.bin")))
      const chunks = Chunk.toArray(read.value)
      for (const chunk of chunks) assert.isAtMost(chunk.byteLength, MAX_CHUNK_BYTES)
      assertSameBytes(concat(chunks), data)
      assert.strictEqual(count(read.requests, "GetObject"), 4, "the record (which generation), then three 8 MiB ranges")
      assert.strictEqual((yield* Volume.get("big").pipe(Effect.provide(m.layer))).usedBytes, data.byteLength)
    }))

  it.scopedLive("a failed multipart writeStream is aborted: old content, no pending upload, no usage", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const m = yield* machine(prefix)
      const vol = yield* Volume.builder("abort").create().pipe(Effect.provide(m.layer))
      const fs = vol.fs()
      yield* fs.write("f.bin", "old")
      const attempt = yield* m.counted(Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("f.bin")
        for (let i = 0; i < 17; i++) yield* sink.write(bytes(MiB, i))
        return yield* Effect.fail("boom" as const)
      })).pipe(Effect.flip))
      assert.strictEqual(attempt.value, "boom")
      assert.strictEqual(count(attempt.requests, "CreateMultipartUpload"), 1, "an upload was started")
      // Two full parts were handed over; the second may be interrupted before it is sent.
      assert.isAtLeast(count(attempt.requests, "UploadPart"), 1)
      assert.strictEqual(count(attempt.requests, "AbortMultipartUpload"), 1)
      assert.strictEqual(yield* fs.readToString("f.bin"), "old")
      const pending = yield* Effect.promise(() =>
        m.s3.sdk.send(new ListMultipartUploadsCommand({ Bucket: m.s3.bucket, Prefix: prefix }))
      )
      assert.lengthOf(pending.Uploads ?? [], 0)
      assert.strictEqual((yield* Volume.get("abort").pipe(Effect.provide(m.layer))).usedBytes, 3)
    }))

  it.scopedLive("a file replaced while it streams fails the stream instead of mixing versions", () =>
    Effect.gen(function*() {
      // 1 MiB parts, 4 ahead at most: the parts after the first few are requested after the replace.
      const m = yield* machine(uniquePrefix(), { readPartBytes: MiB })
      const fs = (yield* Volume.builder("mix").create().pipe(Effect.provide(m.layer))).fs()
      yield* fs.write("f.bin", bytes(9 * MiB, 1))
      let replaced = false
      const error = yield* fs.readStream("f.bin").pipe(
        Stream.tap(() =>
          replaced ? Effect.void : Effect.zipRight(Effect.sync(() => (replaced = true)), fs.write("f.bin", bytes(9 * MiB, 2)))
        ),
        Stream.runDrain,
        Effect.flip
      )
      assert.strictEqual(error._tag, "VolumeFsError")
      assert.include(error.message, "replaced")
    }))

  it.scopedLive("usage stays exact under concurrent writes (CAS on the record)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(prefix)
      const b = yield* machine(prefix)
      yield* Volume.builder("busy").create().pipe(Effect.provide(a.layer))
      const fsA = (yield* Volume.get("busy").pipe(Effect.provide(a.layer))).fs()
      const fsB = (yield* Volume.get("busy").pipe(Effect.provide(b.layer))).fs()
      yield* Effect.forEach(
        Array.from({ length: 24 }, (_, i) => i),
        (i) => (i % 2 === 0 ? fsA : fsB).write(`f${i}.bin`, new Uint8Array(1000 + i)),
        { concurrency: "unbounded", discard: true }
      )
      const expected = Array.from({ length: 24 }, (_, i) => 1000 + i).reduce((x, y) => x + y, 0)
      assert.strictEqual((yield* Volume.get("busy").pipe(Effect.provide(b.layer))).usedBytes, expected)
    }))

  it.scopedLive("throttling and 5xx on idempotent requests are retried", () =>
    Effect.gen(function*() {
      const m = yield* machine(uniquePrefix())
      const fs = (yield* Volume.builder("retry").create().pipe(Effect.provide(m.layer))).fs()
      yield* fs.write("f.txt", "survives")
      m.faults.push({ command: "GetObject", when: "before", status: 503, code: "SlowDown", times: 2 })
      const read = yield* m.counted(fs.readToString("f.txt"))
      assert.strictEqual(read.value, "survives")
      // Two refused and one answered, plus the record read alongside (docs/cloud.md, "Object layout").
      assert.deepStrictEqual(read.requests, ["GetObject", "GetObject", "GetObject", "GetObject"])
      m.faults.push({ command: "ListObjectsV2", when: "before", status: 500, code: "InternalError", times: 1 })
      assert.deepStrictEqual((yield* fs.list("/")).map((e) => e.path), ["/f.txt"])
    }))

  it.scopedLive("a conditional PUT answered by 5xx is re-read and compared, never blindly retried", () =>
    Effect.gen(function*() {
      const m = yield* machine(uniquePrefix())
      // The create lands but its answer is lost: the creator still wins (its own record is there).
      m.faults.push({ command: "PutObject", when: "after", status: 500, code: "InternalError", times: 1 })
      const vol = yield* Volume.builder("lost-answer").create().pipe(Effect.provide(m.layer))
      assert.strictEqual(vol.name, "lost-answer")
      // The create never reaches the server: nothing is there, so it is tried again.
      m.faults.push({ command: "PutObject", when: "before", status: 503, code: "ServiceUnavailable", times: 1 })
      yield* Volume.builder("never-arrived").create().pipe(Effect.provide(m.layer))
      // A usage CAS whose answer is lost is not applied twice.
      const fs = vol.fs()
      yield* fs.write("a.bin", new Uint8Array(100))
      m.faults.push({ command: "PutObject", when: "after", status: 500, code: "InternalError", times: 2 })
      yield* fs.write("b.bin", new Uint8Array(50))
      assert.strictEqual((yield* Volume.get("lost-answer").pipe(Effect.provide(m.layer))).usedBytes, 150)
      assert.deepStrictEqual((yield* Volume.list().pipe(Effect.provide(m.layer))).map((v) => v.name).sort(), [
        "lost-answer",
        "never-arrived"
      ])
    }))

  it.scopedLive("an unreachable store fails with a StorageError naming the request", () =>
    Effect.gen(function*() {
      const m = yield* machine(uniquePrefix(), { endpoint: "http://127.0.0.1:9", maxAttempts: 2 })
      const error = yield* Volume.get("anything").pipe(Effect.provide(m.layer), expectFailure("StorageError"))
      assert.include(error.message, "GetObject")
      assert.strictEqual(count(m.requests, "GetObject"), 2, "retried once")
      const refused = yield* S3Backend.layer({ ...settings(bucket, { endpoint: "http://127.0.0.1:9" }), maxAttempts: 1 }).pipe(
        Layer.build,
        Effect.flip
      )
      assert.strictEqual(refused._tag, "StorageError")
      assert.include(refused.message, "HeadBucket")
    }))

  it.scopedLive("layerConfig reads EFFECT_VOLUMES_S3_* and creates a missing bucket", () =>
    Effect.gen(function*() {
      const s = settings(bucket)
      const fresh = `${bucket}-cfg`
      const provider = ConfigProvider.fromMap(
        new Map([
          ["EFFECT_VOLUMES_S3_ENDPOINT", s.endpoint],
          ["EFFECT_VOLUMES_S3_REGION", s.region],
          ["EFFECT_VOLUMES_S3_BUCKET", fresh],
          ["EFFECT_VOLUMES_S3_PREFIX", `/${uniquePrefix()}/`],
          ["EFFECT_VOLUMES_S3_ACCESS_KEY_ID", s.credentials.accessKeyId],
          ["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY", s.credentials.secretAccessKey],
          ["EFFECT_VOLUMES_S3_FORCE_PATH_STYLE", "true"]
        ])
      )
      const layer = S3Backend.layerConfig.pipe(Layer.provide(Layer.setConfigProvider(provider)))
      const vol = yield* Volume.builder("configured").create().pipe(Effect.provide(layer))
      assert.strictEqual(vol.backendKind, "cloud")
      const cloud = Option.getOrThrow(vol.cloud)
      assert.strictEqual(cloud.bucket, fresh)
      assert.match(cloud.prefix, /^t-[^/]+\/data\/configured\/[0-9a-f]+\/$/)
      const missing = yield* S3Backend.layerConfig.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))),
        Layer.build,
        Effect.flip
      )
      assert.notStrictEqual(missing._tag, "StorageError", "a missing setting is a ConfigError")
    }))
})
