/**
 * Renaming cloud volumes with two machines and a store that delays or fails requests: one
 * of two concurrent renamers wins and the other gets a typed error, a lease on one machine
 * refuses a rename from the other, a renamer that dies after its decision leaves the new
 * name (finished by the next reader), and sweeps never take a renamed volume's data.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Scope } from "effect"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { spawnWorker } from "../local/fixtures/child.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import type { Machine } from "./machines.js"
import { machine, objectPath, pair } from "./machines.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("rename")
const workerScript = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "fixtures", "worker.ts")

/** "Machine" A as a child process renaming `x` to `y` through the proxy at `endpoint`. */
const renamer = (prefix: string, endpoint: string) =>
  Effect.gen(function*() {
    const worker = yield* spawnWorker(["rename-volume", bucket, prefix, endpoint, "x", "y"], workerScript)
    yield* worker.line((l) => l === "ready")
    return worker
  })

const seed = (m: Machine) =>
  m.run(Effect.gen(function*() {
    const vol = yield* Volume.builder("x").label("team", "ml").create()
    yield* vol.fs().write("a.txt", "alpha")
    yield* Volume.snapshot("x", { name: "s" })
  }))

/** Asserts that of all the names, exactly `name` exists, with the seeded data and snapshot. */
const onlyOne = (m: Machine, name: string, others: ReadonlyArray<string>) =>
  m.run(Effect.gen(function*() {
    const vol = yield* Volume.get(name)
    assert.strictEqual(yield* vol.fs().readToString("a.txt"), "alpha")
    assert.deepStrictEqual(vol.labels, [["team", "ml"]])
    assert.deepStrictEqual((yield* Volume.snapshots(name)).map((s) => s.name), ["s"])
    for (const other of others) assert.strictEqual((yield* Effect.flip(Volume.get(other)))._tag, "VolumeNotFound")
    assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), [name])
  }))

