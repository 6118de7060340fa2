/**
 * kill -9 of "another machine" (a child process, `fixtures/worker.ts`) in the middle of a
 * multi-step operation: what it left is finished or reclaimed by the survivors, and usage is
 * recounted exactly. The proxy holds the dying machine's next request so the kill lands at a
 * known step; `drop` then discards that request, as the kernel would with the dead socket.
 */
import { assert, it } from "@effect/vitest"
import { Clock, Effect, TestClock, TestContext } from "effect"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeHandle } from "../../src/Volume.js"
import { spawnWorker } from "../local/fixtures/child.js"
import type { Machine } from "./machines.js"
import { objectPath, pair } from "./machines.js"
import * as Proxy from "./proxy.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("crash")
const workerScript = NodePath.join(NodePath.dirname(fileURLToPath(import.meta.url)), "fixtures", "worker.ts")

const MiB = 1024 * 1024

const dataPrefix = (vol: VolumeHandle) => vol.info.cloud._tag === "Some" ? vol.info.cloud.value.prefix : "?"

const uploadsOf = (m: Machine, vol: VolumeHandle) => Effect.orDie(m.s3.listUploads(dataPrefix(vol)))

/** Starts the worker `command` against `endpoint` and waits for `line`. */
const runWorker = (
  prefix: string,
  endpoint: string,
  args: ReadonlyArray<string>,
  line: string
) =>
  Effect.gen(function*() {
    const [command, ...rest] = args
    const worker = yield* spawnWorker([command!, bucket, prefix, endpoint, ...rest], workerScript)
    yield* worker.line((l) => l === line || l.startsWith("failed "))
    return worker
  })

