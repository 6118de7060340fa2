/**
 * Snapshot mounts of cloud volumes, the engine: materialise into a local cache, download only
 * what changed, commit local changes back path by path, three-way against the state
 * materialised at start (issue 17 items 11 and 12). "Another machine" is a second backend
 * layer on the same bucket and prefix (on the memory backend: the same store). Runs against
 * the memory backend always and against RADOS Gateway when it is configured.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { Scope } from "effect"
import * as NodeChild from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Claim from "../../src/internal/snapshot/claim.js"
import * as Trees from "../../src/internal/snapshot/trees.js"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import { onB, twoMachines } from "../sandbox/snapshotMount.js"
import type { Machines } from "../sandbox/snapshotMount.js"
import { bucketFor, describeS3, options, uniquePrefix } from "./support.js"

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

/** A new volume holding `files`, materialised into a fresh cache directory. */
const materialized = (name: string, files: Readonly<Record<string, string>>) =>
  Effect.gen(function*() {
    const dir = NodePath.join(yield* tempDir, "cache")
    const vol = yield* Volume.builder(name).create()
    const fs = vol.fs()
    for (const [path, content] of Object.entries(files)) yield* fs.write(path, content)
    yield* S3Backend.materializeSnapshot(vol, dir)
    return { dir, fs, vol }
  })

