/**
 * SPEC §3 path rules: normalisation, traversal, NUL bytes and control characters, and where
 * the root is allowed.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { VolumeFsFailure } from "../../src/VolumeError.js"
import type { VolumeFs } from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, names, utf8 } from "./support.js"

/** One file-system operation applied to a path under test. */
interface PathOperation {
  readonly name: string
  readonly run: (fs: VolumeFs, path: string) => Effect.Effect<unknown, VolumeFsFailure>
}

const operation = (name: string, run: PathOperation["run"]): PathOperation => ({ name, run })

const reads: ReadonlyArray<PathOperation> = [
  operation("read", (fs, p) => fs.read(p)),
  operation("readToString", (fs, p) => fs.readToString(p)),
  operation("readStream", (fs, p) => Stream.runDrain(fs.readStream(p))),
  operation("list", (fs, p) => fs.list(p)),
  operation("stat", (fs, p) => fs.stat(p)),
  operation("exists", (fs, p) => fs.exists(p)),
  operation("mkdir", (fs, p) => fs.mkdir(p))
]

/** Operations that need a file or directory name: the root is refused by each of them. */
const needsName: ReadonlyArray<PathOperation> = [
  operation("write", (fs, p) => fs.write(p, "x")),
  operation("writeStream", (fs, p) => Effect.scoped(Effect.flatMap(fs.writeStream(p), (s) => s.close()))),
  operation("sink", (fs, p) => Stream.run(Stream.make(utf8("x")), fs.sink(p))),
  operation("remove", (fs, p) => fs.remove(p)),
  operation("removeDir", (fs, p) => fs.removeDir(p)),
  operation("copy from", (fs, p) => fs.copy(p, "copy-target")),
  operation("copy to", (fs, p) => fs.copy("existing.txt", p)),
  operation("rename from", (fs, p) => fs.rename(p, "rename-target")),
  operation("rename to", (fs, p) => fs.rename("existing.txt", p))
]

export const pathsTests = ({ test }: Context) => {
  /** A volume holding `existing.txt` and `dir/inner.txt`. */
  const seeded = Effect.gen(function*() {
    const fs = (yield* createVolume("paths")).fs()
    yield* fs.write("existing.txt", "existing")
    yield* fs.write("dir/inner.txt", "inner")
    return fs
  })

  const assertUnchanged = (fs: VolumeFs) =>
    Effect.gen(function*() {
      assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "existing.txt"])
      assert.deepStrictEqual(names(yield* fs.list("dir")), ["inner.txt"])
      assert.strictEqual(yield* fs.readToString("existing.txt"), "existing")
    })

  /** Every operation on `path` fails with `InvalidPath` carrying the path as given. */
  const refusedEverywhere = (fs: VolumeFs, path: string) =>
    Effect.forEach([...reads, ...needsName], (op) =>
      op.run(fs, path).pipe(
        expectFailure("InvalidPath"),
        Effect.map((error) => {
          assert.strictEqual(error.path, path, `${op.name}(${JSON.stringify(path)}): path field`)
          assert.isNotEmpty(error.reason)
        })
      ))

  describe("path rules", () => {
    test("leading slashes are stripped", () =>
      Effect.gen(function*() {
        const fs = yield* seeded
        yield* fs.write("///lead.txt", "lead")
        assert.strictEqual(yield* fs.readToString("lead.txt"), "lead")
        assert.strictEqual(yield* fs.readToString("/lead.txt"), "lead")
        assert.include((yield* fs.list("/")).map((e) => e.path), "/lead.txt")
      }))

    test("\".\" and empty segments are dropped", () =>
      Effect.gen(function*() {
        const fs = yield* seeded
        yield* fs.write("./x//y/./z.txt", "z")
        assert.strictEqual(yield* fs.readToString("x/y/z.txt"), "z")
        assert.strictEqual((yield* fs.stat("x/./y//z.txt/")).path, "/x/y/z.txt")
        assert.deepStrictEqual((yield* fs.list("x")).map((e) => e.path), ["/x/y"])
      }))

    test("\"..\" is resolved lexically", () =>
      Effect.gen(function*() {
        const fs = yield* seeded
        yield* fs.write("a/../b.txt", "b")
        assert.strictEqual(yield* fs.readToString("b.txt"), "b")
        assert.isFalse(yield* fs.exists("a"), "the skipped segment is not created")
        assert.strictEqual(yield* fs.readToString("no/such/../../b.txt"), "b", "skipped segments need not exist")
        assert.strictEqual(yield* fs.readToString("dir/../dir/./inner.txt"), "inner")
      }))

    for (const path of ["..", "../x", "a/../../x", "/../x", "./../x", "dir/../../existing.txt"]) {
      test(`${JSON.stringify(path)} climbs above the root: InvalidPath for every operation`, () =>
        Effect.gen(function*() {
          const fs = yield* seeded
          yield* refusedEverywhere(fs, path)
          yield* assertUnchanged(fs)
        }))
    }

    for (const path of ["a\0b", "\0", "dir/inner.txt\0.png", "a\u0001b", "dir/tab\there", "line\nbreak", "x\u001f"]) {
      test(`a NUL byte or control character (${JSON.stringify(path)}) is InvalidPath for every operation`, () =>
        Effect.gen(function*() {
          const fs = yield* seeded
          yield* refusedEverywhere(fs, path)
          yield* assertUnchanged(fs)
        }))
    }

    test("the root (\"\", \"/\", \".\", \"a/..\") is fine for list, stat, exists and mkdir", () =>
      Effect.gen(function*() {
        const fs = yield* seeded
        for (const root of ["", "/", ".", "a/..", "//"]) {
          assert.deepStrictEqual(names(yield* fs.list(root)), ["dir", "existing.txt"])
          assert.strictEqual((yield* fs.stat(root)).kind, "directory")
          assert.isTrue(yield* fs.exists(root))
          yield* fs.mkdir(root)
        }
        yield* assertUnchanged(fs)
      }))

    for (const root of ["", "/", ".", "a/.."]) {
      test(`the root (${JSON.stringify(root)}) is InvalidPath for write, remove, removeDir, rename and copy`, () =>
        Effect.gen(function*() {
          const fs = yield* seeded
          for (const op of needsName) {
            yield* op.run(fs, root).pipe(
              expectFailure("InvalidPath"),
              Effect.map((error) => assert.strictEqual(error.path, root, `${op.name}: path field`))
            )
          }
          yield* assertUnchanged(fs)
        }))
    }
  })
}