describeS3("S3Backend rename across machines", () => {
  it.scopedLive("while A's rename is under way, B's rename of the same volume is refused; A's completes", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix)
      yield* seed(b)
      // A holds the lock on x; its creation of the new record arrives late.
      const late = proxy.rule({ method: "PUT", path: objectPath(a.layout.recordKey("ya")), action: { _tag: "hold" }, times: 1 })
      const renaming = yield* Effect.fork(a.run(Volume.rename("x", "ya")))
      yield* late.held
      const refused = yield* Effect.flip(b.run(Volume.rename("x", "yb")))
      assert.strictEqual(refused._tag, "VolumeInUse")
      // x is still the volume for everyone until A's decision lands.
      assert.strictEqual((yield* b.run(Volume.get("x"))).name, "x")
      yield* late.release
      assert.strictEqual((yield* Fiber.join(renaming)).name, "ya")
      yield* onlyOne(b, "ya", ["x", "yb"])
    }), { timeout: 60_000 })

  it.scopedLive("two machines renaming one volume at once: exactly one wins, the other gets a typed error", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(bucket, prefix)
      const b = yield* machine(bucket, prefix)
      yield* seed(a)
      const [ra, rb] = yield* Effect.all(
        [Effect.either(a.run(Volume.rename("x", "ya"))), Effect.either(b.run(Volume.rename("X", "yb")))],
        { concurrency: 2 }
      )
      const wins = [ra, rb].filter(Either.isRight)
      assert.lengthOf(wins, 1, `outcomes: ${String(ra)} / ${String(rb)}`)
      for (const lost of [ra, rb].filter(Either.isLeft)) assert.oneOf(lost.left._tag, ["VolumeInUse", "VolumeNotFound"])
      const winner = Either.isRight(ra) ? "ya" : "yb"
      yield* onlyOne(b, winner, ["x", winner === "ya" ? "yb" : "ya"])
    }), { timeout: 60_000 })

  it.scopedLive("a lease held on machine B refuses a rename from machine A", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const a = yield* machine(bucket, prefix)
      const b = yield* machine(bucket, prefix)
      yield* seed(a)
      const scope = yield* Scope.make()
      yield* Effect.flatMap(VolumeBackend, (backend) => backend.holders.acquire("x", "sandbox on b", "rw")).pipe(
        Effect.provide(b.layer),
        Scope.extend(scope)
      )
      const refused = yield* Effect.flip(a.run(Volume.rename("x", "y")))
      assert.strictEqual(refused._tag, "VolumeInUse")
      if (refused._tag === "VolumeInUse") assert.deepStrictEqual(refused.holders, ["sandbox on b"])
      yield* onlyOne(a, "x", ["y"])
      yield* Scope.close(scope, Exit.void)
      yield* a.run(Volume.rename("x", "y"))
      yield* onlyOne(b, "y", ["x"])
    }), { timeout: 60_000 })

  it.scopedLive("a renamer that dies after creating the new record leaves the new name; readers finish it", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { a, b, proxy } = yield* pair(bucket, prefix, { maxAttempts: 1 })
      yield* seed(b)
      const decision = proxy.rule({ method: "PUT", path: objectPath(a.layout.recordKey("y")), action: { _tag: "hold" }, times: 1 })
      const renaming = yield* Effect.fork(Effect.either(a.run(Volume.rename("x", "y"))))
      yield* decision.held
      // From the decision on, A never reaches the store again (as if killed).
      proxy.rule({ method: ["PUT", "DELETE", "POST"], path: /./, action: { _tag: "fail", status: 503, code: "ServiceUnavailable" } })
      yield* decision.release
      const outcome = yield* Fiber.join(renaming)
      assert.isTrue(Either.isLeft(outcome), "A could not finish")
      // Both records are still stored, but only the new name is a volume.
      yield* onlyOne(b, "y", ["x"])
      // B's reads finished the rename: the old name can be created afresh.
      const fresh = yield* b.run(Volume.builder("x").create())
      assert.deepStrictEqual(yield* fresh.fs().list("/"), [])
      assert.deepStrictEqual(yield* b.run(Volume.snapshots("x")), [])
    }), { timeout: 60_000 })

  /**
   * Seeds x, renames it to y, runs `between`, then: cleanup; a new x, removed again (which
   * sweeps the old name's key); cleanup — y must still have everything. Removing y then
   * reclaims all data.
   */
  const sweepsSpareRenamed = (between: (m: Machine) => Effect.Effect<void, unknown>) =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const m = yield* machine(bucket, prefix)
      yield* seed(m)
      yield* m.run(Volume.rename("x", "y"))
      yield* between(m)
      yield* m.run(S3Backend.cleanup({ uploadGrace: 0 }))
      yield* m.run(Effect.flatMap(Volume.builder("x").create(), (v) => v.fs().write("b.txt", "beta")))
      yield* m.run(Volume.remove("x"))
      yield* m.run(S3Backend.cleanup({ uploadGrace: 0 }))
      yield* onlyOne(m, "y", ["x"])
      yield* m.run(Volume.remove("y", { withSnapshots: true }))
      yield* m.run(S3Backend.cleanup({ uploadGrace: 0 }))
      const left = yield* Effect.orDie(m.s3.list(`${prefix}/data/`))
      assert.deepStrictEqual(left.objects.map((o) => o.key), [])
    })

  it.scopedLive("sweeps and cleanup never take a renamed volume's data; removing it reclaims the data", () =>
    sweepsSpareRenamed(() => Effect.void), { timeout: 60_000 })

  it.scopedLive("a renamed volume restored from a snapshot keeps its restored tree through every sweep", () =>
    // The restore makes a new generation under the name key the data was created with (x).
    sweepsSpareRenamed((m) =>
      m.run(Effect.gen(function*() {
        yield* (yield* Volume.get("y")).fs().write("a.txt", "changed")
        yield* Volume.restore("y", "s")
      }))
    ), { timeout: 60_000 })

  it.scopedLive("kill -9 before the decision: the old name stays whole, the new one never appears", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b, proxy } = yield* pair(bucket, prefix)
      yield* seed(b)
      const decision = proxy.rule({ method: "PUT", path: objectPath(b.layout.recordKey("y")), action: { _tag: "hold" } })
      const worker = yield* renamer(prefix, proxy.endpoint)
      yield* decision.held
      yield* worker.kill
      yield* decision.drop
      yield* onlyOne(b, "x", ["y"])
      // Its lock refuses other renamers until it lapses (the lease time); writes go on.
      assert.strictEqual((yield* Effect.flip(b.run(Volume.rename("x", "z"))))._tag, "VolumeInUse")
      yield* b.run(Effect.flatMap(Volume.get("x"), (vol) => vol.fs().write("c.txt", "still writable")))
    }), { timeout: 120_000 })

  it.scopedLive("kill -9 after the decision: the new name has everything, the old name is free", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b, proxy } = yield* pair(bucket, prefix)
      yield* seed(b)
      const decision = proxy.rule({ method: "PUT", path: objectPath(b.layout.recordKey("y")), action: { _tag: "hold" }, times: 1 })
      const worker = yield* renamer(prefix, proxy.endpoint)
      yield* decision.held
      // The tombstone of the old record is the renamer's next write there: it never lands.
      const retire = proxy.rule({ method: "PUT", path: objectPath(b.layout.recordKey("x")), action: { _tag: "hold" } })
      yield* decision.release
      yield* retire.held
      yield* worker.kill
      yield* retire.drop
      yield* onlyOne(b, "y", ["x"])
      const fresh = yield* b.run(Volume.builder("x").create())
      assert.deepStrictEqual(yield* fresh.fs().list("/"), [])
      yield* b.run(Volume.rename("y", "z"))
      yield* b.run(Volume.remove("x"))
      yield* onlyOne(b, "z", ["x", "y"])
    }), { timeout: 120_000 })
})
