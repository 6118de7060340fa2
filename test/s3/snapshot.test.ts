/**
 * Snapshot mounts of cloud volumes (issue 4 item 7, the engine): materialise into a local
 * cache, download only what changed, commit local changes back, last writer wins per file.
 * Runs against the memory backend always and against RADOS Gateway when it is configured.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import { bucketFor, describeS3, freshLayer } from "./support.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-snapshot-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Every entry below `root` as "path" (dirs end in /) -> content. */
const tree = (root: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const visit = (rel: string) => {
    for (const entry of NodeFs.readdirSync(NodePath.join(root, rel), { withFileTypes: true })) {
      const path = `${rel}/${entry.name}`
      if (entry.isDirectory()) {
        out[`${path}/`] = ""
        visit(path)
      } else out[path] = NodeFs.readFileSync(NodePath.join(root, path), "utf8")
    }
  }
  visit("")
  return out
}

const mtime = (path: string) => NodeFs.statSync(path).mtimeMs

const snapshotTests = (layer: () => Layer.Layer<VolumeBackend, unknown>) => {
  it.scopedLive("materialise copies the tree; a second run downloads only what changed", () =>
    Effect.gen(function*() {
      const dir = NodePath.join(yield* tempDir, "cache")
      const vol = yield* Volume.builder("snap").create()
      const fs = vol.fs()
      yield* fs.write("a.txt", "alpha")
      yield* fs.write("sub/b.txt", "bravo")
      yield* fs.mkdir("empty/dir")
      assert.strictEqual(yield* S3Backend.materializeSnapshot(vol, dir), dir)
      assert.deepStrictEqual(tree(dir), {
        "/a.txt": "alpha",
        "/empty/": "",
        "/empty/dir/": "",
        "/sub/": "",
        "/sub/b.txt": "bravo"
      })
      // Mark the cached copies so a re-download would show.
      const old = new Date(Date.now() - 3_600_000)
      for (const f of ["a.txt", "sub/b.txt"]) NodeFs.utimesSync(NodePath.join(dir, f), old, old)
      yield* S3Backend.materializeSnapshot(vol, dir) // records the new local stamps
      const before = { a: mtime(NodePath.join(dir, "a.txt")), b: mtime(NodePath.join(dir, "sub/b.txt")) }

      yield* Effect.sleep("5 millis")
      yield* fs.write("sub/b.txt", "bravo, changed elsewhere")
      yield* fs.removeDir("empty")
      yield* fs.write("new.txt", "new")
      yield* S3Backend.materializeSnapshot(vol, dir)
      assert.deepStrictEqual(tree(dir), {
        "/a.txt": "alpha",
        "/new.txt": "new",
        "/sub/": "",
        "/sub/b.txt": "bravo, changed elsewhere"
      })
      assert.strictEqual(mtime(NodePath.join(dir, "a.txt")), before.a, "an unchanged file is not downloaded again")
      assert.notStrictEqual(mtime(NodePath.join(dir, "sub/b.txt")), before.b, "a changed file is downloaded")
    }).pipe(Effect.provide(layer())))

  it.scopedLive("commit uploads changes and deletions; files not touched locally keep other writers' data", () =>
    Effect.gen(function*() {
      const dir = NodePath.join(yield* tempDir, "cache")
      const vol = yield* Volume.builder("snap").create()
      const fs = vol.fs()
      yield* fs.write("keep.txt", "keep")
      yield* fs.write("edit.txt", "edit me")
      yield* fs.write("gone.txt", "delete me")
      yield* fs.write("old/x.txt", "x")
      yield* fs.write("theirs.txt", "v1")
      yield* S3Backend.materializeSnapshot(vol, dir)

      // The sandbox works in the cache...
      NodeFs.writeFileSync(NodePath.join(dir, "edit.txt"), "edited in the sandbox")
      NodeFs.rmSync(NodePath.join(dir, "gone.txt"))
      NodeFs.rmSync(NodePath.join(dir, "old"), { recursive: true })
      NodeFs.mkdirSync(NodePath.join(dir, "made/deep"), { recursive: true })
      NodeFs.writeFileSync(NodePath.join(dir, "made/new.txt"), "created in the sandbox")
      NodeFs.symlinkSync("keep.txt", NodePath.join(dir, "link"))
      // ...while another machine changes a file the sandbox never touched.
      yield* fs.write("theirs.txt", "v2 from another machine")

      const result = yield* S3Backend.commitSnapshot(vol, dir)
      assert.deepStrictEqual(result.uploaded, ["/edit.txt", "/made/new.txt"])
      assert.deepStrictEqual(result.deleted, ["/gone.txt", "/old"])
      assert.deepStrictEqual(result.skipped, ["/link"])
      assert.strictEqual(yield* fs.readToString("edit.txt"), "edited in the sandbox")
      assert.strictEqual(yield* fs.readToString("made/new.txt"), "created in the sandbox")
      assert.strictEqual((yield* fs.stat("made/deep")).kind, "directory")
      assert.isFalse(yield* fs.exists("gone.txt"))
      assert.isFalse(yield* fs.exists("old"))
      assert.strictEqual(yield* fs.readToString("keep.txt"), "keep")
      assert.strictEqual(yield* fs.readToString("theirs.txt"), "v2 from another machine", "last writer wins per file")
      assert.strictEqual(
        (yield* Volume.get("snap")).usedBytes,
        "keep".length + "edited in the sandbox".length + "created in the sandbox".length + "v2 from another machine".length
      )
      // A second commit with nothing changed sends nothing.
      const again = yield* S3Backend.commitSnapshot(vol, dir)
      assert.deepStrictEqual([again.uploaded, again.deleted], [[], []])
    }).pipe(Effect.provide(layer())))

  it.scopedLive("commit respects the volume's quota", () =>
    Effect.gen(function*() {
      const dir = NodePath.join(yield* tempDir, "cache")
      const vol = yield* Volume.builder("small").quota(1).create()
      yield* S3Backend.materializeSnapshot(vol, dir)
      NodeFs.writeFileSync(NodePath.join(dir, "big.bin"), new Uint8Array(2 * 1024 * 1024))
      const error = yield* Effect.flip(S3Backend.commitSnapshot(vol, dir))
      assert.strictEqual(error._tag, "QuotaExceeded")
      assert.isFalse(yield* vol.fs().exists("big.bin"))
    }).pipe(Effect.provide(layer())))
}

describe("snapshot mounts (memory backend)", () => snapshotTests(() => MemoryBackend.layer))

describeS3("snapshot mounts (RADOS Gateway)", () => snapshotTests(() => freshLayer(bucketFor("snapshot"))))
