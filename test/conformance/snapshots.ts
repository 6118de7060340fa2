/**
 * SPEC §9 snapshots and forks: what every backend must do, host side. Sandbox rules
 * (holders, in-place writes, snapshot mounts) are tested per runtime in
 * test/sandbox/snapshots.test.ts.
 */
import { assert, describe } from "@effect/vitest"
import { Clock, DateTime, Effect, Fiber, Option, Ref, Stream, TestClock, TestContext } from "effect"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { assertOneSwitch, prepareRestore, readPass, restoreNames } from "./restoreReader.js"
import type { Context } from "./support.js"
import { assertSameBytes, bytes, createVolume, expectFailure, expectFsError, MiB, names, some } from "./support.js"

/**
 * An `onProgress` that records reports, and a check that they never went backwards and
 * that the last one had everything copied (it returns that one).
 */
const watchProgress = (what: string) =>
  Effect.map(Ref.make<Array<Volume.CopyProgress>>([]), (reports) => ({
    onProgress: (p: Volume.CopyProgress) => Ref.update(reports, (all) => [...all, p]),
    check: Effect.gen(function*() {
      const all = yield* Ref.get(reports)
      assert.isAbove(all.length, 0, `${what}: reported`)
      all.forEach((p, i) => {
        assert.isAtMost(p.copiedBytes, p.totalBytes, `${what}: copied within total`)
        assert.isAtMost(p.copiedFiles, p.totalFiles, `${what}: copied files within total`)
        if (i === 0) return
        const before = all[i - 1]!
        assert.isAtLeast(p.copiedBytes, before.copiedBytes, `${what}: bytes never go backwards`)
        assert.isAtLeast(p.copiedFiles, before.copiedFiles, `${what}: files never go backwards`)
      })
      const last = all[all.length - 1]!
      assert.strictEqual(last.copiedBytes, last.totalBytes, `${what}: the last report has every byte copied`)
      assert.strictEqual(last.copiedFiles, last.totalFiles, `${what}: the last report has every file copied`)
      return last
    })
  }))

