/**
 * The snapshot commands of the built `volumes` binary (SPEC §9): the shell
 * example, JSON output and exit codes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const MAIN = NodePath.resolve(import.meta.dirname, "../../dist/cli/main.js")

const tempHome = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "volumes-cli-snapshots-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** `volumes --home <home> ...args`: exit code and output. */
const volumes = (home: string, args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = execFile(process.execPath, [MAIN, "--home", home, ...args], (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    child.stdin?.end()
  })

describe("volumes snapshot | fork | restore", () => {
  it.scopedLive("the issue's shell example, with --json and exit codes", () =>
    Effect.gen(function*() {
      if (!NodeFs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`)
      const home = yield* tempHome
      const ok = (args: ReadonlyArray<string>) =>
        Effect.tap(volumes(home, args), (r) =>
          Effect.sync(() => assert.strictEqual(r.code, 0, `volumes ${args.join(" ")}: ${r.stderr}`)))
      /** Writes `text` to `path` in the volume through a host file. */
      const write = (volume: string, path: string, text: string) => {
        const host = NodePath.join(home, "..", `upload-${volume}.txt`)
        NodeFs.writeFileSync(host, text)
        return ok(["fs", volume, "put", host, path])
      }
      yield* ok(["create", "workspace"])
      yield* write("workspace", "/repo/README.md", "v1")
      assert.strictEqual((yield* ok(["snapshot", "create", "workspace", "--name", "known-good", "--label", "ci=green"])).stdout, "known-good\n")
      yield* write("workspace", "/repo/README.md", "v2 (broken)")
      yield* ok(["fork", "workspace", "run-1", "--snapshot", "known-good"])
      assert.strictEqual((yield* ok(["fs", "run-1", "cat", "/repo/README.md"])).stdout, "v1")
      const run = yield* ok(["run", "-v", "workspace@known-good:/ref", "--", "cat", "/ref/repo/README.md"])
      assert.strictEqual(run.stdout, "v1")
      const listed = JSON.parse((yield* ok(["snapshot", "ls", "workspace", "--json"])).stdout)
      assert.deepStrictEqual(listed.map((s: { name: string }) => s.name), ["known-good"])
      assert.strictEqual(listed[0].volume, "workspace")
      assert.strictEqual(listed[0].usedBytes, 2)
      assert.deepStrictEqual(listed[0].labels, { ci: "green" })
      const inspected = JSON.parse((yield* ok(["snapshot", "inspect", "workspace", "known-good", "--json"])).stdout)
      assert.strictEqual(inspected.name, "known-good")
      const restored = JSON.parse((yield* ok(["restore", "workspace", "known-good", "--json"])).stdout)
      assert.strictEqual(restored.usedBytes, 2)
      assert.strictEqual((yield* ok(["fs", "workspace", "cat", "/repo/README.md"])).stdout, "v1")

      // Exit codes of the existing table: not found 4, already exists 5, in use 6, invalid 3.
      assert.strictEqual((yield* volumes(home, ["snapshot", "inspect", "workspace", "nope"])).code, 4)
      assert.strictEqual((yield* volumes(home, ["snapshot", "create", "workspace", "--name", "KNOWN-GOOD"])).code, 5)
      assert.strictEqual((yield* volumes(home, ["fork", "workspace", "run-1"])).code, 5)
      const inUse = yield* volumes(home, ["rm", "workspace"])
      assert.strictEqual(inUse.code, 6)
      assert.include(inUse.stderr, "snapshot known-good")
      assert.strictEqual((yield* volumes(home, ["snapshot", "create", "workspace", "--name", "bad name"])).code, 3)
      assert.strictEqual((yield* volumes(home, ["run", "-v", "workspace@nope:/ref", "--", "true"])).code, 4)
      yield* ok(["snapshot", "rm", "workspace", "known-good"])
      assert.strictEqual((yield* ok(["snapshot", "ls", "workspace", "--json"])).stdout.trim(), "[]")
      yield* ok(["rm", "workspace"])
      yield* ok(["snapshot", "create", "run-1", "--name", "a"])
      yield* ok(["rm", "run-1", "--with-snapshots"])
      assert.strictEqual((yield* volumes(home, ["inspect", "run-1"])).code, 4)
    }))

  it.scopedLive("expired snapshots: listed until `snapshot prune` or `prune --expired` removes them", () =>
    Effect.gen(function*() {
      const home = yield* tempHome
      const ok = (args: ReadonlyArray<string>) =>
        Effect.tap(volumes(home, args), (r) =>
          Effect.sync(() => assert.strictEqual(r.code, 0, `volumes ${args.join(" ")}: ${r.stderr}`)))
      yield* ok(["create", "v"])
      yield* ok(["create", "w"])
      // Expired the moment it is taken.
      yield* ok(["snapshot", "create", "v", "--name", "old", "--expires-in", "0s"])
      yield* ok(["snapshot", "create", "v", "--name", "fresh", "--expires-in", "7d"])
      yield* ok(["snapshot", "create", "w", "--name", "old", "--expires-in", "0s"])
      const listed = JSON.parse((yield* ok(["snapshot", "ls", "v", "--json"])).stdout)
      assert.deepStrictEqual(listed.map((s: { name: string }) => s.name).sort(), ["fresh", "old"])
      assert.strictEqual((yield* ok(["snapshot", "prune", "v", "--dry-run"])).stdout, "would remove v@old\n")
      const pruned = JSON.parse((yield* ok(["snapshot", "prune", "v", "--json"])).stdout)
      assert.deepStrictEqual(pruned.removed, [{ volume: "v", snapshot: "old" }])
      assert.strictEqual((yield* ok(["snapshot", "prune", "v"])).stdout, "no expired snapshots\n")
      // `prune --expired` takes expired snapshots of every volume, and no volume that has not expired.
      const dry = (yield* ok(["prune", "--expired", "--dry-run"])).stdout
      assert.strictEqual(dry, "would remove snapshot w@old\n")
      const real = JSON.parse((yield* ok(["prune", "--expired", "-f", "--json"])).stdout)
      assert.deepStrictEqual(real.snapshots, [{ volume: "w", snapshot: "old" }])
      assert.deepStrictEqual(real.removed, [])
      assert.strictEqual((yield* ok(["snapshot", "ls", "w", "--json"])).stdout.trim(), "[]")
      assert.deepStrictEqual(
        JSON.parse((yield* ok(["snapshot", "ls", "v", "--json"])).stdout).map((s: { name: string }) => s.name),
        ["fresh"]
      )
    }))
})
