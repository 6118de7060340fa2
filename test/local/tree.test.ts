/**
 * `removeTree` (internal/local/tree.ts) empties trash entries: small trees in one
 * synchronous step, larger ones in batches. Both must delete everything below the entry
 * and nothing a symlink inside points to. `measureTree` likewise measures small trees in
 * one step and larger ones in batches: both must give the same usage, delete the doomed
 * temporaries and count none of them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import * as NodePath from "node:path"
import { measureTree, removeTree } from "../../src/internal/local/tree.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(NodePath.join(tmpdir(), "ev-tree-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A tree of `files` files spread over a few directories, with links to the outside. */
const populate = (root: string, outside: string, files: number) => {
  mkdirSync(NodePath.join(root, "data", "a", "b"), { recursive: true })
  for (let i = 0; i < files; i++) writeFileSync(NodePath.join(root, "data", i % 2 === 0 ? "a" : "a/b", `f${i}`), "x")
  symlinkSync(NodePath.join(outside, "keep.txt"), NodePath.join(root, "data", "to-file"))
  symlinkSync(outside, NodePath.join(root, "data", "a", "to-dir"))
  mkdirSync(NodePath.join(root, "data", "ro"))
  writeFileSync(NodePath.join(root, "data", "ro", "inside"), "y")
  chmodSync(NodePath.join(root, "data", "ro"), 0o555)
  writeFileSync(NodePath.join(root, Buffer.from([0x66, 0xff]).toString("latin1")), "z")
}

describe("removeTree", () => {
  for (const files of [4, 1_000]) {
    it.scoped(`removes a tree of ${files} files and never what its symlinks point to`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const outside = NodePath.join(dir, "outside")
        mkdirSync(outside)
        writeFileSync(NodePath.join(outside, "keep.txt"), "kept")
        const entry = NodePath.join(dir, "trash-entry")
        populate(entry, outside, files)
        yield* removeTree(entry)
        assert.isFalse(existsSync(entry))
        assert.strictEqual(readFileSync(NodePath.join(outside, "keep.txt"), "utf8"), "kept")
      }))
  }

  it.scoped("a missing entry is nothing to do, and a file entry is unlinked", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* removeTree(NodePath.join(dir, "absent"))
      writeFileSync(NodePath.join(dir, "file"), "x")
      yield* removeTree(NodePath.join(dir, "file"))
      assert.isFalse(existsSync(NodePath.join(dir, "file")))
    }))
})

describe("measureTree", () => {
  const doomed = (name: string) => name.startsWith("doomed-")
  // 4 files: the one-step walk; 1,000: over its budget, the batched walk.
  for (const files of [4, 1_000]) {
    it.scoped(`a tree of ${files} files: files and links counted, doomed temporaries deleted and not counted`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const outside = NodePath.join(dir, "outside")
        mkdirSync(outside)
        writeFileSync(NodePath.join(outside, "big.bin"), Buffer.alloc(100_000))
        const root = NodePath.join(dir, "root")
        mkdirSync(NodePath.join(root, "a", "b"), { recursive: true })
        for (let i = 0; i < files; i++) writeFileSync(NodePath.join(root, i % 2 === 0 ? "a" : "a/b", `f${i}`), "xy")
        symlinkSync(NodePath.join(outside, "big.bin"), NodePath.join(root, "a", "link"))
        writeFileSync(NodePath.join(root, "a", "b", "doomed-temp"), Buffer.alloc(50_000))
        const fd = openSync(root, "r")
        const before = yield* measureTree(fd, "/")
        assert.strictEqual(before.files, files + 2, "the temporary counts while it is not doomed")
        const after = yield* measureTree(fd, "/", doomed).pipe(Effect.ensuring(Effect.sync(() => closeSync(fd))))
        const linkBytes = NodePath.join(outside, "big.bin").length
        assert.strictEqual(after.files, files + 1)
        assert.strictEqual(after.logicalBytes, 2 * files + linkBytes, "the link counts as itself, not its target")
        assert.deepStrictEqual(readdirSync(NodePath.join(root, "a", "b")).filter(doomed), [])
        assert.strictEqual(readFileSync(NodePath.join(outside, "big.bin")).length, 100_000)
      }))
  }

  it.scoped("an unfinished copy (a doomed directory) is removed with what is in it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const root = NodePath.join(dir, "root")
      mkdirSync(NodePath.join(root, "doomed-copy", "deep"), { recursive: true })
      writeFileSync(NodePath.join(root, "doomed-copy", "deep", "part"), "partial")
      writeFileSync(NodePath.join(root, "kept"), "kept")
      const fd = openSync(root, "r")
      const usage = yield* measureTree(fd, "/", doomed).pipe(Effect.ensuring(Effect.sync(() => closeSync(fd))))
      assert.strictEqual(usage.files, 1)
      assert.strictEqual(usage.logicalBytes, 4)
      assert.deepStrictEqual(readdirSync(root), ["kept"])
    }))
})
