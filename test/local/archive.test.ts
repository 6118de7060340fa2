/**
 * Tar import into local volumes (issue 16 item 1): the import stages under a reserved,
 * hidden temporary name, metadata is applied through the driver's descriptor walk (a
 * staged directory swapped for a symlink is refused, never followed),
 * archives cannot plant set-user-ID/set-group-ID/sticky files unless asked to, and the
 * volume is held while importing.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Option, Schedule, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Worker } from "node:worker_threads"
import * as Archive from "../../src/Archive.js"
import { LocalAttachments } from "../../src/internal/local/attachments.js"
import { TEMP_PREFIX } from "../../src/internal/paths.js"
import * as Tar from "../../src/internal/archive/tarEncode.js"
import * as Volume from "../../src/Volume.js"
import { expectFailure } from "../conformance/support.js"
import { spawnWorker } from "./fixtures/child.js"
import { makeHome, withHome } from "./fixtures/home.js"
import { makeVolumeDir } from "./fixtures/volumeDir.js"

/** A tar of one directory and one file with the given modes. */
const tarWithModes = (dirMode: number, fileMode: number): Uint8Array => {
  const data = new TextEncoder().encode("#!/bin/sh\n")
  return Buffer.concat([
    Tar.encodeHeader({ name: "bin/", type: "directory", size: 0, mode: dirMode, uid: 0, gid: 0, mtime: 0 }),
    Tar.encodeHeader({ name: "bin/tool", type: "file", size: data.length, mode: fileMode, uid: 0, gid: 0, mtime: 0 }),
    data,
    Tar.padding(data.length),
    Tar.trailer()
  ])
}

const modeOf = (path: string) => NodeFs.statSync(path).mode & 0o7777

/** The files of a tar (no trailer, so another archive's blocks may follow). */
const tarOf = (files: ReadonlyArray<readonly [string, string]>): Uint8Array =>
  Buffer.concat(files.flatMap(([name, content]) => {
    const data = new TextEncoder().encode(content)
    return [
      Tar.encodeHeader({ name, type: "file", size: data.length, mode: 0o644, uid: 0, gid: 0, mtime: 0 }),
      data,
      Tar.padding(data.length)
    ]
  }))

/**
 * Swaps every directory of the import's path it sees for a symlink to `outside`: the
 * staging directory (whatever hidden name it has) and the staged `bin` inside it, with
 * the same name as the outside directory the attacker aims at. Reports the swaps.
 */
const IMPORT_SWAPPER = `
const { workerData, parentPort } = require("node:worker_threads")
const fs = require("node:fs")
const path = require("node:path")
const { root, outside, prefix, stop } = workerData
let swaps = 0
const swap = (dir, name, target) => {
  try {
    if (!fs.lstatSync(path.join(dir, name)).isDirectory()) return
    fs.renameSync(path.join(dir, name), path.join(dir, name + "-away"))
    fs.symlinkSync(target, path.join(dir, name))
    swaps++
  } catch {}
}
while (Atomics.load(stop, 0) === 0) {
  let names = []
  try { names = fs.readdirSync(root) } catch {}
  for (const name of names) {
    if (!name.startsWith(prefix) || name.endsWith("-away")) continue
    const staging = path.join(root, name)
    let real = false
    try { real = fs.lstatSync(staging).isDirectory() } catch {}
    // Never through a link the attacker made itself (that would be its own change outside).
    if (swaps % 2 === 0 && real) swap(staging, "bin", path.join(outside, "bin"))
    else swap(root, name, outside)
  }
}
parentPort.postMessage(swaps)
`

