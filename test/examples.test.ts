/**
 * Every example the docs show is a file here, run as a user would run it.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as NodeFs from "node:fs/promises"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)
const root = NodePath.resolve(import.meta.dirname, "..")

const runExample = async (file: string) => {
  const home = await NodeFs.mkdtemp(NodePath.join(NodeOs.tmpdir(), "ev-example-"))
  try {
    const out = await run(NodePath.join(root, "node_modules/.bin/tsx"), [NodePath.join(root, "examples", file)], {
      env: { ...process.env, EFFECT_VOLUMES_HOME: home }
    })
    return out.stdout
  } finally {
    await NodeFs.rm(home, { recursive: true, force: true })
  }
}

describe("examples", () => {
  it("README example: quota volume, usage, a file inside a disk image", async () => {
    const stdout = await runExample("readme.ts")
    assert.include(stdout, "pip-cache directory 12")
    assert.include(stdout, "used=12")
    assert.include(stdout, "disk=ext4")
  })

  it("demo (npm run demo): seed a volume, run a command on it in a sandbox, read the result back", async () => {
    const stdout = await runExample("demo.ts")
    assert.include(stdout, "sandbox exit=0 stdout=This file was seeded into the volume from the host.")
    assert.match(stdout, /demo-notes\s+kind=directory\s+used=\d+ bytes/)
    assert.include(stdout, "line-count.txt (written in the sandbox): 2")
  })

  it("links, modes, watch and the FileSystem layer (docs/files.md)", async () => {
    const stdout = await runExample("links-modes-watch.ts")
    assert.include(stdout, "readlink=../tool/lib/cli.js")
    assert.include(stdout, "run.sh=755 pgdata=700")
    assert.match(stdout, /watch=(Created|Modified) \/logs\/today\.log/)
    assert.include(stdout, "notes=a.txt")
  })

  it("typical flow (docs/sandboxes.md): a named volume, a tmpfs and a disk volume in one sandbox", async () => {
    const stdout = await runExample("typical-flow.ts")
    assert.include(stdout, "exit=0 stdout=shared cache")
    assert.include(stdout, "out.txt=done")
  })

  it("snapshots and forks (docs/snapshots.md): snapshot, forks, a snapshot mount, restore", async () => {
    const stdout = await runExample("snapshots.ts")
    assert.include(stdout, "snapshot reads: v1")
    assert.include(stdout, "snapshot write: VolumeFsError ReadOnly")
    assert.include(stdout, "sandbox sees the snapshot: v1")
    assert.include(stdout, 'run-1: "v1x\\n"')
    assert.include(stdout, 'run-2: "v1"')
    assert.include(stdout, "after restore: v1")
    assert.include(stdout, "snapshots: known-good")
  }, 120_000)

  it("growing a disk volume and last use (docs/volumes.md)", async () => {
    const stdout = await runExample("grow-and-last-use.ts")
    assert.include(stdout, "size=128MiB data=kept")
    assert.include(stdout, "shrink refused: InvalidConfig")
    assert.include(stdout, "used recently: true")
    assert.include(stdout, "unused for a week: 0")
  }, 120_000)

  it("renaming (docs/volumes.md): data, labels and snapshots move; a taken name is refused", async () => {
    const stdout = await runExample("rename.ts")
    assert.include(stdout, "renamed=pip-cache-py312 labels=team=ml")
    assert.include(stdout, "data=numpy-2.1")
    assert.include(stdout, "snapshots=known-good")
    assert.include(stdout, "old name: VolumeNotFound")
    assert.include(stdout, "onto a taken name: VolumeAlreadyExists")
  }, 120_000)
})