const snapshotTests = (machines: () => Effect.Effect<Machines, unknown, Scope.Scope>) => {
  const run = <A, E>(body: (m: Machines) => Effect.Effect<A, E, VolumeBackend | Scope.Scope>) =>
    Effect.gen(function*() {
      const m = yield* machines()
      return yield* Effect.provide(body(m), m.a)
    })

  it.scopedLive("materialise copies the tree; a second run downloads only what changed", () =>
    run(() =>
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
      })
    ))

  it.scopedLive("commit uploads changes and deletions; files not touched locally keep other writers' data", () =>
    run((m) =>
      Effect.gen(function*() {
        const { dir, fs, vol } = yield* materialized("snap", { "keep.txt": "keep", "edit.txt": "edit me", "gone.txt": "delete me", "old/x.txt": "x", "theirs.txt": "v1" })

        // The sandbox works in the cache...
        NodeFs.writeFileSync(NodePath.join(dir, "edit.txt"), "edited in the sandbox")
        NodeFs.rmSync(NodePath.join(dir, "gone.txt"))
        NodeFs.rmSync(NodePath.join(dir, "old"), { recursive: true })
        NodeFs.mkdirSync(NodePath.join(dir, "made/deep"), { recursive: true })
        NodeFs.writeFileSync(NodePath.join(dir, "made/new.txt"), "created in the sandbox")
        NodeFs.symlinkSync("keep.txt", NodePath.join(dir, "link"))
        // ...while another machine changes a file the sandbox never touched.
        yield* onB(m, Effect.flatMap(Volume.get("snap"), (v) => v.fs().write("theirs.txt", "v2 from another machine")))

        const result = yield* S3Backend.commitSnapshot(vol, dir)
        // A link crosses where the volume can hold links (see the links test), else it is skipped.
        const links = Option.isSome(Trees.linkOps(fs))
        assert.deepStrictEqual(result.uploaded, ["/edit.txt", ...(links ? ["/link"] : []), "/made/new.txt"])
        assert.deepStrictEqual(result.deleted, ["/gone.txt", "/old", "/old/x.txt"])
        assert.deepStrictEqual(result.skipped, links ? [] : ["/link"])
        assert.deepStrictEqual(result.conflicts, [])
        assert.strictEqual(yield* fs.readToString("edit.txt"), "edited in the sandbox")
        assert.strictEqual(yield* fs.readToString("made/new.txt"), "created in the sandbox")
        assert.strictEqual((yield* fs.stat("made/deep")).kind, "directory")
        assert.isFalse(yield* fs.exists("gone.txt"))
        assert.isFalse(yield* fs.exists("old"))
        assert.strictEqual(yield* fs.readToString("keep.txt"), "keep")
        assert.strictEqual(yield* fs.readToString("theirs.txt"), "v2 from another machine")
        assert.strictEqual(
          (yield* Volume.get("snap")).usedBytes,
          "keep".length + "edited in the sandbox".length + "created in the sandbox".length + "v2 from another machine".length +
            // A link counts as its target's length (SPEC §2).
            (links ? "keep.txt".length : 0)
        )
        // A second commit with nothing changed sends nothing.
        const again = yield* S3Backend.commitSnapshot(vol, dir)
        assert.deepStrictEqual([again.uploaded, again.deleted, again.conflicts], [[], [], []])
        // The commit read back what it stored: changing a committed file again is no conflict.
        NodeFs.writeFileSync(NodePath.join(dir, "edit.txt"), "edited twice")
        const third = yield* S3Backend.commitSnapshot(vol, dir)
        assert.deepStrictEqual([third.uploaded, third.conflicts], [["/edit.txt"], []])
        assert.strictEqual(yield* fs.readToString("edit.txt"), "edited twice")
      })
    ))

  it.scopedLive("a removed directory is removed only down to what the sandbox saw: another machine's new file survives", () =>
    run((m) =>
      Effect.gen(function*() {
        const { dir, fs, vol } = yield* materialized("snap", { "dir/a.txt": "seen by the sandbox", "dir/sub/b.txt": "seen too", "gone/c.txt": "removed by both", "edited-there.txt": "v1" })

        // The sandbox runs `rm -rf dir gone edited-there.txt` while machine B adds a file below
        // dir and edits edited-there.txt.
        for (const p of ["dir", "gone", "edited-there.txt"]) NodeFs.rmSync(NodePath.join(dir, p), { recursive: true })
        yield* onB(
          m,
          Effect.gen(function*() {
            const theirs = (yield* Volume.get("snap")).fs()
            yield* theirs.write("dir/new.txt", "added by machine B")
            yield* theirs.write("edited-there.txt", "v2 from machine B")
          })
        )

        const result = yield* S3Backend.commitSnapshot(vol, dir)
        assert.strictEqual(yield* fs.readToString("dir/new.txt"), "added by machine B")
        assert.strictEqual(yield* fs.readToString("edited-there.txt"), "v2 from machine B")
        assert.isFalse(yield* fs.exists("dir/a.txt"))
        assert.isFalse(yield* fs.exists("dir/sub"))
        assert.isFalse(yield* fs.exists("gone"))
        assert.deepStrictEqual(result.deleted, ["/dir/a.txt", "/dir/sub", "/dir/sub/b.txt", "/gone", "/gone/c.txt"])
        assert.deepStrictEqual(
          result.conflicts.map((c) => [c.volume, c.path, c.reason, c.keptAt]),
          [
            ["snap", "/dir", "RemovedHereChangedThere", Option.none()],
            ["snap", "/edited-there.txt", "RemovedHereChangedThere", Option.none()]
          ]
        )
      })
    ))

  it.scopedLive("a conflicting path does not block the others; the sandbox's version is kept and reported", () =>
    run((m) =>
      Effect.gen(function*() {
        const { dir, fs, vol } = yield* materialized("snap", { "both.txt": "base", "mine.txt": "base", "removed-there.txt": "base" })

        NodeFs.writeFileSync(NodePath.join(dir, "both.txt"), "sandbox version")
        NodeFs.writeFileSync(NodePath.join(dir, "mine.txt"), "sandbox version")
        NodeFs.writeFileSync(NodePath.join(dir, "removed-there.txt"), "sandbox version")
        NodeFs.writeFileSync(NodePath.join(dir, "new.txt"), "sandbox version")
        NodeFs.writeFileSync(NodePath.join(dir, "only-mine.txt"), "sandbox version")
        NodeFs.writeFileSync(NodePath.join(dir, "same.txt"), "made on both sides")
        yield* onB(
          m,
          Effect.gen(function*() {
            const theirs = (yield* Volume.get("snap")).fs()
            yield* theirs.write("both.txt", "machine B version")
            yield* theirs.remove("removed-there.txt")
            yield* theirs.write("new.txt", "machine B version")
            yield* theirs.write("same.txt", "made on both sides")
          })
        )

        const result = yield* S3Backend.commitSnapshot(vol, dir)
        assert.deepStrictEqual(result.uploaded, ["/mine.txt", "/only-mine.txt"], "the same bytes on both sides are no conflict")
        assert.strictEqual(yield* fs.readToString("mine.txt"), "sandbox version")
        assert.strictEqual(yield* fs.readToString("only-mine.txt"), "sandbox version")
        assert.strictEqual(yield* fs.readToString("both.txt"), "machine B version")
        assert.strictEqual(yield* fs.readToString("new.txt"), "machine B version")
        assert.isFalse(yield* fs.exists("removed-there.txt"), "a removal elsewhere is not undone")
        assert.deepStrictEqual(
          result.conflicts.map((c) => [c.path, c.reason]),
          [["/both.txt", "ChangedInBoth"], ["/new.txt", "CreatedInBoth"], ["/removed-there.txt", "ChangedHereRemovedThere"]]
        )
        for (const c of result.conflicts) {
          assert.isTrue(Option.isSome(c.keptAt))
          const kept = Option.getOrThrow(c.keptAt)
          assert.isFalse(kept.startsWith(`${dir}/`), "kept outside the cache, which the next materialise resets")
          assert.strictEqual(NodeFs.readFileSync(kept, "utf8"), "sandbox version")
        }
        // The conflicting paths now follow the store again.
        yield* S3Backend.materializeSnapshot(vol, dir)
        assert.strictEqual(NodeFs.readFileSync(NodePath.join(dir, "both.txt"), "utf8"), "machine B version")
      })
    ))

  it.scopedLive("a path over the quota fails the commit with CommitFailed naming the volume; the rest is committed", () =>
    run(() =>
      Effect.gen(function*() {
        const dir = NodePath.join(yield* tempDir, "cache")
        const vol = yield* Volume.builder("small").quota(1).create()
        yield* S3Backend.materializeSnapshot(vol, dir)
        NodeFs.writeFileSync(NodePath.join(dir, "big.bin"), new Uint8Array(2 * 1024 * 1024))
        NodeFs.writeFileSync(NodePath.join(dir, "small.txt"), "fits")
        const error = yield* Effect.flip(S3Backend.commitSnapshot(vol, dir))
        assert.strictEqual(error._tag, "CommitFailed")
        assert.deepStrictEqual(error.volumes, ["small"])
        assert.deepStrictEqual(error.failures.map((f) => [f.volume, f.path, f.error]), [["small", "/big.bin", "QuotaExceeded"]])
        assert.include(error.message, "\"small\"")
        const kept = Option.getOrThrow(error.failures[0]!.keptAt)
        assert.strictEqual(NodeFs.statSync(kept).size, 2 * 1024 * 1024, "the refused file is kept on the host")
        assert.isFalse(yield* vol.fs().exists("big.bin"))
        assert.strictEqual(yield* vol.fs().readToString("small.txt"), "fits")
      })
    ))

  it.scopedLive("links and permission bits cross the snapshot where the volume has them", () =>
    run(() =>
      Effect.gen(function*() {
        const dir = NodePath.join(yield* tempDir, "cache")
        const vol = yield* Volume.builder("snap").create()
        const fs = vol.fs()
        yield* fs.write("tool.sh", "#!/bin/sh\n")
        const links = Trees.linkOps(fs)
        const modes = Trees.modeOps(fs)
        if (Option.isSome(links)) yield* links.value.symlink("tool.sh", "link")
        if (Option.isSome(modes)) yield* modes.value.chmod("tool.sh", 0o4755)
        yield* S3Backend.materializeSnapshot(vol, dir)
        const toolMode = NodeFs.statSync(NodePath.join(dir, "tool.sh")).mode & 0o7777
        assert.strictEqual(toolMode, Option.isSome(modes) ? 0o755 : (yield* fs.stat("tool.sh")).mode & 0o777, "never setuid")
        if (Option.isSome(links)) assert.strictEqual(NodeFs.readlinkSync(NodePath.join(dir, "link")), "tool.sh")

        NodeFs.chmodSync(NodePath.join(dir, "tool.sh"), 0o700)
        NodeFs.symlinkSync("../elsewhere", NodePath.join(dir, "new-link"))
        const result = yield* S3Backend.commitSnapshot(vol, dir)
        assert.deepStrictEqual(result.conflicts, [])
        if (Option.isSome(links)) {
          assert.deepStrictEqual(result.uploaded, ["/new-link"])
          assert.strictEqual(yield* links.value.readlink("new-link"), "../elsewhere", "stored as given, never followed")
        } else {
          assert.deepStrictEqual([result.uploaded, result.skipped], [[], ["/new-link"]])
        }
        if (Option.isSome(modes)) assert.strictEqual((yield* fs.stat("tool.sh")).mode & 0o7777, 0o700)
        assert.strictEqual(yield* fs.readToString("tool.sh"), "#!/bin/sh\n", "a chmod alone uploads nothing")
      })
    ))

  it.scopedLive("when the store fails, every change not sent is a failure and is kept on the host", () =>
    run((m) =>
      Effect.gen(function*() {
        const { dir, vol } = yield* materialized("doomed", { "a.txt": "base" })
        NodeFs.writeFileSync(NodePath.join(dir, "a.txt"), "changed")
        NodeFs.mkdirSync(NodePath.join(dir, "sub"))
        NodeFs.writeFileSync(NodePath.join(dir, "sub/b.txt"), "new")
        yield* onB(m, Volume.remove("doomed"))
        const error = yield* Effect.flip(S3Backend.commitSnapshot(vol, dir))
        assert.strictEqual(error._tag, "CommitFailed")
        assert.deepStrictEqual(error.volumes, ["doomed"])
        assert.deepStrictEqual(
          error.failures.map((f) => [f.path, f.error, Option.map(f.keptAt, (at) => NodeFs.readFileSync(at, "utf8"))]),
          [
            ["/a.txt", "VolumeNotFound", Option.some("changed")],
            ["/sub", "VolumeNotFound", Option.none()],
            ["/sub/b.txt", "VolumeNotFound", Option.some("new")]
          ]
        )
      })
    ))

  it.scopedLive("a commit without the manifest of its materialise fails and changes nothing", () =>
    run(() =>
      Effect.gen(function*() {
        const { dir, vol } = yield* materialized("snap", { "a.txt": "store" })
        NodeFs.writeFileSync(NodePath.join(dir, "b.txt"), "local")
        NodeFs.rmSync(`${dir}.manifest.json`)
        const error = yield* Effect.flip(S3Backend.commitSnapshot(vol, dir))
        assert.strictEqual(error._tag, "CommitFailed")
        assert.deepStrictEqual(error.failures.map((f) => [f.path, f.error, f.keptAt]), [["/", "StorageError", Option.some(dir)]])
        assert.isFalse(yield* vol.fs().exists("b.txt"))
      })
    ))
}

