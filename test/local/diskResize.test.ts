/**
 * Growing a local disk volume (`Volume.update(name, { size })`): the image and its ext4
 * file system grow offline, the data is kept, and a process killed with SIGKILL at any
 * step (including in the middle of `e2fsck` or `resize2fs`, at a chosen block write)
 * leaves the old image intact and usable for whoever uses the volume next.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { spawnSync } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { toolEnv } from "../../src/internal/local/diskImage.js"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import { spawnWorker } from "./fixtures/child.js"
import { entries, makeHome, withDatabase, withHome } from "./fixtures/home.js"

const MiB = 1024 * 1024

/** Runs an e2fsprogs tool on the image and returns its exit code and output. */
const tool = (command: string, ...args: Array<string>) => {
  const run = spawnSync(command, args, { env: toolEnv(), encoding: "utf8" })
  return { status: run.status, output: `${run.stdout}${run.stderr}` }
}

/** `e2fsck -fn`: the image's file system is consistent (read-only check). */
const assertClean = (image: string, what: string) => {
  const check = tool("e2fsck", "-f", "-n", image)
  assert.strictEqual(check.status, 0, `${what}: e2fsck -fn found problems:\n${check.output}`)
}

/** The file system's size in MiB, from its superblock. */
const fileSystemMib = (image: string): number => {
  const header = tool("dumpe2fs", "-h", image).output
  const blocks = Number(/Block count:\s+(\d+)/.exec(header)?.[1])
  const blockSize = Number(/Block size:\s+(\d+)/.exec(header)?.[1])
  return (blocks * blockSize) / MiB
}

const imageOf = (home: string, name: string) => NodePath.join(home, "volumes", name, "disk.raw")

/** A file large enough to span many blocks, and a small one, so a damaged tree shows. */
const big = new Uint8Array(3 * MiB).map((_, i) => (i * 7 + (i >> 12)) & 0xff)

/** A 64 MiB disk volume `img` holding a small and a big file. */
const filledImage = Effect.gen(function*() {
  const vol = yield* Volume.builder("img").disk().size(Size.mib(64)).create()
  yield* vol.fs().write("docs/readme.txt", "kept across the resize")
  yield* vol.fs().write("blob.bin", big)
})

const assertData = (name: string) =>
  Effect.gen(function*() {
    const vol = yield* Volume.get(name)
    assert.strictEqual(yield* vol.fs().readToString("docs/readme.txt"), "kept across the resize")
    const blob = yield* vol.fs().read("blob.bin")
    assert.isTrue(Buffer.from(blob).equals(Buffer.from(big)), "blob.bin is intact")
  })

/**
 * A directory of stand-ins for `e2fsck` and `resize2fs`: the one named by `$KILL_TOOL`
 * kills its whole process group (the worker with it) at `$KILL_AT`: `start`, `end`, or
 * its Nth block write (`strace` stops it there with SIGKILL, then the group goes).
 */
const killerTools = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-resize-tools-"))
    for (const name of ["e2fsck", "resize2fs"]) {
      const real = tool("sh", "-c", `command -v ${name}`).output.trim()
      const script = NodePath.join(dir, name)
      writeFileSync(
        script,
        `#!/bin/sh
if [ "$KILL_TOOL" != "${name}" ]; then exec ${real} "$@"; fi
case "$KILL_AT" in
  start) kill -9 0 ;;
  end) ${real} "$@"; kill -9 0 ;;
  *) strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=$KILL_AT ${real} "$@"; kill -9 0 ;;
esac
`
      )
      chmodSync(script, 0o755)
    }
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const hasStrace = tool("sh", "-c", "command -v strace").status === 0

