/**
 * SPEC §2–§3 disk volumes: fixed-size volumes whose files live inside an ext4 image (or,
 * on backends without images, behind an equivalent hard cap).
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as Volume from "../../src/Volume.js"
import type { Context } from "./support.js"
import { assertSameBytes, bytes, concat, expectFailure, expectFsError, MiB, names, some } from "./support.js"

const SIZE_MIB = 64

const createDisk = (name = "disk") => Volume.builder(name).disk().size(SIZE_MIB).create()

export const diskTests = ({ options, test }: Context) => {
  if (!options.supportsDisk) return

  describe("disk volumes", () => {
    test("a 64 MiB disk volume reports its kind, capacity and format", () =>
      Effect.gen(function*() {
        const vol = yield* createDisk()
        for (const handle of [vol, yield* Volume.get("disk")]) {
          assert.strictEqual(handle.kind, "disk")
          assert.strictEqual(handle.backendKind, options.backendKind)
          assert.deepStrictEqual(handle.capacityBytes, Option.some(SIZE_MIB * MiB))
          assert.deepStrictEqual(handle.diskFormat, Option.some("raw"))
          assert.deepStrictEqual(handle.diskFstype, Option.some("ext4"))
          assert.isTrue(Option.isNone(handle.quotaMib))
        }
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.kind), ["disk"])
        if (options.backendKind === "local") {
          const image = some(vol.diskPath, "diskPath")
          const stat = NodeFs.statSync(image)
          assert.strictEqual(stat.size, SIZE_MIB * MiB, "the image has the volume's size")
          assert.isBelow(stat.blocks * 512, SIZE_MIB * MiB, "the image is sparse")
        }
      }))

    test("a new disk volume lists empty", () =>
      Effect.gen(function*() {
        const fs = (yield* createDisk()).fs()
        assert.deepStrictEqual(yield* fs.list("/"), [])
        assert.isTrue(yield* fs.exists("/"))
        assert.strictEqual((yield* fs.stat("/")).kind, "directory")
      }))

    test("files can be written, read, listed, copied, renamed and removed inside", () =>
      Effect.gen(function*() {
        const fs = (yield* createDisk()).fs()
        const data = bytes(300_000, 21)
        yield* fs.write("dir/data.bin", data)
        yield* fs.write("hello.txt", "hello disk")
        assert.strictEqual(yield* fs.readToString("hello.txt"), "hello disk")
        assertSameBytes(yield* fs.read("dir/data.bin"), data)
        assertSameBytes(concat(yield* Stream.runCollect(fs.readStream("dir/data.bin"))), data)
        assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "hello.txt"])
        assert.deepStrictEqual((yield* fs.list("dir")).map((e) => [e.path, e.kind, e.size]), [
          ["/dir/data.bin", "file", 300_000]
        ])
        yield* fs.copy("dir", "dir-copy")
        yield* fs.rename("hello.txt", "moved/hello.txt")
        assert.strictEqual(yield* fs.readToString("moved/hello.txt"), "hello disk")
        assertSameBytes(yield* fs.read("dir-copy/data.bin"), data)
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("streamed.txt")
          yield* sink.write("streamed")
          yield* sink.close()
        }))
        assert.strictEqual(yield* fs.readToString("streamed.txt"), "streamed")
        yield* fs.remove("streamed.txt")
        yield* fs.removeDir("dir-copy")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "moved"])
        yield* fs.read("missing").pipe(expectFailure("PathNotFound"))
        yield* fs.write("../escape", "x").pipe(expectFailure("InvalidPath"))
      }))

    test("files survive getting the volume again", () =>
      Effect.gen(function*() {
        yield* Effect.flatMap(createDisk(), (vol) => vol.fs().write("persist.txt", "still here"))
        const again = yield* Volume.get("DISK")
        assert.strictEqual(yield* again.fs().readToString("persist.txt"), "still here")
      }))

    test("usedBytes is positive and grows with data", () =>
      Effect.gen(function*() {
        const vol = yield* createDisk()
        const before = (yield* Volume.get("disk")).usedBytes
        yield* vol.fs().write("data.bin", bytes(2 * MiB, 3))
        const after = (yield* Volume.get("disk")).usedBytes
        assert.isAbove(after, 0)
        assert.isAbove(after, before)
        assert.isAtLeast(after, 2 * MiB)
        assert.isAtMost(after, SIZE_MIB * MiB)
      }))

    test("writing more than the capacity fails with NoSpace and leaves no partial file", () =>
      Effect.gen(function*() {
        const fs = (yield* createDisk()).fs()
        yield* fs.write("keep.txt", "keep")
        const error = yield* fs.write("huge.bin", new Uint8Array((SIZE_MIB + 1) * MiB)).pipe(expectFsError("NoSpace"))
        assert.strictEqual(error.path, "/huge.bin")
        assert.isFalse(yield* fs.exists("huge.bin"))
        assert.deepStrictEqual(names(yield* fs.list("/")), ["keep.txt"])
        yield* fs.write("after.txt", "space is free again")
        assert.strictEqual(yield* fs.readToString("after.txt"), "space is free again")
      }))

    test("a writeStream beyond the capacity fails with NoSpace and keeps the old content", () =>
      Effect.gen(function*() {
        const fs = (yield* createDisk()).fs()
        yield* fs.write("f.bin", "old")
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("f.bin")
          for (let i = 0; i < SIZE_MIB + 1; i++) yield* sink.write(new Uint8Array(MiB))
          yield* sink.close()
        })).pipe(expectFsError("NoSpace"))
        assert.strictEqual(yield* fs.readToString("f.bin"), "old")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["f.bin"])
      }))

    test("path() of a disk volume fails with Unsupported", () =>
      Effect.gen(function*() {
        const vol = yield* createDisk()
        yield* vol.path().pipe(expectFailure("Unsupported"))
      }))

    test("remove deletes a disk volume and its image", () =>
      Effect.gen(function*() {
        const vol = yield* createDisk()
        const fs = vol.fs()
        yield* fs.write("x.txt", "x")
        yield* Volume.remove("disk")
        yield* Volume.get("disk").pipe(expectFailure("VolumeNotFound"))
        yield* fs.read("x.txt").pipe(expectFailure("VolumeNotFound"))
        if (Option.isSome(vol.diskPath)) assert.isFalse(NodeFs.existsSync(vol.diskPath.value))
        const again = yield* createDisk()
        assert.deepStrictEqual(yield* again.fs().list("/"), [])
      }))
  })
}
