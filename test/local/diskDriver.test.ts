/**
 * Disk volumes on the local backend: formatting sparse ext4 images, host-side loop mounts
 * that never leak (not even when the process is SIGKILLed), and the disk driver working
 * inside the image. Needs root and loop devices, as the local backend's disk volumes do.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { makeDiskDriver, makeDiskSessions } from "../../src/internal/local/diskDriver.js"
import type { DiskSessions } from "../../src/internal/local/diskDriver.js"
import { allocatedBytes, formatDiskImage } from "../../src/internal/local/diskImage.js"
import { mountImage } from "../../src/internal/local/diskMount.js"
import { LocalAttachments } from "../../src/internal/local/attachments.js"
import { TEMP_PREFIX } from "../../src/internal/paths.js"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as Volume from "../../src/Volume.js"
import { VolumeInUse } from "../../src/VolumeError.js"
import { assertSameBytes, bytes, concat, expectFailure, expectFsError, names } from "../conformance/support.js"
import { makeHome, withHome } from "./fixtures/home.js"
import { forkAbandonedWriter, volumeFsOf } from "./fixtures/volumeDir.js"

const MiB = 1024 * 1024
const here = NodePath.dirname(fileURLToPath(import.meta.url))
const repoRoot = NodePath.resolve(here, "..", "..")

const sbin = { env: { ...process.env, PATH: `${process.env["PATH"] ?? ""}:/usr/sbin:/sbin` } }

/** `debugfs -R <request> <image>` output (read-only, catastrophic mode: no journal replay). */
const debugfs = (image: string, request: string): Buffer =>
  execFileSync("debugfs", ["-c", "-R", request, image], { ...sbin, stdio: ["ignore", "pipe", "ignore"] })

/** Loop devices backed by `image`, system-wide. */
const loopDevicesOf = (image: string): string => execFileSync("losetup", ["-j", image], sbin).toString().trim()

/**
 * Running mount helpers (`unshare ... sh -c "mount ..."`) of `image`; a helper's own
 * forked child (which shows the same command line until it execs) is not counted.
 */
const mountHelpersOf = (image: string): number => {
  const parents = new Map<string, string>()
  for (const pid of NodeFs.readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const argv = NodeFs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      if (!argv.includes(image) || !argv.some((arg) => arg.startsWith("mount "))) continue
      const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "utf8")
      parents.set(pid, stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]!)
    } catch {
      // exited meanwhile
    }
  }
  return [...parents.values()].filter((parent) => !parents.has(parent)).length
}

/** Mounts of this process's namespace that mention `text`. */
const mountsMentioning = (text: string): Array<string> =>
  NodeFs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(text))

/** A clean file system check of the image. */
const assertConsistent = (image: string) => {
  const check = spawnSync("e2fsck", ["-fn", image], { ...sbin, encoding: "utf8" })
  assert.strictEqual(check.status, 0, `e2fsck: ${check.stdout} ${check.stderr}`)
}

interface Disk {
  readonly dir: string
  readonly image: string
  readonly runDir: string
  /** Nothing of ours is left mounted, attached or lying in the run directory. */
  readonly assertReleased: () => void
  /** Mount sessions of the image (released as soon as unused), for the test's scope. */
  readonly sessions: DiskSessions
}

/** A freshly formatted 64 MiB image in a temp dir, checked for leaks and removed at scope end. */
const makeDisk = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-disk-"))),
    (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
  )
  const image = NodePath.join(dir, "disk.raw")
  const runDir = NodePath.join(dir, "run")
  yield* formatDiskImage(image, 64)
  const assertReleased = () => {
    assert.strictEqual(loopDevicesOf(image), "", "no loop device is left attached to the image")
    assert.deepStrictEqual(mountsMentioning(dir), [], "nothing is mounted in the host namespace")
    const left = NodeFs.existsSync(runDir) ? NodeFs.readdirSync(runDir) : []
    assert.deepStrictEqual(left, [], "mount points are removed")
  }
  const sessions = yield* makeDiskSessions({ runDir, acquireExclusive: () => Effect.void })
  return { dir, image, runDir, assertReleased, sessions } satisfies Disk
})