export const snapshotsTests = ({ options, test }: Context) => {
  describe("snapshots and forks", () => {
    test("the issue's example: snapshot, read-only view, three forks, restore", () =>
      Effect.gen(function*() {
        const base = yield* Volume.builder("workspace").quota(Size.gib(2)).create()
        yield* base.fs().write("/repo/README.md", "v1")
        const snap = yield* Volume.snapshot("workspace", { name: "known-good", labels: { ci: "green" } })
        yield* base.fs().write("/repo/README.md", "v2 (broken)")
        assert.strictEqual(yield* snap.fs().readToString("/repo/README.md"), "v1")
        yield* expectFsError("ReadOnly")(snap.fs().write("/repo/README.md", "nope"))
        const runs = yield* Effect.forEach(
          [1, 2, 3],
          (i) => Volume.fork("workspace", `run-${i}`, { snapshot: "known-good" }),
          { concurrency: 3 }
        )
        for (const run of runs) assert.strictEqual(yield* run.fs().readToString("/repo/README.md"), "v1")
        yield* runs[0]!.fs().write("/repo/README.md", "v1 + run-1")
        assert.strictEqual(yield* runs[1]!.fs().readToString("/repo/README.md"), "v1")
        assert.strictEqual(yield* snap.fs().readToString("/repo/README.md"), "v1")
        assert.strictEqual(yield* base.fs().readToString("/repo/README.md"), "v2 (broken)")
        yield* Volume.restore("workspace", "known-good")
        assert.strictEqual(yield* (yield* Volume.get("workspace")).fs().readToString("/repo/README.md"), "v1")
        assert.strictEqual(yield* base.fs().readToString("/repo/README.md"), "v1")
        assert.strictEqual(yield* runs[0]!.fs().readToString("/repo/README.md"), "v1 + run-1")
      }))

    test("progress: snapshot, fork and restore report copies that never go backwards and end complete", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        // Top-level files and a directory: a local copy splits them into shares.
        for (let i = 0; i < 6; i++) yield* vol.fs().write(`f${i}.bin`, bytes(10_000 + i, i + 1))
        yield* vol.fs().write("d/a.bin", bytes(3000, 7))
        yield* vol.fs().write("d/e/b.bin", bytes(2000, 8))
        const expected = { bytes: 6 * 10_000 + 15 + 3000 + 2000, files: 8 }
        const watch = (what: string) =>
          Effect.map(watchProgress(what), ({ check, onProgress }) => ({
            onProgress,
            check: Effect.flatMap(check, (last) =>
              Effect.sync(() =>
                assert.deepStrictEqual(last, {
                  copiedBytes: expected.bytes,
                  totalBytes: expected.bytes,
                  copiedFiles: expected.files,
                  totalFiles: expected.files
                }, `${what}: the last report has the tree's figures`)))
          }))
        const snapshot = yield* watch("snapshot")
        yield* Volume.snapshot("src", { name: "s", onProgress: snapshot.onProgress })
        yield* snapshot.check
        const fork = yield* watch("fork")
        yield* Volume.fork("src", "copy", { onProgress: fork.onProgress })
        yield* fork.check
        const forkOfSnapshot = yield* watch("fork of a snapshot")
        yield* Volume.fork("src", "copy2", { snapshot: "s", onProgress: forkOfSnapshot.onProgress })
        yield* forkOfSnapshot.check
        yield* vol.fs().write("f0.bin", "changed")
        const restore = yield* watch("restore")
        yield* Volume.restore("src", "s", { onProgress: restore.onProgress })
        yield* restore.check
        assertSameBytes(yield* vol.fs().read("f0.bin"), bytes(10_000, 1))
      }))

    test("a snapshot reports its name, volume, kind, creation time, usage, labels and expiry", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        yield* vol.fs().write("a.bin", bytes(1000, 1))
        yield* vol.fs().write("d/b.bin", bytes(500, 2))
        const before = yield* DateTime.now
        const snap = yield* Volume.snapshot("SRC", { labels: [["k", "1"], ["k", "2"]], expiresIn: "1 hour" })
        const after = yield* DateTime.now
        assert.strictEqual(snap.volume, "src")
        assert.strictEqual(snap.kind, "directory")
        assert.match(snap.name, /^\d{8}T\d{6}\.\d{3}Z$/, "default name is a sortable timestamp")
        assert.strictEqual(snap.usedBytes, 1500)
        assert.deepStrictEqual(snap.labels, [["k", "2"]])
        const created = DateTime.toEpochMillis(snap.createdAt)
        assert.isAtLeast(created, DateTime.toEpochMillis(before) - 1000)
        assert.isAtMost(created, DateTime.toEpochMillis(after) + 1000)
        const expires = DateTime.toEpochMillis(some(snap.expiresAt, "expiresAt"))
        assert.strictEqual(expires - created, 3_600_000)
        const again = yield* Volume.getSnapshot("src", snap.name.toLowerCase())
        assert.strictEqual(again.name, snap.name)
        assert.strictEqual(again.usedBytes, 1500)
        assert.deepStrictEqual(again.labels, [["k", "2"]])
        assert.isTrue(Option.isNone((yield* Volume.snapshot("src", { name: "plain" })).expiresAt))
      }))

    test("snapshots list newest first; default names sort the same way", () =>
      Effect.gen(function*() {
        yield* createVolume("src")
        const taken: Array<string> = []
        for (let i = 0; i < 3; i++) taken.push((yield* Volume.snapshot("src")).name)
        assert.strictEqual(new Set(taken).size, 3, "default names are unique")
        assert.deepStrictEqual([...taken].sort(), taken, "default names sort in creation order")
        assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name), [...taken].reverse())
        assert.deepStrictEqual(yield* Volume.snapshots(yield* Effect.map(createVolume("other"), (v) => v.name)), [])
      }))

    test("a snapshot keeps the content of its moment: files, directories, empty directories, big files", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        const fs = vol.fs()
        const big = bytes(3 * MiB + 17, 5)
        yield* fs.write("big.bin", big)
        yield* fs.write("dir/sub/small.txt", "small")
        yield* fs.mkdir("empty")
        const snap = yield* Volume.snapshot("src", { name: "s1" })
        yield* fs.remove("big.bin")
        yield* fs.removeDir("dir")
        yield* fs.write("later.txt", "later")
        const sfs = snap.fs()
        assert.deepStrictEqual(names(yield* sfs.list("/")), ["big.bin", "dir", "empty"])
        assertSameBytes(yield* sfs.read("big.bin"), big)
        assert.strictEqual(yield* sfs.readToString("dir/sub/small.txt"), "small")
        assert.deepStrictEqual(yield* sfs.list("empty"), [])
        assert.isFalse(yield* sfs.exists("later.txt"))
        const streamed = yield* Stream.runCollect(sfs.readStream("big.bin"))
        assert.strictEqual(Array.from(streamed).reduce((n, c) => n + c.byteLength, 0), big.byteLength)
      }))

    test("every write to a snapshot fails with ReadOnly and changes nothing", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        yield* vol.fs().write("f.txt", "f")
        yield* vol.fs().mkdir("d")
        const sfs = (yield* Volume.snapshot("src", { name: "ro" })).fs()
        yield* expectFsError("ReadOnly")(sfs.write("new.txt", "x"))
        yield* expectFsError("ReadOnly")(sfs.write("f.txt", "x"))
        yield* expectFsError("ReadOnly")(sfs.mkdir("new-dir"))
        yield* expectFsError("ReadOnly")(sfs.remove("f.txt"))
        yield* expectFsError("ReadOnly")(sfs.removeDir("d"))
        yield* expectFsError("ReadOnly")(sfs.rename("f.txt", "g.txt"))
        yield* expectFsError("ReadOnly")(sfs.copy("f.txt", "g.txt"))
        yield* expectFsError("ReadOnly")(Effect.scoped(Effect.flatMap(sfs.writeStream("s.txt"), (w) => w.close())))
        yield* expectFsError("ReadOnly")(Stream.run(Stream.make(new Uint8Array([1])), sfs.sink("s.txt")))
        assert.deepStrictEqual(names(yield* sfs.list("/")), ["d", "f.txt"])
        assert.strictEqual(yield* sfs.readToString("f.txt"), "f")
      }))

    test("removeSnapshot removes one snapshot; the volume and the others stay", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        yield* vol.fs().write("f.txt", "f")
        yield* Volume.snapshot("src", { name: "a" })
        const b = yield* Volume.snapshot("src", { name: "b" })
        yield* Volume.removeSnapshot("src", "A")
        assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name), ["b"])
        yield* expectFailure("SnapshotNotFound")(Volume.getSnapshot("src", "a"))
        yield* expectFailure("SnapshotNotFound")(Volume.removeSnapshot("src", "a"))
        yield* b.remove()
        assert.deepStrictEqual(yield* Volume.snapshots("src"), [])
        assert.strictEqual(yield* vol.fs().readToString("f.txt"), "f")
        // The name is free again.
        yield* Volume.snapshot("src", { name: "a" })
      }))

    test("bad input: invalid names, missing volumes and snapshots, taken names", () =>
      Effect.gen(function*() {
        yield* createVolume("src")
        for (const bad of ["", "-x", "a/b", "a b", "x".repeat(129), "é"]) {
          yield* expectFailure("InvalidConfig")(Volume.snapshot("src", { name: bad }))
        }
        yield* expectFailure("InvalidConfig")(Volume.snapshot("src", { labels: { "": "x" } }))
        yield* expectFailure("VolumeNotFound")(Volume.snapshot("missing"))
        yield* expectFailure("VolumeNotFound")(Volume.snapshots("missing"))
        yield* expectFailure("VolumeNotFound")(Volume.fork("missing", "t"))
        yield* expectFailure("VolumeNotFound")(Volume.restore("missing", "s"))
        yield* expectFailure("SnapshotNotFound")(Volume.getSnapshot("src", "nope"))
        yield* expectFailure("SnapshotNotFound")(Volume.getSnapshot("src", "../x"))
        yield* expectFailure("SnapshotNotFound")(Volume.restore("src", "nope"))
        yield* expectFailure("SnapshotNotFound")(Volume.fork("src", "t", { snapshot: "nope" }))
        yield* expectFailure("InvalidConfig")(Volume.fork("src", "bad name"))
        yield* Volume.snapshot("src", { name: "taken" })
        const error = yield* expectFailure("SnapshotAlreadyExists")(Volume.snapshot("src", { name: "TAKEN" }))
        assert.strictEqual(error.volume, "src")
        assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name), ["taken"])
        assert.isFalse((yield* Volume.list()).some((v) => v.name === "t"), "no failed fork left a volume")
      }))

    test("of several concurrent snapshots with one name exactly one wins", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        yield* vol.fs().write("f.txt", "f")
        const outcomes = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          () => Effect.either(Volume.snapshot("src", { name: "same" })),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(outcomes.filter((o) => o._tag === "Right").length, 1)
        for (const o of outcomes) if (o._tag === "Left") assert.strictEqual(o.left._tag, "SnapshotAlreadyExists")
        assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name), ["same"])
        assert.strictEqual(yield* (yield* Volume.getSnapshot("src", "same")).fs().readToString("f.txt"), "f")
      }))

    test("a fork copies kind, quota and labels (overridable) and is independent of its source", () =>
      Effect.gen(function*() {
        const src = yield* createVolume("src", (b) => b.quota(5).label("team", "a"))
        yield* src.fs().write("f.txt", "source")
        const plain = yield* Volume.fork("src", "copy")
        assert.strictEqual(plain.kind, "directory")
        assert.deepStrictEqual(plain.quotaMib, Option.some(5))
        assert.deepStrictEqual(plain.labels, [["team", "a"]])
        assert.strictEqual(plain.usedBytes, 6)
        const custom = yield* Volume.fork("src", "custom", { labels: { team: "b" }, quota: 7 })
        assert.deepStrictEqual(custom.quotaMib, Option.some(7))
        assert.deepStrictEqual(custom.labels, [["team", "b"]])
        yield* plain.fs().write("f.txt", "fork")
        yield* src.fs().write("g.txt", "only in source")
        assert.strictEqual(yield* src.fs().readToString("f.txt"), "source")
        assert.strictEqual(yield* custom.fs().readToString("f.txt"), "source")
        assert.isFalse(yield* plain.fs().exists("g.txt"))
        assert.strictEqual((yield* Volume.get("copy")).usedBytes, 4)
        // A fork is a volume like any other: it has no snapshots and can be removed alone.
        assert.deepStrictEqual(yield* Volume.snapshots("copy"), [])
        yield* Volume.remove("copy")
        assert.strictEqual(yield* src.fs().readToString("f.txt"), "source")
      }))

    test("a fork onto an existing name fails with VolumeAlreadyExists and changes nothing", () =>
      Effect.gen(function*() {
        const src = yield* createVolume("src")
        yield* src.fs().write("f.txt", "source")
        const other = yield* createVolume("other", (b) => b.label("keep", "me"))
        yield* other.fs().write("mine.txt", "mine")
        yield* expectFailure("VolumeAlreadyExists")(Volume.fork("src", "OTHER"))
        yield* expectFailure("VolumeAlreadyExists")(Volume.fork("src", "src"))
        const after = yield* Volume.get("other")
        assert.deepStrictEqual(names(yield* after.fs().list("/")), ["mine.txt"])
        assert.deepStrictEqual(after.labels, [["keep", "me"]])
      }))

    test("a fork that does not fit the target's quota fails and leaves no target", () =>
      Effect.gen(function*() {
        const src = yield* createVolume("src")
        yield* src.fs().write("big.bin", bytes(2 * MiB, 3))
        const error = yield* expectFailure("QuotaExceeded")(Volume.fork("src", "small", { quota: 1 }))
        assert.strictEqual(error.volume, "small")
        yield* expectFailure("VolumeNotFound")(Volume.get("small"))
        // The name is free: a fitting fork succeeds.
        yield* Volume.fork("src", "small", { quota: 3 })
      }))

    test("restore brings back removed files, drops added ones and keeps the snapshot", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        const fs = vol.fs()
        yield* fs.write("keep.txt", "keep")
        yield* fs.write("dir/gone.txt", "gone")
        yield* Volume.snapshot("src", { name: "s" })
        yield* fs.removeDir("dir")
        yield* fs.write("keep.txt", "changed")
        yield* fs.write("added/new.txt", "new")
        yield* Volume.restore("src", "s")
        assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "keep.txt"])
        assert.strictEqual(yield* fs.readToString("keep.txt"), "keep")
        assert.strictEqual(yield* fs.readToString("dir/gone.txt"), "gone")
        assert.strictEqual((yield* Volume.get("src")).usedBytes, 8)
        // The snapshot is unchanged and a restored volume keeps being writable.
        yield* fs.write("keep.txt", "after restore")
        assert.strictEqual(yield* (yield* Volume.getSnapshot("src", "s")).fs().readToString("keep.txt"), "keep")
        yield* Volume.restore("src", "s")
        assert.strictEqual(yield* fs.readToString("keep.txt"), "keep")
      }))

    test("a reader during a restore sees the old tree or the restored one, never a mix", () =>
      Effect.gen(function*() {
        const names = restoreNames(40)
        yield* prepareRestore("atomic", names)
        const fs = (yield* Volume.get("atomic")).fs()
        const done = yield* Ref.make(false)
        const reader = yield* Effect.fork(Effect.gen(function*() {
          const observed: Array<string> = []
          while (!(yield* Ref.get(done))) {
            observed.push(...(yield* readPass(fs, names)))
            // Lets the event loop run (the local backend's copy is a child process).
            yield* Effect.sleep("1 millis")
          }
          observed.push(...(yield* readPass(fs, names)))
          return observed
        }))
        yield* Effect.yieldNow()
        yield* Volume.restore("atomic", "s")
        yield* Ref.set(done, true)
        assertOneSwitch(yield* Fiber.join(reader))
      }))

    test("expired snapshots stay usable until a prune removes them; prune({ expired }) takes them first", () =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        yield* Effect.gen(function*() {
          yield* TestClock.setTime(start)
          const vol = yield* createVolume("src")
          yield* vol.fs().write("a.txt", "a")
          yield* Volume.snapshot("src", { name: "short", expiresIn: "1 hour" })
          yield* Volume.snapshot("src", { name: "long", expiresIn: "1 day" })
          yield* Volume.snapshot("src", { name: "keep" })
          yield* createVolume("gone")
          yield* Volume.snapshot("gone", { name: "s", expiresIn: "1 hour" })
          yield* Volume.update("gone", { expiresAt: Option.some(DateTime.unsafeMake(start + 3_600_000)) })
          assert.deepStrictEqual((yield* Volume.pruneSnapshots()).removed, [], "nothing expired yet")
          yield* TestClock.adjust("2 hours")
          // Expired but not pruned: still listed and readable.
          assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name).sort(), ["keep", "long", "short"])
          assert.strictEqual(yield* (yield* Volume.getSnapshot("src", "short")).fs().readToString("a.txt"), "a")
          const dry = yield* Volume.pruneSnapshots({ volume: "src", dryRun: true })
          assert.deepStrictEqual(dry.removed, [{ volume: "src", snapshot: "short" }])
          assert.strictEqual((yield* Volume.snapshots("src")).length, 3, "a dry run removes nothing")
          const pruned = yield* Volume.prune({ expired: true })
          assert.deepStrictEqual(
            [...pruned.snapshots].sort((a, b) => a.volume.localeCompare(b.volume)),
            [{ volume: "gone", snapshot: "s" }, { volume: "src", snapshot: "short" }]
          )
          // The expired volume went with its expired snapshot; the other keeps its live ones.
          assert.deepStrictEqual(pruned.removed, ["gone"])
          assert.deepStrictEqual((yield* Volume.snapshots("src")).map((s) => s.name).sort(), ["keep", "long"])
          yield* expectFailure("SnapshotNotFound")(Volume.getSnapshot("src", "short"))
          yield* TestClock.adjust("1 day")
          assert.deepStrictEqual((yield* Volume.pruneSnapshots()).removed, [{ volume: "src", snapshot: "long" }])
          yield* expectFailure("VolumeNotFound")(Volume.pruneSnapshots({ volume: "gone" }))
        }).pipe(Effect.provide(TestContext.TestContext))
      }))

    test("a volume with snapshots is in use by them; withSnapshots removes both", () =>
      Effect.gen(function*() {
        yield* createVolume("src")
        yield* Volume.snapshot("src", { name: "one" })
        yield* Volume.snapshot("src", { name: "two" })
        const error = yield* expectFailure("VolumeInUse")(Volume.remove("src"))
        assert.strictEqual(error.volume, "src")
        assert.deepStrictEqual([...error.holders].sort(), ["snapshot one", "snapshot two"])
        yield* expectFailure("VolumeInUse")((yield* Volume.get("src")).remove())
        yield* Volume.remove("src", { withSnapshots: true })
        yield* expectFailure("VolumeNotFound")(Volume.get("src"))
        yield* createVolume("src")
        assert.deepStrictEqual(yield* Volume.snapshots("src"), [], "a re-created volume starts without snapshots")
      }))

    test("a fork from a snapshot takes the snapshot's content, not the volume's", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("src")
        yield* vol.fs().write("f.txt", "then")
        yield* Volume.snapshot("src", { name: "then" })
        yield* vol.fs().write("f.txt", "now")
        const fromSnapshot = yield* Volume.fork("src", "a", { snapshot: "then" })
        const fromVolume = yield* Volume.fork("src", "b")
        assert.strictEqual(yield* fromSnapshot.fs().readToString("f.txt"), "then")
        assert.strictEqual(yield* fromVolume.fs().readToString("f.txt"), "now")
      }))

    if (options.supportsDisk) {
      test("disk volumes: snapshot, fork and restore keep the files and the capacity", () =>
        Effect.gen(function*() {
          const disk = yield* Volume.builder("disk").disk().size(64).create()
          const data = bytes(200_000, 9)
          yield* disk.fs().write("data.bin", data)
          const progress = yield* watchProgress("disk snapshot")
          const snap = yield* Volume.snapshot("disk", { name: "s", onProgress: progress.onProgress })
          assert.isAbove((yield* progress.check).totalBytes, 0, "disk snapshot: the image's bytes")
          assert.strictEqual(snap.kind, "disk")
          assertSameBytes(yield* snap.fs().read("data.bin"), data)
          yield* expectFsError("ReadOnly")(snap.fs().write("x", "x"))
          yield* disk.fs().write("data.bin", "changed")
          const forked = yield* Volume.fork("disk", "disk-fork", { snapshot: "s" })
          assert.strictEqual(forked.kind, "disk")
          assert.deepStrictEqual(forked.capacityBytes, Option.some(64 * MiB))
          assertSameBytes(yield* forked.fs().read("data.bin"), data)
          yield* forked.fs().write("only-fork.txt", "fork")
          const restoreProgress = yield* watchProgress("disk restore")
          yield* Volume.restore("disk", "s", { onProgress: restoreProgress.onProgress })
          yield* restoreProgress.check
          assertSameBytes(yield* disk.fs().read("data.bin"), data)
          assert.isFalse(yield* disk.fs().exists("only-fork.txt"))
          yield* expectFailure("InvalidConfig")(Volume.snapshot("disk", { live: true }))
        }))
    }
  })
}
