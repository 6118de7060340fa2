/**
 * SPEC §9 on the local backend across processes: a process killed (SIGKILL) while it
 * snapshots, forks or restores leaves a whole result or none, and the next open cleans up;
 * eight processes snapshotting one name at once have exactly one winner. The copies are
 * real copies: sparse images stay sparse, and nothing is hard-linked to the source.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import {
  chmodSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync
} from "node:fs"
import * as NodePath from "node:path"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { onFirstEntry, spawnWorker } from "./fixtures/child.js"
import { assertConsistent, entries, makeHome, withDatabase, withHome } from "./fixtures/home.js"

const MiB = 1024 * 1024

/** A directory volume with many files, so copying it takes a moment. */
const makeBigTree = (home: string, name: string) =>
  Effect.gen(function*() {
    const vol = yield* Volume.builder(name).create()
    yield* vol.fs().write("marker.txt", "original")
    return yield* vol.path()
  }).pipe(
    withHome(home),
    Effect.tap((dataDir) =>
      Effect.sync(() => {
        for (let d = 0; d < 40; d++) {
          const dir = NodePath.join(dataDir, `d${d}`)
          mkdirSync(dir)
          for (let f = 0; f < 250; f++) writeFileSync(NodePath.join(dir, `f${f}`), "x")
        }
      })
    )
  )

/** Snapshot records and directories agree, and every record is ready. */
const assertSnapshotsConsistent = (home: string, volume: string) =>
  Effect.gen(function*() {
    yield* assertConsistent(home)
    const listed = yield* Effect.map(Volume.snapshots(volume), (all) => all.map((s) => s.name.toLowerCase()).sort()).pipe(
      withHome(home)
    )
    assert.deepStrictEqual(entries(NodePath.join(home, "snapshots", volume.toLowerCase())), listed)
    const unfinished = yield* withDatabase(home, (sql) => sql`SELECT key, state FROM snapshots WHERE state <> 'ready'`)
    assert.deepStrictEqual(unfinished, [], "no unfinished snapshot records")
    return listed
  })

