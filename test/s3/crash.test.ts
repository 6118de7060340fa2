/**
 * kill -9 of "another machine" (a child process, `fixtures/worker.ts`) in the middle of a
 * multi-step operation: what it left is finished or reclaimed by the survivors, and usage is
 * recounted exactly. The proxy holds the dying machine's next request so the kill lands at a
 * known step; `drop` then discards that request, as the kernel would with the dead socket.
 */
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
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
})