const diskFs = (disk: Disk) => volumeFsOf(makeDiskDriver({ image: disk.image, volume: "d", sessions: disk.sessions }), "d")

describe("disk images", () => {
  it.scoped("formatDiskImage makes a sparse, consistent ext4 image with an empty root", () =>
    Effect.gen(function*() {
      const { image } = yield* makeDisk
      const stat = NodeFs.statSync(image)
      assert.strictEqual(stat.size, 64 * MiB)
      assert.isBelow(stat.blocks * 512, 16 * MiB, "the image is sparse")
      assert.strictEqual(yield* allocatedBytes(image), stat.blocks * 512)
      const root = debugfs(image, "ls -p /").toString()
      const entries = root.split("\n").filter((line) => line.startsWith("/")).map((line) => line.split("/")[5])
      assert.deepStrictEqual(entries, [".", ".."], "no lost+found")
      assertConsistent(image)
      yield* allocatedBytes(NodePath.join(image, "..", "missing.raw")).pipe(expectFailure("StorageError"))
    }))
})

describe("disk mounts", () => {
  it.scoped("mountImage gives a host path into the image and leaves nothing behind", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      yield* Effect.scoped(Effect.gen(function*() {
        const root = yield* mountImage({ image: disk.image, runDir: disk.runDir })
        assert.match(root, /^\/proc\/\d+\/root\//)
        NodeFs.writeFileSync(NodePath.join(root, "hello.txt"), "from the host")
        assert.notStrictEqual(loopDevicesOf(disk.image), "", "attached while mounted")
        assert.deepStrictEqual(mountsMentioning(disk.dir), [], "never mounted in the host namespace")
      }))
      disk.assertReleased()
      assert.strictEqual(debugfs(disk.image, "cat /hello.txt").toString(), "from the host")
      assertConsistent(disk.image)
      // Read-only mounts refuse writes.
      yield* Effect.scoped(Effect.gen(function*() {
        const root = yield* mountImage({ image: disk.image, runDir: disk.runDir, readOnly: true })
        assert.strictEqual(NodeFs.readFileSync(NodePath.join(root, "hello.txt"), "utf8"), "from the host")
        assert.throws(() => NodeFs.writeFileSync(NodePath.join(root, "x"), "x"), /EROFS/)
      }))
      disk.assertReleased()
    }))

  it.scoped("a corrupt image fails with StorageError", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      NodeFs.writeFileSync(disk.image, Buffer.alloc(4 * MiB))
      yield* Effect.scoped(mountImage({ image: disk.image, runDir: disk.runDir })).pipe(expectFailure("StorageError"))
      disk.assertReleased()
    }))

  it.scopedLive("the mount is released when its process is SIGKILLed", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const child = spawn(
        process.execPath,
        ["--import", "tsx", NodePath.join(here, "fixtures", "mountHolder.ts"), disk.image, disk.runDir],
        { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] }
      )
      const line = yield* Effect.async<string>((resume) => {
        createInterface({ input: child.stdout! }).once("line", (line) => resume(Effect.succeed(line)))
        child.once("exit", () => resume(Effect.succeed("exited")))
      })
      assert.match(line, /^mounted \/proc\/\d+\/root\//)
      const helper = Number(line.split("/")[2])
      assert.notStrictEqual(loopDevicesOf(disk.image), "")
      const exited = Effect.async<void>((resume) => {
        child.once("exit", () => resume(Effect.void))
      })
      child.kill("SIGKILL")
      yield* exited
      // The helper notices the closed pipe and exits; wait for that (bounded, so a helper
      // that never exits fails the test instead of hanging it).
      for (let waited = 0; NodeFs.existsSync(`/proc/${helper}`); waited++) {
        if (waited > 6000) assert.fail(`mount helper ${helper} is still running after its parent was killed`)
        yield* Effect.sleep("5 millis")
      }
      assert.strictEqual(loopDevicesOf(disk.image), "", "the loop device was freed")
      assert.deepStrictEqual(mountsMentioning(disk.dir), [])
      assertConsistent(disk.image)
    }))

  it.scoped("without the privilege to mount, mountImage fails with Unsupported", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      NodeFs.chmodSync(disk.dir, 0o755)
      NodeFs.chmodSync(disk.image, 0o644)
      const result = spawnSync(
        "setpriv",
        [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          process.execPath,
          "--import",
          "tsx",
          NodePath.join(here, "fixtures", "mountHolder.ts"),
          disk.image,
          NodePath.join(NodeOs.tmpdir(), `ev-unprivileged-${process.pid}`)
        ],
        { cwd: repoRoot, encoding: "utf8", timeout: 120_000 }
      )
      assert.strictEqual(result.stdout.trim(), "failed Unsupported", result.stderr)
      NodeFs.rmSync(NodePath.join(NodeOs.tmpdir(), `ev-unprivileged-${process.pid}`), { recursive: true, force: true })
    }))
})