describe("LocalBackend snapshots across processes", () => {
  it.scopedLive("killed while a snapshot is copied: no snapshot, nothing left, the name is free", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* makeBigTree(home, "big")
      const worker = yield* spawnWorker(["snapshot", home, "big", "s1"])
      yield* worker.line((line) => line === "ready")
      yield* onFirstEntry(NodePath.join(home, "staging"), () => process.kill(-worker.pid, "SIGKILL"))
      yield* worker.exit
      const left = yield* withDatabase(home, (sql) => sql<{ readonly state: string }>`SELECT state FROM snapshots`)
      assert.deepStrictEqual(left.map((row) => row.state), ["creating"], "killed mid-snapshot")

      assert.deepStrictEqual(yield* assertSnapshotsConsistent(home, "big"), [])
      yield* Effect.gen(function*() {
        const snap = yield* Volume.snapshot("big", { name: "S1" })
        assert.strictEqual(yield* snap.fs().readToString("marker.txt"), "original")
        assert.lengthOf(yield* snap.fs().list("d39"), 250)
      }).pipe(withHome(home))
      assert.deepStrictEqual(yield* assertSnapshotsConsistent(home, "big"), ["s1"])
    }))

  it.scopedLive("killed while forking: no target volume, the name is free", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* makeBigTree(home, "big")
      const worker = yield* spawnWorker(["fork", home, "big", "copy"])
      yield* worker.line((line) => line === "ready")
      yield* onFirstEntry(NodePath.join(home, "staging"), () => process.kill(-worker.pid, "SIGKILL"))
      yield* worker.exit
      const volumes = yield* assertConsistent(home)
      assert.deepStrictEqual(volumes.map((v) => v.name), ["big"])
      yield* Effect.gen(function*() {
        const copy = yield* Volume.fork("big", "copy")
        assert.strictEqual(yield* copy.fs().readToString("marker.txt"), "original")
      }).pipe(withHome(home))
    }))

  it.scopedLive("killed while restoring: the volume holds the old or the restored tree, whole", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const dataDir = yield* makeBigTree(home, "big")
      yield* Effect.gen(function*() {
        yield* Volume.snapshot("big", { name: "s" })
        const vol = yield* Volume.get("big")
        yield* vol.fs().write("marker.txt", "changed")
        yield* vol.fs().removeDir("d0")
      }).pipe(withHome(home))
      const worker = yield* spawnWorker(["restore", home, "big", "s"])
      yield* worker.line((line) => line === "ready")
      yield* onFirstEntry(NodePath.join(home, "staging"), () => process.kill(-worker.pid, "SIGKILL"))
      yield* worker.exit
      yield* assertSnapshotsConsistent(home, "big")
      const marker = yield* Effect.flatMap(Volume.get("big"), (vol) => vol.fs().readToString("marker.txt")).pipe(
        withHome(home)
      )
      const dirs = readdirSync(dataDir).filter((name) => name.startsWith("d")).length
      assert.isTrue(
        (marker === "changed" && dirs === 39) || (marker === "original" && dirs === 40),
        `old or restored, not a mix: marker ${marker}, ${dirs} directories`
      )
      yield* Effect.flatMap(Volume.restore("big", "s"), () => Volume.get("big")).pipe(withHome(home))
      assert.strictEqual(readdirSync(dataDir).filter((name) => name.startsWith("d")).length, 40)
    }))

  it.scopedLive("of 8 processes snapshotting one name at once, exactly one wins", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* makeBigTree(home, "shared")
      const barrier = NodePath.join(home, "..", `${NodePath.basename(home)}-barrier`)
      mkdirSync(barrier)
      const workers = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i),
        (i) => spawnWorker(["snapshot", home, "shared", i % 2 === 0 ? "same" : "SAME", barrier])
      )
      yield* Effect.forEach(workers, (worker) => worker.line((line) => line === "ready"))
      writeFileSync(NodePath.join(barrier, "go"), "")
      const outcomes = yield* Effect.forEach(workers, (worker) => worker.result, { concurrency: "unbounded" })
      const counts = outcomes.reduce<Record<string, number>>(
        (acc, { outcome }) => ({ ...acc, [outcome]: (acc[outcome] ?? 0) + 1 }),
        {}
      )
      assert.deepStrictEqual(counts, { ok: 1, SnapshotAlreadyExists: 7 })
      assert.deepStrictEqual(yield* assertSnapshotsConsistent(home, "shared"), ["same"])
      const files = yield* Effect.flatMap(Volume.getSnapshot("shared", "same"), (s) => s.fs().list("d7")).pipe(
        withHome(home)
      )
      assert.lengthOf(files, 250)
    }), { timeout: 120_000 })

  it.scopedLive("copies are independent files (no hard links) and a sparse disk image stays sparse", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const dir = yield* Volume.builder("dir").create()
        yield* dir.fs().write("f.txt", "source")
        const snap = yield* Volume.snapshot("dir", { name: "s" })
        const fork = yield* Volume.fork("dir", "fork")
        const inode = (path: string) => statSync(path)
        const source = inode(NodePath.join(yield* dir.path(), "f.txt"))
        for (const copy of [snap.info.hostPath, fork.info.local]) {
          assert.isTrue(copy._tag === "Some")
        }
        const snapFile = statSync(NodePath.join(home, "snapshots", "dir", "s", "data", "f.txt"))
        const forkFile = statSync(NodePath.join(yield* fork.path(), "f.txt"))
        assert.strictEqual(source.nlink, 1)
        assert.notStrictEqual(snapFile.ino, source.ino)
        assert.notStrictEqual(forkFile.ino, source.ino)
        assert.strictEqual(snapFile.nlink, 1)

        // A 1 GiB image holding 16 MiB of data: the copies allocate about what it does.
        const disk = yield* Volume.builder("disk").disk().size(Size.gib(1)).create()
        yield* disk.fs().write("data.bin", new Uint8Array(16 * MiB).fill(7))
        const image = (yield* Volume.get("disk")).usedBytes
        const diskSnap = yield* Volume.snapshot("disk", { name: "s" })
        const diskFork = yield* Volume.fork("disk", "disk-fork")
        const snapImage = statSync(NodePath.join(home, "snapshots", "disk", "s", "disk.raw"))
        assert.strictEqual(snapImage.size, 1024 * MiB)
        assert.isAtMost(snapImage.blocks * 512, image * 1.1, "the snapshot's image allocates ≤ 1.1x the source's")
        assert.isAtMost(diskFork.usedBytes, image * 1.1, "the fork's image allocates ≤ 1.1x the source's")
        assert.isAtLeast(diskSnap.usedBytes, 16 * MiB)
      }).pipe(withHome(home))
    }))

  it.scopedLive("a copy (several cp at once) keeps what cp -a keeps: the root's mode and times, links, hard links", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        for (const [name, linked] of [["plain", false], ["linked", true]] as const) {
          const vol = yield* Volume.builder(name).create()
          const root = yield* vol.path()
          for (let d = 0; d < 9; d++) {
            mkdirSync(NodePath.join(root, `d${d}`))
            writeFileSync(NodePath.join(root, `d${d}`, "f"), `file ${d}`)
          }
          symlinkSync("d0/f", NodePath.join(root, "link"))
          if (linked) linkSync(NodePath.join(root, "d1", "f"), NodePath.join(root, "d8", "same"))
          chmodSync(root, 0o750)
          utimesSync(root, 1_000_000, 1_000_000)
          const fork = yield* Volume.fork(name, `${name}-fork`)
          const copy = yield* fork.path()
          const [source, target] = [statSync(root), statSync(copy)]
          assert.strictEqual(target.mode & 0o7777, 0o750, `${name}: the root's mode`)
          assert.strictEqual(target.mtimeMs, source.mtimeMs, `${name}: the root's times`)
          assert.deepStrictEqual(readdirSync(copy).sort(), readdirSync(root).sort())
          assert.strictEqual(readlinkSync(NodePath.join(copy, "link")), "d0/f")
          assert.strictEqual(readFileSync(NodePath.join(copy, "d7", "f"), "utf8"), "file 7")
          if (linked) {
            // A hard link inside the tree stays one (and is not linked to the source).
            const [a, b] = [statSync(NodePath.join(copy, "d1", "f")), statSync(NodePath.join(copy, "d8", "same"))]
            assert.strictEqual(a.ino, b.ino)
            assert.notStrictEqual(a.ino, statSync(NodePath.join(root, "d1", "f")).ino)
          }
        }
      }).pipe(withHome(home))
    }))

  it.scopedLive("a fork that fills the disk fails and leaves no target; the name is free", () =>
    Effect.gen(function*() {
      const scratch = yield* makeHome
      // A home on a 24 MiB tmpfs: the source's 14 MiB fit once, not twice.
      const home = NodePath.join(scratch, "small-disk")
      mkdirSync(home)
      yield* Effect.acquireRelease(
        Effect.sync(() => execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", home])),
        () => Effect.sync(() => execFileSync("umount", ["-l", home]))
      )
      yield* Effect.gen(function*() {
        const src = yield* Volume.builder("src").create()
        writeFileSync(NodePath.join(yield* src.path(), "big.bin"), new Uint8Array(14 * MiB).fill(1))
        const error = yield* Effect.flip(Volume.fork("src", "copy"))
        assert.strictEqual(error._tag, "StorageError")
        assert.include(error.message, "No space left")
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["src"])
        const snapshotError = yield* Effect.flip(Volume.snapshot("src", { name: "s" }))
        assert.strictEqual(snapshotError._tag, "StorageError")
        assert.deepStrictEqual(yield* Volume.snapshots("src"), [])
      }).pipe(withHome(home))
      yield* assertSnapshotsConsistent(home, "src")
      yield* Effect.gen(function*() {
        writeFileSync(NodePath.join(yield* (yield* Volume.get("src")).path(), "big.bin"), "small now")
        const copy = yield* Volume.fork("src", "copy")
        assert.strictEqual(yield* copy.fs().readToString("big.bin"), "small now")
      }).pipe(withHome(home))
    }))
})