describe("snapshot mounts (memory backend)", () =>
  snapshotTests(() => twoMachines(() => MemoryBackend.layer, "shared-by-one-layer")))

describeS3("snapshot mounts (RADOS Gateway)", () =>
  snapshotTests(() =>
    Effect.suspend(() => {
      const settings = options(bucketFor("snapshot"), uniquePrefix())
      return twoMachines(() => S3Backend.layer(settings), "outside-the-layer")
    })
  ))

describe("snapshot cache claims", () => {
  it.scopedLive("a cache held by a live sandbox is not shared; a claim of a killed process is taken over", () =>
    Effect.gen(function*() {
      const dir = NodePath.join(yield* tempDir, "cache@job")
      const first = yield* Effect.scoped(Effect.gen(function*() {
        assert.strictEqual(yield* Claim.claim(dir), dir, "the first sandbox gets the shared cache")
        const second = yield* Effect.scoped(Claim.claim(dir))
        assert.notStrictEqual(second, dir, "a second one at the same time gets its own")
        assert.isFalse(NodeFs.existsSync(second), "and that one goes with its scope")
        return dir
      }))
      assert.strictEqual(yield* Effect.scoped(Claim.claim(first)), dir, "released with the scope")

      // A process killed with SIGKILL while holding the claim.
      const child = NodeChild.spawn("sleep", ["60"])
      const pid = child.pid!
      yield* Effect.async<void>((resume) => {
        child.on("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
      const stale = `${dir}#claim#${pid}-0-abcdef`
      NodeFs.writeFileSync(stale, "")
      assert.strictEqual(yield* Effect.scoped(Claim.claim(dir)), dir)
      assert.isFalse(NodeFs.existsSync(stale), "the dead owner's claim is removed")
    }))
})
