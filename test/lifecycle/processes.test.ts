/**
 * SPEC §10 across processes and machines: get-or-create from 8 processes on one home and
 * from 2 "machines" (two S3 backends on one bucket and prefix); holders recorded by one
 * machine refuse a remove on another, and a crashed holder's lease lapses.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { spawnWorker } from "../local/fixtures/child.js"
import { makeHome, withHome } from "../local/fixtures/home.js"
import { bucketFor, describeS3, options, uniquePrefix } from "../s3/support.js"

const worker = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "fixtures", "worker.ts")

/** Starts `count` get-or-create workers, releases them at once, and returns their outcomes. */
const raceGetOrCreate = (count: number, target: ReadonlyArray<string>, scratch: string) =>
  Effect.gen(function*() {
    const barrier = NodePath.join(scratch, "barrier")
    mkdirSync(barrier, { recursive: true })
    const workers = yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => spawnWorker(["get-or-create", ...target, i % 2 === 0 ? "Shared" : "SHARED", barrier], worker)
    )
    yield* Effect.forEach(workers, (w) => w.line((line) => line === "ready"))
    writeFileSync(NodePath.join(barrier, "go"), "")
    return yield* Effect.forEach(workers, (w) => w.result as Effect.Effect<{ outcome: string; value?: number }>, {
      concurrency: "unbounded"
    })
  })

describe("getOrCreate across processes (local)", () => {
  it.scopedLive("8 processes calling getOrCreate at once all succeed with the same volume", () =>
    Effect.gen(function*() {
      const scratch = yield* makeHome
      const home = NodePath.join(scratch, "home")
      const outcomes = yield* raceGetOrCreate(8, ["local", home], scratch)
      assert.deepStrictEqual(outcomes.map((o) => o.outcome), Array(8).fill("ok"))
      assert.strictEqual(new Set(outcomes.map((o) => o.value)).size, 1, "one volume for everyone")
      const volumes = yield* Volume.list().pipe(withHome(home))
      assert.strictEqual(volumes.length, 1)
      assert.strictEqual(volumes[0]!.name.toLowerCase(), "shared")
      assert.deepStrictEqual(volumes[0]!.labels, [["team", "ml"]])
    }))
})

describeS3("lifecycle on two machines (S3)", () => {
  const bucket = bucketFor("lifecycle")
  const machine = (prefix: string, leaseTtl?: number) =>
    S3Backend.layer({ ...options(bucket, prefix), ...(leaseTtl === undefined ? {} : { leaseTtl }) })

  it.scopedLive("2 machines calling getOrCreate at once both succeed with the same volume", () =>
    Effect.gen(function*() {
      const scratch = yield* makeHome
      const prefix = uniquePrefix()
      const outcomes = yield* raceGetOrCreate(2, ["s3", bucket, prefix], scratch)
      assert.deepStrictEqual(outcomes.map((o) => o.outcome), ["ok", "ok"])
      assert.strictEqual(new Set(outcomes.map((o) => o.value)).size, 1)
      assert.strictEqual((yield* Volume.list().pipe(Effect.provide(machine(prefix)))).length, 1)
    }))

  it.scopedLive("a volume held on machine A cannot be removed from machine B until A lets go", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* Layer.build(machine(prefix))
      const b = yield* Layer.build(machine(prefix))
      yield* Volume.create(Volume.builder("shared").build()).pipe(Effect.provide(a))
      const released = yield* Effect.gen(function*() {
        yield* (yield* VolumeBackend).holders.acquire("shared", "sandbox on A", "rw")
        const refused = yield* Effect.flip(Volume.remove("shared").pipe(Effect.provide(b)))
        assert.strictEqual(refused._tag, "VolumeInUse")
        assert.deepStrictEqual(refused._tag === "VolumeInUse" ? refused.holders : [], ["sandbox on A"])
        const holders = yield* Effect.flatMap(VolumeBackend, (backend) => backend.holders.list("shared")).pipe(
          Effect.provide(b)
        )
        assert.deepStrictEqual(holders, ["sandbox on A"])
        return true
      }).pipe(Effect.scoped, Effect.provide(a))
      assert.isTrue(released)
      yield* Volume.remove("shared").pipe(Effect.provide(b))
    }))

  it.scopedLive("a holder killed with -9 stops renewing: its lease lapses and the volume can be removed", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const b = yield* Layer.build(machine(prefix, 1500))
      yield* Volume.create(Volume.builder("held").build()).pipe(Effect.provide(b))
      const holder = yield* spawnWorker(["hold", "s3", bucket, prefix, "held", "1500"], worker)
      yield* holder.line((line) => line === "held")
      // Longer than a lease time: a live holder keeps renewing, so the volume stays held.
      yield* Effect.sleep("2500 millis")
      const refused = yield* Effect.flip(Volume.remove("held").pipe(Effect.provide(b)))
      assert.strictEqual(refused._tag, "VolumeInUse", "renewed while the holder lives")
      yield* holder.kill
      yield* Effect.sleep("1700 millis")
      const left = yield* Effect.flatMap(VolumeBackend, (backend) => backend.holders.list("held")).pipe(Effect.provide(b))
      assert.deepStrictEqual(left, [])
      yield* Volume.remove("held").pipe(Effect.provide(b))
    }))
})