describeS3("S3Backend after kill -9", () => {
  it.scopedLive("a killed writer's multipart upload is counted as allocated and aborted by remove (fault 10)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const vol = yield* b.run(Volume.builder("mp").create())
      const worker = yield* runWorker(prefix, b.s3.endpoint, ["stream", "mp", "32"], "written")
      yield* worker.kill
      const report = yield* b.run(S3Backend.recount(vol))
      assert.strictEqual(report.logicalBytes, 0)
      assert.strictEqual(report.pendingUploads, 1)
      assert.isAtLeast(report.allocatedBytes, 16 * MiB)
      assert.strictEqual((yield* uploadsOf(b, vol)).length, 1)
      yield* b.run(Volume.remove("mp"))
      assert.deepStrictEqual(yield* uploadsOf(b, vol), [])
    }), { timeout: 120_000 })

  it.scopedLive("cleanup aborts a killed writer's upload on a live volume (fault 10)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const vol = yield* b.run(Volume.builder("mp2").create())
      yield* vol.fs().write("keep.txt", "keep")
      const worker = yield* runWorker(prefix, b.s3.endpoint, ["stream", "mp2", "20"], "written")
      yield* worker.kill
      // Younger than the grace period: a live writer's upload is left alone.
      assert.strictEqual((yield* b.run(S3Backend.cleanup())).uploads, 0)
      const reclaimed = yield* b.run(S3Backend.cleanup({ uploadGrace: 0 }))
      assert.strictEqual(reclaimed.uploads, 1)
      assert.deepStrictEqual(yield* uploadsOf(b, vol), [])
      assert.strictEqual(yield* vol.fs().readToString("keep.txt"), "keep")
      assert.isFalse(yield* vol.fs().exists("big.bin"))
    }), { timeout: 120_000 })

  it.scopedLive("a writer killed between its PUT and the usage update: recount makes usage exact (issue 16, item 7)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const proxy = yield* Proxy.make(b.s3.endpoint)
      const vol = yield* b.run(Volume.builder("ctr").create())
      const cas = proxy.rule({ method: "PUT", path: objectPath(b.layout.recordKey("ctr")), action: { _tag: "hold" } })
      const worker = yield* runWorker(prefix, proxy.endpoint, ["write", "ctr", "f.bin", "5000"], "ready")
      yield* cas.held
      yield* worker.kill
      yield* cas.drop
      assert.isTrue(yield* vol.fs().exists("f.bin"))
      assert.strictEqual((yield* b.run(Volume.get("ctr"))).usedBytes, 0, "the counter missed the write")
      assert.strictEqual((yield* b.run(S3Backend.recount(vol))).logicalBytes, 5000)
      assert.strictEqual((yield* b.run(Volume.get("ctr"))).usedBytes, 5000)
    }), { timeout: 120_000 })

  it.scopedLive("a tree rename killed half-way is rolled forward by its retry (fault 6)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const proxy = yield* Proxy.make(b.s3.endpoint)
      const vol = yield* b.run(Volume.builder("tree").create())
      yield* Effect.forEach(["src/a", "src/b", "src/c/d"], (p) => vol.fs().write(p, p), { discard: true })
      // Killed after copying, before deleting the sources.
      const deletes = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "hold" } })
      const worker = yield* runWorker(prefix, proxy.endpoint, ["rename", "tree", "src", "dst"], "ready")
      yield* deletes.held
      yield* worker.kill
      yield* deletes.drop
      yield* vol.fs().rename("src", "dst")
      assert.deepStrictEqual((yield* vol.fs().list("/")).map((e) => e.path), ["/dst"])
      assert.strictEqual(yield* vol.fs().readToString("dst/c/d"), "src/c/d")
      assert.strictEqual((yield* b.run(Volume.get("tree"))).usedBytes, 5 + 5 + 7)
    }), { timeout: 120_000 })

  it.scopedLive("a remove killed after its tombstone is finished by a retry (fault 2)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const proxy = yield* Proxy.make(b.s3.endpoint)
      const vol = yield* b.run(Volume.builder("rm").create())
      yield* Effect.forEach(["a", "b/c"], (p) => vol.fs().write(p, p), { discard: true })
      const deletes = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "hold" } })
      const worker = yield* runWorker(prefix, proxy.endpoint, ["remove", "rm"], "ready")
      yield* deletes.held
      yield* worker.kill
      yield* deletes.drop
      assert.strictEqual((yield* Effect.flip(b.run(Volume.get("rm"))))._tag, "VolumeNotFound")
      yield* b.run(Volume.remove("rm"))
      const left = yield* Effect.orDie(b.s3.list(dataPrefix(vol)))
      assert.deepStrictEqual(left.objects, [])
    }), { timeout: 120_000 })

  /** A volume "r" whose files read "live", with a snapshot "s" in which they read "snap" (and no "extra"). */
  const restorable = (m: Machine) =>
    m.run(Effect.gen(function*() {
      const vol = yield* Volume.builder("r").create()
      const names = ["a", "b/c", "b/d"]
      yield* Effect.forEach(names, (p) => vol.fs().write(p, "snap"), { discard: true })
      yield* Volume.snapshot("r", { name: "s" })
      yield* Effect.forEach(names, (p) => vol.fs().write(p, "live"), { discard: true })
      yield* vol.fs().write("extra", "live")
      /** What a fresh handle reads: every file's content, "extra" included when it exists. */
      const contents = Effect.flatMap(Volume.get("r"), (now) =>
        Effect.forEach([...names, "extra"], (p) =>
          Effect.flatMap(now.fs().exists(p), (exists) => exists ? now.fs().readToString(p) : Effect.succeed("-"))))
      return { contents: m.run(contents) }
    }))

  /** Runs `cleanup` as it would run two hours from now (past every grace period). */
  const cleanupLater = (m: Machine) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      m.run(Effect.zipRight(TestClock.setTime(now + 2 * 60 * 60 * 1000), S3Backend.cleanup())).pipe(
        Effect.provide(TestContext.TestContext)
      ))

  /** The keys of the volume's data and bookkeeping that do not belong to its live generation. */
  const stale = (m: Machine) =>
    Effect.gen(function*() {
      const live = dataPrefix(yield* m.run(Volume.get("r")))
      const roots = [m.layout.dataPrefix("r", ""), m.layout.metaPrefix("r", "")].map((root) => root.slice(0, -1))
      const listed = yield* Effect.orDie(Effect.forEach(roots, (root) => m.s3.list(root)))
      const liveMeta = live.replace(/data\/r\//, "meta/r/")
      return listed.flatMap((l) => l.objects).map((o) => o.key)
        .filter((key) => !key.startsWith(live) && !key.startsWith(liveMeta))
    })

  it.scopedLive("a restore killed while copying leaves the old tree; cleanup reclaims its copy (issue 9)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const proxy = yield* Proxy.make(b.s3.endpoint)
      const { contents } = yield* restorable(b)
      // The copies into the new generation (`<id>.<generation>/`) are held; the worker dies among them.
      const copies = proxy.rule({ method: "PUT", path: /\/data\/r\/[0-9a-f]{20}\.[0-9a-f]{20}\/./, action: { _tag: "hold" } })
      const worker = yield* runWorker(prefix, proxy.endpoint, ["restore", "r", "s"], "ready")
      yield* copies.held
      yield* worker.kill
      yield* copies.drop
      assert.deepStrictEqual(yield* contents, ["live", "live", "live", "live"])
      // A live restorer could still be copying: a cleanup now leaves the copy alone, a later one reclaims it.
      assert.strictEqual((yield* b.run(S3Backend.cleanup())).incarnations, 0)
      assert.isAbove((yield* stale(b)).length, 0)
      assert.strictEqual((yield* cleanupLater(b)).incarnations, 1)
      assert.deepStrictEqual(yield* stale(b), [])
      yield* b.run(Volume.restore("r", "s"))
      assert.deepStrictEqual(yield* contents, ["snap", "snap", "snap", "-"])
    }), { timeout: 120_000 })

  it.scopedLive("a restore killed after its switch leaves the restored tree; cleanup reclaims the old one (issue 9)", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix()
      const { b } = yield* pair(bucket, prefix)
      const proxy = yield* Proxy.make(b.s3.endpoint)
      const { contents } = yield* restorable(b)
      // The deletion of the replaced generation is held; the worker dies before it.
      const deletes = proxy.rule({ method: "POST", path: /\?delete/, action: { _tag: "hold" } })
      const worker = yield* runWorker(prefix, proxy.endpoint, ["restore", "r", "s"], "ready")
      yield* deletes.held
      yield* worker.kill
      yield* deletes.drop
      assert.deepStrictEqual(yield* contents, ["snap", "snap", "snap", "-"])
      assert.isAbove((yield* stale(b)).length, 0)
      assert.strictEqual((yield* b.run(S3Backend.cleanup())).incarnations, 1)
      assert.deepStrictEqual(yield* stale(b), [])
      assert.strictEqual((yield* b.run(Volume.get("r"))).usedBytes, 12)
    }), { timeout: 120_000 })
})