describe("disk driver", () => {
  it.scoped("writes, reads, lists, streams, copies, renames and removes inside the image", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const fs = diskFs(disk)
      assert.deepStrictEqual(yield* fs.list("/"), [], "a new disk lists empty")
      const data = bytes(300_000, 7)
      yield* fs.write("dir/data.bin", data)
      yield* fs.write("hello.txt", "hello disk")
      assert.strictEqual(yield* fs.readToString("hello.txt"), "hello disk")
      assertSameBytes(yield* fs.read("dir/data.bin"), data)
      assertSameBytes(concat(Chunk.toReadonlyArray(yield* Stream.runCollect(fs.readStream("dir/data.bin")))), data)
      assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "hello.txt"])
      yield* Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("streamed.bin")
        yield* sink.write(data)
        // Other operations on the volume meanwhile share the mount instead of waiting for it.
        assert.strictEqual(yield* fs.readToString("hello.txt"), "hello disk")
        yield* sink.close()
      }))
      yield* fs.copy("dir", "dir-copy")
      yield* fs.rename("hello.txt", "moved/hello.txt")
      yield* fs.mkdir("empty")
      yield* fs.remove("streamed.bin")
      yield* fs.removeDir("empty")
      assert.deepStrictEqual(names(yield* fs.list("/")), ["dir", "dir-copy", "moved"])
      assert.strictEqual((yield* fs.stat("dir-copy/data.bin")).size, data.byteLength)
      yield* fs.read("missing").pipe(expectFailure("PathNotFound"))
      // The bytes really are inside the image.
      assertSameBytes(debugfs(disk.image, "cat /dir-copy/data.bin"), data, "debugfs cat")
      assert.strictEqual(debugfs(disk.image, "cat /moved/hello.txt").toString(), "hello disk")
      disk.assertReleased()
      assertConsistent(disk.image)
    }))

  it.scoped("a full image fails with NoSpace and a failed copy leaves no partial tree", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const fs = diskFs(disk)
      yield* fs.write("big/data.bin", new Uint8Array(40 * MiB))
      yield* fs.copy("big", "big-copy").pipe(expectFsError("NoSpace"))
      yield* fs.write("huge.bin", new Uint8Array(65 * MiB)).pipe(expectFsError("NoSpace"))
      assert.deepStrictEqual(names(yield* fs.list("/")), ["big"])
      const raw = debugfs(disk.image, "ls -p /").toString()
      assert.notInclude(raw, TEMP_PREFIX, "no temporary file or directory is left in the image")
      yield* fs.write("after.txt", "space is free again")
      disk.assertReleased()
      assertConsistent(disk.image)
    }))

  it.scopedLive("concurrent operations from two drivers never mount the image twice", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const first = diskFs(disk)
      const second = diskFs(disk)
      // Samples how many mount helpers hold the image while the operations run.
      let mostMounted = 0
      const sampler = yield* Effect.fork(Effect.forever(Effect.zipRight(
        Effect.sync(() => {
          mostMounted = Math.max(mostMounted, mountHelpersOf(disk.image))
        }),
        Effect.sleep("1 millis")
      )))
      yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          Effect.gen(function*() {
            const fs = i % 2 === 0 ? first : second
            yield* fs.write(`f${i}.txt`, `file ${i}`)
            assert.strictEqual(yield* fs.readToString(`f${i}.txt`), `file ${i}`)
          }),
        { concurrency: 4 }
      )
      assert.strictEqual((yield* first.list("/")).length, 20)
      yield* Fiber.interrupt(sampler)
      assert.strictEqual(mostMounted, 1, "the image was mounted, but never twice at once")
      disk.assertReleased()
      assertConsistent(disk.image)
    }))

  it.scoped("an abandoned writer keeps the old content, and the mount ends with its scope", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const fs = diskFs(disk)
      yield* fs.write("f.txt", "old")
      const fiber = yield* forkAbandonedWriter(fs, "f.txt")
      assert.notStrictEqual(loopDevicesOf(disk.image), "", "the writer holds the mount")
      yield* Fiber.interrupt(fiber)
      disk.assertReleased()
      assert.strictEqual(yield* fs.readToString("f.txt"), "old")
      assert.notInclude(debugfs(disk.image, "ls -p /").toString(), TEMP_PREFIX)
    }))

  it.scoped("a removed image gives VolumeNotFound", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      NodeFs.rmSync(disk.image)
      const fs = diskFs(disk)
      yield* fs.list("/").pipe(expectFailure("VolumeNotFound"))
      yield* fs.write("x", "x").pipe(expectFailure("VolumeNotFound"))
      yield* Stream.runDrain(fs.readStream("x")).pipe(expectFailure("VolumeNotFound"))
      disk.assertReleased()
    }))

  it.scoped("a refused attachment fails the operation before anything is mounted", () =>
    Effect.gen(function*() {
      const disk = yield* makeDisk
      const fs = volumeFsOf(
        makeDiskDriver({
          image: disk.image,
          volume: "d",
          sessions: yield* makeDiskSessions({
            runDir: disk.runDir,
            acquireExclusive: () => Effect.fail(new VolumeInUse({ volume: "d", holders: ["sandbox-1"] }))
          })
        }),
        "d"
      )
      const error = yield* fs.write("x", "x").pipe(expectFailure("VolumeInUse"))
      assert.deepStrictEqual(error.holders, ["sandbox-1"])
      assert.isFalse(NodeFs.existsSync(disk.runDir), "no mount point was made")
      disk.assertReleased()
    }))
})

