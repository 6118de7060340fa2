/**
 * `removeTree` (internal/local/tree.ts) empties trash entries: small trees in one
 * synchronous step, larger ones in batches. Both must delete everything below the entry
 * and nothing a symlink inside points to.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as NodePath from "node:path"
import { removeTree } from "../../src/internal/local/tree.js"

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