describe("LocalBackend disk grow", () => {
  it.scopedLive("grows the image and its file system offline; the data is kept and e2fsck finds nothing", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* filledImage
        const grown = yield* Volume.update("IMG", { size: "256M" })
        assert.strictEqual(grown.capacityBytes.pipe(Option.getOrThrow), 256 * MiB)
        assert.strictEqual(Option.getOrThrow((yield* Volume.get("img")).capacityBytes), 256 * MiB, "the record")
        assert.strictEqual(statSync(imageOf(home, "img")).size, 256 * MiB, "the image file")
        assert.strictEqual(fileSystemMib(imageOf(home, "img")), 256, "the file system")
        assertClean(imageOf(home, "img"), "after the grow")
        yield* assertData("img")
        // The room is really there: more than the old size fits now.
        const vol = yield* Volume.get("img")
        yield* vol.fs().write("more.bin", new Uint8Array(80 * MiB).fill(1))
        assert.strictEqual((yield* vol.fs().stat("more.bin")).size, 80 * MiB)
      }).pipe(withHome(home))
      assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "img")), ["disk.raw"], "no resize files left")
      assertClean(imageOf(home, "img"), "after writing into the new room")
    }), { timeout: 120_000 })

  it.scopedLive("restoring a snapshot taken before the grow brings back its image and its size", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* filledImage
        yield* Volume.snapshot("img", { name: "small" })
        yield* Volume.update("img", { size: 128 })
        yield* Volume.restore("img", "small")
        assert.strictEqual(Option.getOrThrow((yield* Volume.get("img")).capacityBytes), 64 * MiB)
        yield* assertData("img")
      }).pipe(withHome(home))
      assert.strictEqual(fileSystemMib(imageOf(home, "img")), 64)
      assertClean(imageOf(home, "img"), "after the restore")
    }), { timeout: 120_000 })

  it.scopedLive("refused while the host has the image mounted for an open writer; an idle mount is let go", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(Size.mib(64)).create()
        const scope = yield* Scope.make()
        const sink = yield* vol.fs().writeStream("open.txt").pipe(Scope.extend(scope))
        yield* sink.write(new TextEncoder().encode("half"))
        const refused = yield* Volume.update("img", { size: 128 }).pipe(Effect.flip)
        assert.strictEqual(refused._tag, "VolumeInUse")
        assert.deepStrictEqual(refused._tag === "VolumeInUse" ? refused.holders : [], ["host fs"])
        yield* sink.close()
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(Option.getOrThrow((yield* Volume.get("img")).capacityBytes), 64 * MiB, "unchanged")
        yield* Volume.update("img", { size: 128 })
        assert.strictEqual(yield* (yield* Volume.get("img")).fs().readToString("open.txt"), "half")
      }).pipe(Effect.provide(LocalBackend.layer({ home, diskIdleTimeToLive: "1 minute" })))
    }), { timeout: 120_000 })

  describe("killed with SIGKILL", () => {
    /** Where the worker dies, and what the next user must find. */
    const points: ReadonlyArray<{ readonly tool: string; readonly at: string; readonly commit?: boolean }> = [
      { tool: "e2fsck", at: "start" },
      { tool: "e2fsck", at: "10" },
      { tool: "resize2fs", at: "start" },
      { tool: "resize2fs", at: "1" },
      { tool: "resize2fs", at: "8" },
      { tool: "resize2fs", at: "20" },
      { tool: "resize2fs", at: "40" },
      { tool: "resize2fs", at: "63" },
      { tool: "resize2fs", at: "end" },
      // Killed after the new size was recorded, before the resize files were deleted.
      { tool: "resize2fs", at: "end", commit: true }
    ]

    for (const point of points) {
      const label = `${point.tool} ${point.at}${point.commit === true ? " (after the commit)" : ""}`
      // A block number needs strace to stop the tool there; start and end need only sh.
      it.scopedLive.skipIf(/^\d+$/.test(point.at) && !hasStrace)(`killed at ${label}: the next user finds the ${point.commit === true ? "new" : "old"} image, intact`, () =>
        Effect.gen(function*() {
          const home = yield* makeHome
          const tools = yield* killerTools
          const image = imageOf(home, "img")
          yield* Effect.gen(function*() {
            yield* filledImage
          }).pipe(withHome(home))

          const worker = yield* spawnWorker(["resize", home, "img", "128"], undefined, {
            PATH: `${tools}:${process.env["PATH"] ?? ""}`,
            KILL_TOOL: point.tool,
            KILL_AT: point.at
          })
          assert.isNull(yield* worker.exit, "the worker was killed")
          assert.isTrue(existsSync(NodePath.join(home, "volumes", "img", "resize.json")), "it died mid-resize")
          if (point.commit === true) {
            yield* withDatabase(home, (sql) => sql`UPDATE volumes SET capacity_mib = 128 WHERE key = 'img'`)
          }
          const expectedMib = point.commit === true ? 128 : 64

          yield* Effect.gen(function*() {
            assert.strictEqual(Option.getOrThrow((yield* Volume.get("img")).capacityBytes), expectedMib * MiB)
            // The first use of the volume finishes the dead resize before it mounts the image.
            yield* assertData("img")
          }).pipe(withHome(home))
          assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "img")), ["disk.raw"], "the resize files are gone")
          assert.strictEqual(statSync(image).size, expectedMib * MiB)
          assert.strictEqual(fileSystemMib(image), expectedMib)
          assertClean(image, `after recovering from a kill at ${label}`)

          // And the volume grows normally afterwards.
          yield* Effect.gen(function*() {
            yield* Volume.update("img", { size: 192 })
            yield* assertData("img")
          }).pipe(withHome(home))
          assert.strictEqual(fileSystemMib(image), 192)
          assertClean(image, "after growing again")
        }), { timeout: 120_000 })
    }

    it.scopedLive("a holder taken after a dead resize (as a sandbox takes it) finds the old image, intact", () =>
      Effect.gen(function*() {
        const home = yield* makeHome
        const tools = yield* killerTools
        yield* Volume.builder("img").disk().size(Size.mib(64)).create().pipe(withHome(home))
        const worker = yield* spawnWorker(["resize", home, "img", "128"], undefined, {
          PATH: `${tools}:${process.env["PATH"] ?? ""}`,
          KILL_TOOL: "resize2fs",
          KILL_AT: "start"
        })
        yield* worker.exit
        // A holder (as a sandbox takes it) recovers the image first, then holds it.
        yield* Effect.gen(function*() {
          const backend = yield* VolumeBackend
          yield* Effect.scoped(backend.holders.acquire("img", "sandbox", "rw"))
        }).pipe(withHome(home))
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "img")), ["disk.raw"])
        assertClean(imageOf(home, "img"), "after a holder recovered it")
        assert.strictEqual(fileSystemMib(imageOf(home, "img")), 64)
      }), { timeout: 120_000 })
  })
})
