/**
 * SPEC §3: whole-file reads and writes, listing, directories, copy, rename, stat, exists.
 */
import { assert, describe } from "@effect/vitest"
import { DateTime, Effect, Option } from "effect"
import type { FsEntry } from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { assertSameBytes, bytes, createVolume, expectFailure, expectFsError, names, some, utf8 } from "./support.js"

/** A fresh directory volume's file system. */
const freshFs = () => Effect.map(createVolume("files"), (vol) => vol.fs())

/** Loose permission checks: owner can read and write files and enter directories. */
const assertMode = (entry: FsEntry) => {
  assert.isAtMost(entry.mode, 0o7777, `${entry.path}: mode holds permission bits only`)
  assert.notStrictEqual(entry.mode & 0o777, 0, `${entry.path}: some permission bits`)
  if (entry.kind === "file") assert.strictEqual(entry.mode & 0o600, 0o600, `${entry.path}: owner rw`)
  if (entry.kind === "directory") assert.strictEqual(entry.mode & 0o700, 0o700, `${entry.path}: owner rwx`)
}

export const filesTests = ({ test }: Context) => {
  describe("read and write", () => {
    test("a string is written as UTF-8 and reads back", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const text = "héllo ✓ 🚀\nline two"
        yield* fs.write("greeting.txt", text)
        assert.strictEqual(yield* fs.readToString("greeting.txt"), text)
        assertSameBytes(yield* fs.read("greeting.txt"), utf8(text))
      }))

    test("bytes are written and read back unchanged", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const data = bytes(70_000, 7)
        yield* fs.write("blob.bin", data)
        assertSameBytes(yield* fs.read("blob.bin"), data)
        yield* fs.write("zeros.bin", new Uint8Array(3))
        assertSameBytes(yield* fs.read("zeros.bin"), new Uint8Array(3))
      }))

    test("an empty file can be written and read", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("empty", "")
        assert.strictEqual((yield* fs.read("empty")).byteLength, 0)
        assert.strictEqual(yield* fs.readToString("empty"), "")
        assert.strictEqual((yield* fs.stat("empty")).size, 0)
      }))

    test("write creates missing parent directories", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("deep/er/still/file.txt", "x")
        assert.strictEqual(yield* fs.readToString("deep/er/still/file.txt"), "x")
        assert.strictEqual((yield* fs.stat("deep")).kind, "directory")
        assert.strictEqual((yield* fs.stat("deep/er/still")).kind, "directory")
      }))

    test("overwriting replaces the whole content", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("f.txt", "a much longer original content")
        yield* fs.write("f.txt", "short")
        assert.strictEqual(yield* fs.readToString("f.txt"), "short")
        assert.strictEqual((yield* fs.stat("f.txt")).size, 5)
        assert.deepStrictEqual(names(yield* fs.list("/")), ["f.txt"])
      }))

    test("readToString of invalid UTF-8 fails with InvalidData instead of replacing characters", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const raw = new Uint8Array([0x41, 0xff, 0xfe, 0x42])
        yield* fs.write("dir/bad.txt", raw)
        const error = yield* fs.readToString("/dir//bad.txt").pipe(expectFsError("InvalidData"))
        assert.strictEqual(error.path, "/dir/bad.txt")
        assertSameBytes(yield* fs.read("dir/bad.txt"), raw, "read returns the raw bytes")
      }))

    test("reading a missing file fails with PathNotFound carrying the normalised path", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.mkdir("dir")
        const error = yield* fs.read("//dir/./missing.txt").pipe(expectFailure("PathNotFound"))
        assert.strictEqual(error.path, "/dir/missing.txt")
        const again = yield* fs.readToString("dir/sub/../missing.txt").pipe(expectFailure("PathNotFound"))
        assert.strictEqual(again.path, "/dir/missing.txt")
      }))

    test("reading a directory fails with IsADirectory", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.mkdir("dir")
        yield* fs.read("dir").pipe(expectFsError("IsADirectory"))
        yield* fs.readToString("dir").pipe(expectFsError("IsADirectory"))
      }))

    test("writing onto a directory fails with IsADirectory and keeps the directory", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/inner.txt", "keep")
        yield* fs.write("dir", "x").pipe(expectFsError("IsADirectory"))
        assert.strictEqual(yield* fs.readToString("dir/inner.txt"), "keep")
      }))

    test("a file used as a parent directory gives NotADirectory", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("f", "file")
        yield* fs.write("f/x.txt", "x").pipe(expectFsError("NotADirectory"))
        yield* fs.mkdir("f/sub").pipe(expectFsError("NotADirectory"))
        yield* fs.read("f/x.txt").pipe(expectFsError("NotADirectory"))
        yield* fs.stat("f/x.txt").pipe(expectFsError("NotADirectory"))
        yield* fs.list("f").pipe(expectFsError("NotADirectory"))
        assert.isFalse(yield* fs.exists("f/x.txt"))
        assert.strictEqual(yield* fs.readToString("f"), "file")
      }))
  })

  describe("list", () => {
    test("lists immediate children sorted by name, with kind, size, mode and mtime", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const before = DateTime.toEpochMillis(DateTime.unsafeNow())
        yield* fs.write("zeta.txt", "zz")
        yield* fs.mkdir("mid")
        yield* fs.write("mid/nested.txt", "not listed at the root")
        yield* fs.write("alpha.bin", new Uint8Array(10))
        yield* fs.write("beta", "bbb")
        const after = DateTime.toEpochMillis(DateTime.unsafeNow())
        const entries = yield* fs.list("/")
        assert.deepStrictEqual(entries.map((e) => e.path), ["/alpha.bin", "/beta", "/mid", "/zeta.txt"])
        assert.deepStrictEqual(entries.map((e) => e.kind), ["file", "file", "directory", "file"])
        assert.strictEqual(entries[0]!.size, 10)
        assert.strictEqual(entries[1]!.size, 3)
        assert.strictEqual(entries[3]!.size, 2)
        for (const entry of entries) {
          assertMode(entry)
          assert.isNumber(entry.uid)
          assert.isNumber(entry.gid)
          const modified = DateTime.toEpochMillis(some(entry.modified, `${entry.path} modified`))
          assert.isAtLeast(modified, before - 5000)
          assert.isAtMost(modified, after + 5000)
        }
      }))

    test("paths are /-anchored and normalised: list(\"a//b/\") yields /a/b/<name>", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("a/b/one.txt", "1")
        yield* fs.mkdir("a/b/two")
        assert.deepStrictEqual((yield* fs.list("a//b/")).map((e) => e.path), ["/a/b/one.txt", "/a/b/two"])
        assert.deepStrictEqual((yield* fs.list("/a/./b")).map((e) => e.path), ["/a/b/one.txt", "/a/b/two"])
        assert.deepStrictEqual((yield* fs.list("a/x/../b")).map((e) => e.path), ["/a/b/one.txt", "/a/b/two"])
      }))

    test("the root can be listed as \"\", \"/\" or no argument", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        assert.deepStrictEqual(yield* fs.list("/"), [])
        yield* fs.write("x", "x")
        for (const listed of [yield* fs.list(""), yield* fs.list("/"), yield* fs.list(), yield* fs.list(".")]) {
          assert.deepStrictEqual(listed.map((e) => e.path), ["/x"])
        }
      }))

    test("names sort by code unit, the same on every backend", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const created = ["b", "B", "a10", "a9", "_x", "Z", "a", "~"]
        for (const name of created) yield* fs.write(name, name)
        const expected = [...created].sort()
        assert.deepStrictEqual(names(yield* fs.list("/")), expected)
      }))

    test("an empty directory lists empty; a missing one is PathNotFound; a file is NotADirectory", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.mkdir("empty")
        yield* fs.write("file", "x")
        assert.deepStrictEqual(yield* fs.list("empty"), [])
        const error = yield* fs.list("missing/dir").pipe(expectFailure("PathNotFound"))
        assert.include(error.path, "/missing")
        yield* fs.list("file").pipe(expectFsError("NotADirectory"))
      }))
  })

  describe("mkdir", () => {
    test("creates parents and is idempotent", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.mkdir("x/y/z")
        yield* fs.write("x/y/z/keep.txt", "keep")
        yield* fs.mkdir("x/y/z")
        yield* fs.mkdir("x/y")
        yield* fs.mkdir("/")
        yield* fs.mkdir("")
        assert.strictEqual((yield* fs.stat("x/y/z")).kind, "directory")
        assert.strictEqual(yield* fs.readToString("x/y/z/keep.txt"), "keep")
        assert.deepStrictEqual(names(yield* fs.list("x/y")), ["z"])
      }))

    test("refuses a path that is an existing file with AlreadyExists", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("f", "file")
        yield* fs.mkdir("f").pipe(expectFsError("AlreadyExists"))
        assert.strictEqual(yield* fs.readToString("f"), "file")
      }))
  })

  describe("remove / removeDir", () => {
    test("remove deletes one file", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/a.txt", "a")
        yield* fs.write("dir/b.txt", "b")
        yield* fs.remove("dir/a.txt")
        assert.isFalse(yield* fs.exists("dir/a.txt"))
        assert.deepStrictEqual(names(yield* fs.list("dir")), ["b.txt"])
      }))

    test("remove of a missing file fails with PathNotFound", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const error = yield* fs.remove("/nope.txt").pipe(expectFailure("PathNotFound"))
        assert.strictEqual(error.path, "/nope.txt")
      }))

    test("remove of a directory fails with IsADirectory and keeps it", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/a.txt", "a")
        yield* fs.mkdir("empty")
        yield* fs.remove("dir").pipe(expectFsError("IsADirectory"))
        yield* fs.remove("empty").pipe(expectFsError("IsADirectory"))
        assert.strictEqual(yield* fs.readToString("dir/a.txt"), "a")
        assert.isTrue(yield* fs.exists("empty"))
      }))

    test("removeDir removes a whole tree", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("tree/a.txt", "a")
        yield* fs.write("tree/sub/b.txt", "b")
        yield* fs.mkdir("tree/sub/empty")
        yield* fs.write("other.txt", "stays")
        yield* fs.removeDir("tree")
        assert.isFalse(yield* fs.exists("tree"))
        assert.deepStrictEqual(names(yield* fs.list("/")), ["other.txt"])
        yield* fs.mkdir("empty")
        yield* fs.removeDir("empty")
        assert.isFalse(yield* fs.exists("empty"))
      }))

    test("removeDir of a missing directory fails with PathNotFound", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.removeDir("nope").pipe(expectFailure("PathNotFound"))
      }))

    test("removeDir of the root fails with InvalidPath and removes nothing", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("keep.txt", "keep")
        for (const root of ["/", "", ".", "a/..", "//"]) {
          yield* fs.removeDir(root).pipe(expectFailure("InvalidPath"))
        }
        assert.strictEqual(yield* fs.readToString("keep.txt"), "keep")
      }))

    test("removeDir of a file fails with NotADirectory and keeps it", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("f.txt", "keep")
        yield* fs.removeDir("f.txt").pipe(expectFsError("NotADirectory"))
        assert.strictEqual(yield* fs.readToString("f.txt"), "keep")
      }))
  })

  describe("copy", () => {
    test("copies a file, creating the target's parents and keeping the source", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const data = bytes(5000, 3)
        yield* fs.write("src.bin", data)
        yield* fs.copy("src.bin", "new/parent/dst.bin")
        assertSameBytes(yield* fs.read("new/parent/dst.bin"), data)
        assertSameBytes(yield* fs.read("src.bin"), data)
        yield* fs.write("src.bin", "changed")
        assertSameBytes(yield* fs.read("new/parent/dst.bin"), data, "the copy is independent of the source")
      }))

    test("copying a file onto an existing file replaces it", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("a.txt", "new")
        yield* fs.write("b.txt", "old and longer")
        yield* fs.copy("a.txt", "b.txt")
        assert.strictEqual(yield* fs.readToString("b.txt"), "new")
      }))

    test("copies a directory tree", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("src/a.txt", "a")
        yield* fs.write("src/sub/b.txt", "b")
        yield* fs.mkdir("src/sub/empty")
        yield* fs.copy("src", "backup/dst")
        assert.deepStrictEqual(names(yield* fs.list("backup/dst")), ["a.txt", "sub"])
        assert.deepStrictEqual(names(yield* fs.list("backup/dst/sub")), ["b.txt", "empty"])
        assert.strictEqual(yield* fs.readToString("backup/dst/a.txt"), "a")
        assert.strictEqual(yield* fs.readToString("backup/dst/sub/b.txt"), "b")
        assert.strictEqual((yield* fs.stat("backup/dst/sub/empty")).kind, "directory")
        assert.deepStrictEqual(names(yield* fs.list("src")), ["a.txt", "sub"], "the source is intact")
      }))

    test("copying a directory onto an existing path fails with AlreadyExists", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("src/a.txt", "a")
        yield* fs.write("dst/keep.txt", "keep")
        yield* fs.copy("src", "dst").pipe(expectFsError("AlreadyExists"))
        assert.deepStrictEqual(names(yield* fs.list("dst")), ["keep.txt"])
      }))

    test("copy onto itself fails with InvalidPath", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("a.txt", "a")
        yield* fs.mkdir("dir")
        yield* fs.copy("a.txt", "a.txt").pipe(expectFailure("InvalidPath"))
        yield* fs.copy("a.txt", "/./a.txt").pipe(expectFailure("InvalidPath"))
        yield* fs.copy("dir", "dir").pipe(expectFailure("InvalidPath"))
        assert.strictEqual(yield* fs.readToString("a.txt"), "a")
      }))

    test("copying a directory into its own subtree fails with InvalidPath", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/a.txt", "a")
        yield* fs.copy("dir", "dir/inner").pipe(expectFailure("InvalidPath"))
        yield* fs.copy("dir", "dir/x/y").pipe(expectFailure("InvalidPath"))
        assert.deepStrictEqual(names(yield* fs.list("dir")), ["a.txt"])
      }))

    test("copy of a missing source fails with PathNotFound and creates nothing", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.copy("missing", "parent/target").pipe(expectFailure("PathNotFound"))
        assert.isFalse(yield* fs.exists("parent/target"))
      }))
  })

  describe("rename", () => {
    test("moves a file, creating the target's parents", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("a.txt", "moving")
        yield* fs.rename("a.txt", "new/home/b.txt")
        assert.isFalse(yield* fs.exists("a.txt"))
        assert.strictEqual(yield* fs.readToString("new/home/b.txt"), "moving")
      }))

    test("moves a directory with its contents", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/a.txt", "a")
        yield* fs.write("dir/sub/b.txt", "b")
        yield* fs.rename("dir", "moved/dir2")
        assert.isFalse(yield* fs.exists("dir"))
        assert.deepStrictEqual(names(yield* fs.list("/")), ["moved"])
        assert.strictEqual(yield* fs.readToString("moved/dir2/a.txt"), "a")
        assert.strictEqual(yield* fs.readToString("moved/dir2/sub/b.txt"), "b")
      }))

    test("renaming onto an existing file replaces it", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("a.txt", "new")
        yield* fs.write("b.txt", "old")
        yield* fs.rename("a.txt", "b.txt")
        assert.strictEqual(yield* fs.readToString("b.txt"), "new")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["b.txt"])
      }))

    test("rename of a missing source fails with PathNotFound", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const error = yield* fs.rename("missing.txt", "x.txt").pipe(expectFailure("PathNotFound"))
        assert.strictEqual(error.path, "/missing.txt")
        assert.isFalse(yield* fs.exists("x.txt"))
      }))

    test("renaming a directory into its own subtree fails with InvalidPath", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/a.txt", "a")
        yield* fs.rename("dir", "dir/inner").pipe(expectFailure("InvalidPath"))
        assert.deepStrictEqual(names(yield* fs.list("dir")), ["a.txt"])
      }))
  })

  describe("stat / exists", () => {
    test("stat of a file reports its metadata", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const before = DateTime.toEpochMillis(DateTime.unsafeNow())
        yield* fs.write("dir/f.txt", "twelve bytes")
        const after = DateTime.toEpochMillis(DateTime.unsafeNow())
        const meta = yield* fs.stat("/dir//f.txt")
        assert.strictEqual(meta.path, "/dir/f.txt")
        assert.strictEqual(meta.kind, "file")
        assert.strictEqual(meta.size, 12)
        assertMode(meta)
        assert.isFalse(meta.readonly)
        assert.isNumber(meta.uid)
        assert.isNumber(meta.gid)
        const modified = DateTime.toEpochMillis(some(meta.modified, "modified"))
        assert.isAtLeast(modified, before - 5000)
        assert.isAtMost(modified, after + 5000)
        assert.isTrue(Option.isOption(meta.accessed))
        assert.isTrue(Option.isOption(meta.created))
      }))

    test("stat of a directory and of the root", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.mkdir("dir")
        const dir = yield* fs.stat("dir")
        assert.strictEqual(dir.kind, "directory")
        assert.strictEqual(dir.path, "/dir")
        assertMode(dir)
        for (const root of ["/", ""]) {
          const meta = yield* fs.stat(root)
          assert.strictEqual(meta.kind, "directory")
          assert.strictEqual(meta.path, "/")
        }
      }))

    test("stat of a missing path fails with PathNotFound carrying the normalised path", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        const error = yield* fs.stat("./gone//x/..").pipe(expectFailure("PathNotFound"))
        assert.strictEqual(error.path, "/gone")
      }))

    test("exists is true for files, directories and the root, false for missing paths", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("dir/f.txt", "x")
        assert.isTrue(yield* fs.exists("dir/f.txt"))
        assert.isTrue(yield* fs.exists("dir"))
        assert.isTrue(yield* fs.exists("/"))
        assert.isTrue(yield* fs.exists(""))
        assert.isFalse(yield* fs.exists("missing"))
        assert.isFalse(yield* fs.exists("dir/missing/deeper"))
        assert.isFalse(yield* fs.exists("dir/f.txt/below"))
      }))
  })
}
