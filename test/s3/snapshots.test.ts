/**
 * SPEC §9 on S3 beyond the conformance suite: a snapshot is copied server side (no file
 * data through the client), and a reader on another machine never sees half of one.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import * as Client from "../../src/internal/s3/client.js"
import { makeService } from "../../src/internal/s3/backend.js"
import * as Layout from "../../src/internal/s3/layout.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { bucketFor, describeS3, settings, uniquePrefix } from "./support.js"

const bucket = bucketFor("snapshots")
const FILES = 200

/** One "machine": its own client on the shared bucket and prefix, recording its requests. */
const machine = (prefix: string) =>
  Effect.gen(function*() {
    const s3 = yield* Client.make(settings(bucket))
    const requests: Array<string> = []
    s3.sdk.middlewareStack.add(
      (next, context) => (args) => {
        requests.push(String(context.commandName ?? "").replace(/Command$/, ""))
        return next(args)
      },
      { step: "initialize", name: "recordCommands" }
    )
    yield* s3.ensureBucket
    return { requests, layer: Layer.succeed(VolumeBackend, makeService(s3, Layout.make(prefix))) } as const
  })

const fill = Effect.gen(function*() {
  const vol = yield* Volume.builder("src").create()
  yield* Effect.forEach(
    Array.from({ length: FILES }, (_, i) => i),
    (i) => vol.fs().write(`d${i % 10}/f${i}.txt`, `file ${i}`),
    { concurrency: 16, discard: true }
  )
})

describeS3("S3 snapshots across machines", () => {
  it.scopedLive("a snapshot is copied server side and appears whole to another machine", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(prefix)
      const b = yield* machine(prefix)
      yield* fill.pipe(Effect.provide(a.layer))
      const before = a.requests.length
      const taking = yield* Effect.fork(Volume.snapshot("src", { name: "s" }).pipe(Effect.provide(a.layer)))
      // Machine b looks until the snapshot appears; whenever it sees it, it is whole.
      let seen = 0
      while (Option.isNone(yield* Fiber.poll(taking)) || seen === 0) {
        const listed = yield* Volume.snapshots("src").pipe(Effect.provide(b.layer))
        if (listed.length > 0) {
          seen++
          const files = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, d) => d),
            (d) => listed[0]!.fs().list(`d${d}`)
          ).pipe(Effect.provide(b.layer))
          assert.strictEqual(files.flat().length, FILES, "a visible snapshot is whole")
        }
      }
      yield* Fiber.join(taking)
      const made = a.requests.slice(before)
      assert.strictEqual(made.filter((r) => r === "CopyObject").length, FILES + 10, "one CopyObject per object")
      assert.deepStrictEqual(
        made.filter((r) => r === "GetObject").length <= 3,
        true,
        `no file data through the client (only record reads: the volume's before and after the copy, the snapshot's slot): ${made.join(",")}`
      )
      assert.isAtMost(made.filter((r) => r === "PutObject").length, 2, "only the root marker and the record are written")
    }))

  it.scopedLive("an interrupted snapshot leaves no snapshot and no copied objects", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(prefix)
      yield* fill.pipe(Effect.provide(a.layer))
      const copies = () => a.requests.filter((r) => r === "CopyObject").length
      const taking = yield* Effect.fork(Volume.snapshot("src", { name: "s" }).pipe(Effect.provide(a.layer)))
      while (copies() < 20) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(taking)
      assert.deepStrictEqual(yield* Volume.snapshots("src").pipe(Effect.provide(a.layer)), [])
      const s3 = yield* Client.make(settings(bucket))
      const left = yield* s3.list(`${prefix}/snapdata/`)
      assert.deepStrictEqual(left.objects.map((o) => o.key), [], "the partial copy was deleted")
      // The name is free, and a whole snapshot's objects are where the check above looked.
      yield* Volume.snapshot("src", { name: "s" }).pipe(Effect.provide(a.layer))
      assert.strictEqual((yield* s3.list(`${prefix}/snapdata/`)).objects.length, FILES + 11)
    }))
})
