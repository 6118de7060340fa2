/**
 * SPEC §9 "restore is atomic" on S3: a reader on another machine sees the volume's old tree
 * or the restored one, never a mix, however slowly the restore copies; and what a restore
 * leaves is reclaimed.
 */
import { assert, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Stream } from "effect"
import * as Volume from "../../src/Volume.js"
import type { Machine } from "./machines.js"
import { pair } from "./machines.js"
import { assertOneSwitch, prepareRestore, readPass, restoreNames } from "../conformance/restoreReader.js"
import { bucketFor, describeS3, uniquePrefix } from "./support.js"

const bucket = bucketFor("restore")
const FILES = 40

const names = restoreNames(FILES)

const readOn = (machine: Machine) =>
  machine.run(Effect.flatMap(Volume.get("v"), (vol) => readPass(vol.fs(), names)))

describeS3("S3 restore", () => {
  it.scopedLive("a reader on another machine sees the old tree or the restored one, never a mix", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      yield* a.run(prepareRestore("v", names))
      // Every server-side copy of the restore is slow, so the reader makes many passes during it.
      proxy.rule({ method: "PUT", path: /\/data\//, action: { _tag: "delay", millis: 250 } })
      const restoring = yield* Effect.fork(a.run(Volume.restore("v", "s")))
      const observed: Array<string> = []
      let passesDuring = 0
      while (Option.isNone(yield* Fiber.poll(restoring))) {
        observed.push(...(yield* readOn(b)))
        passesDuring++
      }
      yield* Fiber.join(restoring)
      observed.push(...(yield* readOn(b)))
      assert.isAbove(passesDuring, 1, "the reader read during the restore")
      assertOneSwitch(observed)
    }))

  it.scopedLive("a restore leaves only the restored tree: the replaced one is deleted", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      yield* b.run(prepareRestore("v", names))
      const dataRoot = b.layout.dataPrefix("v", "").slice(0, -1)
      yield* b.run(Volume.restore("v", "s"))
      yield* b.run(Volume.restore("v", "s"))
      const after = yield* b.s3.list(dataRoot)
      const info = yield* b.run(Volume.get("v"))
      const live = Option.getOrThrow(info.cloud).prefix
      assert.deepStrictEqual(after.objects.filter((o) => !o.key.startsWith(live)).map((o) => o.key), [])
      // The snapshot's files, its 4 directory markers and the root marker; no "extra.txt".
      assert.strictEqual(after.objects.length, FILES + 4 + 1)
      assert.strictEqual(info.usedBytes, FILES * 4)
      // A handle read before the restores follows the volume to the restored tree.
      assert.strictEqual(yield* b.run(Effect.flatMap(Volume.get("v"), (v) => v.fs().readToString(names[0]!))), "snap")
    }))

  it.scopedLive("a snapshot whose source is restored while it copies fails and leaves nothing, never half a tree", () =>
    Effect.gen(function*() {
      const { a, b, proxy } = yield* pair(bucket, uniquePrefix())
      yield* b.run(prepareRestore("v", names))
      // Machine a's snapshot copies are held until machine b's restore has replaced the tree.
      const copies = proxy.rule({ method: "PUT", path: /\/snapdata\//, action: { _tag: "hold" } })
      const taking = yield* Effect.fork(a.run(Volume.snapshot("v", { name: "late" })))
      yield* copies.held
      yield* b.run(Volume.restore("v", "s"))
      yield* copies.release
      const failure = yield* Effect.flip(Fiber.join(taking))
      assert.strictEqual(failure._tag, "StorageError")
      assert.deepStrictEqual((yield* b.run(Volume.snapshots("v"))).map((s) => s.name), ["s"])
    }))

  it.scopedLive("a watch started before a restore follows the volume to the restored tree", () =>
    Effect.gen(function*() {
      const { b } = yield* pair(bucket, uniquePrefix())
      yield* b.run(prepareRestore("v", names))
      const fs = (yield* b.run(Volume.get("v"))).fs()
      const watching = yield* Effect.fork(
        fs.watch("/", { recursive: true }).pipe(
          Stream.takeUntil((event) => event.path === "/after.txt"),
          Stream.runCollect
        )
      )
      yield* Effect.sleep("1500 millis")
      yield* b.run(Volume.restore("v", "s"))
      yield* fs.write("after.txt", "written after the restore")
      const events = Chunk.toArray(yield* Fiber.join(watching).pipe(Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new Error("the watch never saw a write made after the restore")
      })))
      assert.deepInclude(events, { _tag: "Created", path: "/after.txt" })
    }))
})