describe("Archive import on the local backend", () => {
  it.scoped("set-user-ID, set-group-ID and sticky bits are dropped unless keepSpecialModes is set", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Archive.importTar("plain", Stream.make(tarWithModes(0o1777, 0o6755)), { create: true })
        const plain = yield* (yield* Volume.get("plain")).path()
        assert.strictEqual(modeOf(NodePath.join(plain, "bin")), 0o777)
        assert.strictEqual(modeOf(NodePath.join(plain, "bin", "tool")), 0o755)
        yield* Archive.importTar("kept", Stream.make(tarWithModes(0o1777, 0o6755)), { create: true, keepSpecialModes: true })
        const kept = yield* (yield* Volume.get("kept")).path()
        assert.strictEqual(modeOf(NodePath.join(kept, "bin")), 0o1777)
        assert.strictEqual(modeOf(NodePath.join(kept, "bin", "tool")), 0o6755)
      }).pipe(withHome(home))
    }))

  it.scoped("an import is refused while a sandbox holds the volume, and holds it while it runs", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Volume.builder("busy").create()
        const attachments = Option.getOrThrow(yield* Effect.serviceOption(LocalAttachments))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* attachments.acquire("busy", { holder: "sandbox api", mode: "rw" })
          yield* Archive.importTar("busy", Stream.make(tarWithModes(0o755, 0o644))).pipe(expectFailure("VolumeInUse"))
        }))
        // While the input is still arriving, the import is the volume's only holder: a sandbox
        // attaching it meanwhile is refused.
        const seen = yield* Archive.importTar(
          "busy",
          Stream.fromEffect(Effect.gen(function*() {
            assert.deepStrictEqual(yield* attachments.holders("busy"), ["archive import"])
            yield* Effect.scoped(attachments.acquire("busy", { holder: "sandbox api", mode: "rw" })).pipe(
              expectFailure("VolumeInUse")
            )
            yield* Effect.scoped(attachments.acquire("busy", { holder: "sandbox api", mode: "ro" })).pipe(
              expectFailure("VolumeInUse")
            )
          })).pipe(Stream.drain, Stream.concat(Stream.make(tarWithModes(0o755, 0o644))))
        )
        assert.strictEqual(seen.entries, 2)
        assert.deepStrictEqual(yield* attachments.holders("busy"), [])
      }).pipe(withHome(home))
    }))

  // The import race of the containment attack suite: a sandbox swaps the import's staging
  // directory for a symlink to the outside while a tar with a 04777 entry is imported.
  it.scopedLive("an import raced by a staging directory swapped for a symlink never changes anything outside", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const outside = NodePath.join(home, "outside")
      NodeFs.mkdirSync(NodePath.join(outside, "bin"), { recursive: true })
      NodeFs.writeFileSync(NodePath.join(outside, "bin", "tool"), "outside")
      NodeFs.chmodSync(NodePath.join(outside, "bin", "tool"), 0o644)
      const before = NodeFs.readdirSync(outside, { recursive: true }).map(String).sort()
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("raced").create()
        const root = yield* vol.path()
        const stop = new Int32Array(new SharedArrayBuffer(4))
        const worker = yield* Effect.acquireRelease(
          Effect.sync(() => new Worker(IMPORT_SWAPPER, { eval: true, workerData: { root, outside, prefix: TEMP_PREFIX, stop } })),
          (worker) => Effect.promise(() => (Atomics.store(stop, 0, 1), worker.terminate()))
        )
        const swaps = Effect.async<number>((resume) => {
          worker.once("message", (n: number) => resume(Effect.succeed(n)))
        })
        const many = Array.from({ length: 200 }, (_, i) => [`bin/f${i}`, "x"] as const)
        for (let round = 0; round < 30; round++) {
          yield* Effect.either(Archive.importTar("raced", Stream.make(tarOf(many), tarWithModes(0o1777, 0o4777))))
        }
        Atomics.store(stop, 0, 1)
        assert.isAbove(yield* swaps, 0, "the attacker swapped staging directories")
      }).pipe(withHome(home))
      assert.strictEqual(modeOf(NodePath.join(outside, "bin", "tool")), 0o644, "no mode applied outside")
      assert.strictEqual(NodeFs.readFileSync(NodePath.join(outside, "bin", "tool"), "utf8"), "outside")
      assert.deepStrictEqual(NodeFs.readdirSync(outside, { recursive: true }).map(String).sort(), before)
    }), 120_000)

  it.scoped("an import into a disk volume works inside the image: modes without set-user-ID, times kept", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(64).create()
        const summary = yield* Archive.importTar("img", Stream.make(tarWithModes(0o1755, 0o4755)))
        assert.strictEqual(summary.entries, 2)
        const tool = yield* vol.fs().stat("/bin/tool")
        assert.strictEqual(tool.mode, 0o755)
        assert.deepStrictEqual(Option.map(tool.modified, DateTime.toEpochMillis), Option.some(0))
        assert.strictEqual((yield* vol.fs().stat("/bin")).mode, 0o755)
        assert.deepStrictEqual((yield* vol.fs().list("/")).map((e) => e.path), ["/bin"])
      }).pipe(withHome(home))
    }))

  it.scopedLive("an import killed mid-way leaves no staging directory once the home is opened again", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const root = yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("crashy").create()
        yield* vol.fs().write("keep.txt", "keep")
        return yield* vol.path()
      }).pipe(withHome(home))
      const worker = yield* spawnWorker(["import", home, "crashy"])
      yield* worker.line((line) => line === "importing")
      // Killed once `dir/file` is staged (in whatever directory the import stages in).
      const staged = () => NodeFs.readdirSync(root).some((name) => NodeFs.existsSync(NodePath.join(root, name, "dir", "file")))
      yield* Effect.repeat(Effect.sync(staged), { until: (done) => done, schedule: Schedule.spaced("10 millis") })
      yield* worker.kill
      yield* Effect.gen(function*() {
        const vol = yield* Volume.get("crashy")
        assert.deepStrictEqual((yield* vol.fs().list("/")).map((e) => e.path), ["/keep.txt"])
        assert.strictEqual(vol.usedBytes, 4)
        // The volume is free again: the dead import's hold does not count.
        yield* Archive.importTar("crashy", Stream.make(tarWithModes(0o755, 0o644)))
      }).pipe(withHome(home))
      assert.deepStrictEqual(NodeFs.readdirSync(root).sort(), ["bin", "keep.txt"], "the staging directory was swept")
    }))

  it.scoped("modes, times and links go through the descriptor walk: a staged directory swapped for a symlink is refused", () =>
    Effect.gen(function*() {
      const dir = yield* makeVolumeDir
      const victim = NodePath.join(dir.outside, "tool")
      NodeFs.writeFileSync(victim, "outside")
      NodeFs.chmodSync(victim, 0o644)
      NodeFs.mkdirSync(dir.host("stage"))
      NodeFs.writeFileSync(dir.host("stage", "tool"), "inside")
      // The sandbox's move: the staging directory becomes a link to the outside.
      NodeFs.renameSync(dir.host("stage"), dir.host("stage-away"))
      NodeFs.symlinkSync(dir.outside, dir.host("stage"))
      yield* dir.driver.chmod(["stage", "tool"], 0o4777).pipe(expectFailure("InvalidPath"))
      yield* dir.driver.setModified!(["stage", "tool"], new Date(0)).pipe(expectFailure("InvalidPath"))
      yield* dir.driver.symlink("/etc/passwd", ["stage", "planted"]).pipe(expectFailure("InvalidPath"))
      assert.strictEqual(modeOf(victim), 0o644, "the outside file kept its mode")
      assert.deepStrictEqual(NodeFs.readdirSync(dir.outside).sort(), ["tool"])
    }))
})
