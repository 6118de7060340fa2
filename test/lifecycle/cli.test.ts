/**
 * The lifecycle CLI commands (run from dist/: `npm run build` first): `create --if-missing`,
 * `label`, `update --quota/--no-quota`, `rename`.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Option, Scope } from "effect"
import { execFile } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"

const MAIN = NodePath.resolve(import.meta.dirname, "../../dist/cli/main.js")

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** `volumes --home <home> ...args` in a child process (never blocks the test worker). */
const volumes = (home: string, args: ReadonlyArray<string>): Effect.Effect<Result> =>
  Effect.async<Result>((resume) => {
    execFile(process.execPath, [MAIN, "--home", home, ...args], (error, stdout, stderr) =>
      resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr })))
  })

const home = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "volumes-life-"))),
    (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
  ),
  (dir) => NodePath.join(dir, "home")
)

const ok = (dir: string, args: ReadonlyArray<string>) =>
  Effect.tap(volumes(dir, args), (result) =>
    Effect.sync(() => assert.strictEqual(result.code, 0, `volumes ${args.join(" ")}: ${result.stderr}`)))

describe("lifecycle CLI", () => {
  it.scopedLive("create --if-missing is idempotent and names a mismatch", () =>
    Effect.gen(function*() {
      if (!NodeFs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`)
      const dir = yield* home
      yield* ok(dir, ["create", "pip", "--quota", "1G", "--label", "team=ml"])
      const again = yield* volumes(dir, ["create", "pip", "--quota", "1G", "--label", "team=ml"])
      assert.notStrictEqual(again.code, 0, "plain create refuses an existing name")
      yield* ok(dir, ["create", "pip", "--quota", "1G", "--if-missing"])
      yield* ok(dir, ["create", "fresh", "--if-missing"])
      const mismatch = yield* volumes(dir, ["create", "pip", "--quota", "2G", "--if-missing"])
      assert.notStrictEqual(mismatch.code, 0)
      assert.include(mismatch.stderr, "quota is 1024 MiB, but quota(2048)")
    }))

  it.scopedLive("label sets and removes labels; update changes and removes the quota", () =>
    Effect.gen(function*() {
      const dir = yield* home
      yield* ok(dir, ["create", "pip", "--quota", "1G", "--label", "team=ml"])
      // Options end at `--` (the CLI's rule, docs/cli.md); after it, `-team` is a removal, not an option.
      const labelled = yield* ok(dir, ["label", "pip", "--json", "--", "tier=hot", "-team"])
      assert.deepStrictEqual(JSON.parse(labelled.stdout).labels, { tier: "hot" })
      yield* ok(dir, ["label", "pip", "--", "tier-"])
      const raised = yield* ok(dir, ["update", "pip", "--quota", "4G", "--json"])
      assert.strictEqual(JSON.parse(raised.stdout).quotaBytes, 4 * 1024 ** 3)
      const removed = yield* ok(dir, ["update", "pip", "--no-quota", "--json"])
      const record = JSON.parse(removed.stdout)
      assert.deepStrictEqual([record.quotaBytes, record.labels], [null, {}])
      const before = yield* DateTime.now
      yield* ok(dir, ["update", "pip", "--expires-in", "30d"])
      const expiresAt = (yield* Volume.get("pip").pipe(Effect.provide(LocalBackend.layer({ home: dir })))).expiresAt
      const ahead = Option.map(expiresAt, (at) => DateTime.distance(before, at))
      assert.isTrue(Option.exists(ahead, (ms) => ms >= 30 * 86_400_000 && ms < 30 * 86_400_000 + 60_000), String(ahead))
      const badDuration = yield* volumes(dir, ["update", "pip", "--expires-in", "soon"])
      assert.notStrictEqual(badDuration.code, 0)
      assert.include(badDuration.stderr, "expected a duration")
      yield* ok(dir, ["create", "old"])
      yield* Volume.update("old", { expiresAt: Option.some(DateTime.subtract(before, { minutes: 1 })) }).pipe(
        Effect.provide(LocalBackend.layer({ home: dir }))
      )
      const idle = yield* ok(dir, ["prune", "--unused-for", "1h", "--dry-run", "--json"])
      assert.deepStrictEqual(JSON.parse(idle.stdout).removed, [], "both were created just now")
      const pruned = yield* ok(dir, ["prune", "--expired", "--force", "--json"])
      assert.deepStrictEqual(JSON.parse(pruned.stdout).removed, ["old"], "pip expires in 30 days: kept")
      const bad = yield* volumes(dir, ["label", "pip", "novalue"])
      assert.notStrictEqual(bad.code, 0)
      assert.include(bad.stderr, "expected KEY=VALUE")
    }))

  it.scopedLive("rename moves the volume with its snapshots; each refusal has its exit code and changes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* home
      yield* ok(dir, ["create", "pip-cache", "--label", "team=ml"])
      const host = NodePath.join(dir, "..", "file.txt")
      NodeFs.writeFileSync(host, "cached")
      yield* ok(dir, ["fs", "pip-cache", "put", host, "/a.txt"])
      yield* ok(dir, ["snapshot", "create", "pip-cache", "--name", "s1"])
      const renamed = yield* ok(dir, ["rename", "pip-cache", "pip-cache-py312", "--json"])
      const record = JSON.parse(renamed.stdout)
      assert.deepStrictEqual([record.name, record.labels], ["pip-cache-py312", { team: "ml" }])
      assert.strictEqual((yield* ok(dir, ["fs", "pip-cache-py312", "cat", "/a.txt"])).stdout, "cached")
      assert.include((yield* ok(dir, ["snapshot", "ls", "pip-cache-py312"])).stdout, "s1")
      assert.strictEqual((yield* ok(dir, ["rename", "pip-cache-py312", "pip"])).stdout, "pip\n")

      yield* ok(dir, ["create", "other"])
      const codes = [
        [["rename", "ghost", "x"], 4, 'volume "ghost" does not exist'],
        [["rename", "pip", "OTHER"], 5, 'volume "OTHER" already exists'],
        [["rename", "pip", "../x"], 3, "must start with"]
      ] as const
      for (const [args, code, mentions] of codes) {
        const result = yield* volumes(dir, args)
        assert.strictEqual(result.code, code, `volumes ${args.join(" ")}: ${result.stderr}`)
        assert.include(result.stderr, mentions)
      }
      // A holder in this process: the CLI's process sees it and refuses.
      const scope = yield* Scope.make()
      yield* Effect.gen(function*() {
        const backend = yield* VolumeBackend
        yield* backend.holders.acquire("pip", "sandbox test", "rw").pipe(Scope.extend(scope))
      }).pipe(Effect.provide(LocalBackend.layer({ home: dir })))
      const held = yield* volumes(dir, ["rename", "pip", "free"])
      assert.strictEqual(held.code, 6, held.stderr)
      assert.include(held.stderr, "sandbox test")
      const listed = JSON.parse((yield* ok(dir, ["ls", "--json"])).stdout) as ReadonlyArray<{ readonly name: string }>
      assert.deepStrictEqual(listed.map((v) => v.name).sort(), ["other", "pip"], "nothing changed")
    }))
})