describe("disk mount sessions of a backend", () => {
  // Issue 16 item 6: sessions were process-wide module state and outlived their backend.
  it.scopedLive("a mount opened through a backend ends with that backend's layer; the next one can attach", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const outlives = yield* Scope.make()
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("d").disk().size(64).create()
        // A writer whose scope outlives the backend's layer keeps the mount open.
        const sink = yield* Scope.extend(vol.fs().writeStream("f.txt"), outlives)
        yield* sink.write(new TextEncoder().encode("never committed"))
      }).pipe(withHome(home))
      yield* Effect.gen(function*() {
        const attachments = Option.getOrThrow(yield* Effect.serviceOption(LocalAttachments))
        yield* Effect.scoped(attachments.acquire("d", { holder: "sandbox api", mode: "rw" }))
        yield* Volume.remove("d")
      }).pipe(withHome(home))
      // Closing the writer's scope afterwards runs against nothing that was closed under it.
      yield* Scope.close(outlives, Exit.void)
    }))

  it.scopedLive("a sandbox attaching in the same backend lets an idle host-side mount go at once", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      // Mounts kept for bursts, far longer than the test takes.
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("burst").disk().size(64).create()
        for (let i = 0; i < 5; i++) yield* vol.fs().write(`f${i}.txt`, `file ${i}`)
        const attachments = Option.getOrThrow(yield* Effect.serviceOption(LocalAttachments))
        assert.deepStrictEqual(yield* attachments.holders("burst"), ["host fs"], "the idle mount is kept")
        yield* Effect.scoped(attachments.acquire("burst", { holder: "sandbox api", mode: "rw" }))
        assert.strictEqual(yield* vol.fs().readToString("f4.txt"), "file 4")
      }).pipe(Effect.provide(LocalBackend.layer({ home, diskIdleTimeToLive: "1 minute" })))
    }))
})
