/**
 * The `volumes` binary driven as a user would: the BUILT `dist/cli/main.js` in a
 * subprocess, each test with its own temp home (`npm test` builds first).
 */
import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Layer } from "effect"
import * as Tar from "../../src/internal/archive/tarEncode.js"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import * as Sandbox from "../../src/Sandbox.js"
import type { Result } from "./harness.js"
import { assertOneLineError, MAIN, run, session } from "./harness.js"

/** Every file under `root` as relative path → bytes (directories as empty markers). */
const readTree = (root: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (dir: string, rel: string) => {
    for (const name of NodeFs.readdirSync(dir).sort()) {
      const path = NodePath.join(dir, name)
      const key = rel === "" ? name : `${rel}/${name}`
      if (NodeFs.statSync(path).isDirectory()) {
        out[key + "/"] = ""
        walk(path, key)
      } else {
        out[key] = NodeFs.readFileSync(path).toString("base64")
      }
    }
  }
  walk(root, "")
  return out
}

const makeTree = (root: string): void => {
  NodeFs.mkdirSync(NodePath.join(root, "src/nested/deeper"), { recursive: true })
  NodeFs.mkdirSync(NodePath.join(root, "empty"))
  NodeFs.writeFileSync(NodePath.join(root, "README.md"), "# hello\n")
  NodeFs.writeFileSync(NodePath.join(root, "empty.txt"), "")
  NodeFs.writeFileSync(NodePath.join(root, "src/blocks.bin"), Buffer.alloc(4096, 5))
  NodeFs.writeFileSync(NodePath.join(root, "src/main.ts"), "console.log('hi')\n")
  const binary = Buffer.alloc(300_000)
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7919) % 256
  NodeFs.writeFileSync(NodePath.join(root, "src/nested/deeper/blob.bin"), binary)
}

describe("volumes CLI", () => {
  it.scoped("create → put a tree → ls/inspect → export → rm → import → identical bytes", () =>
    Effect.gen(function*() {
      const { dir, ok, volumes } = yield* session
      const tree = NodePath.join(dir, "project")
      makeTree(tree)

      assert.strictEqual((yield* ok(["create", "work", "--label", "team=infra", "--quota", "64M"])).stdout.trim(), "work")
      yield* ok(["fs", "work", "put", tree, "/"])
      assert.include((yield* ok(["fs", "work", "ls", "/project"])).stdout, "README.md")
      assert.deepStrictEqual((yield* ok(["fs", "work", "cat", "/project/src/nested/deeper/blob.bin"])).raw,
        NodeFs.readFileSync(NodePath.join(tree, "src/nested/deeper/blob.bin")))

      const table = (yield* ok(["ls"])).stdout
      assert.match(table, /^NAME\s+KIND\s+USED\s+QUOTA\/SIZE\s+LABELS\s+CREATED/)
      assert.match(table, /\nwork\s+directory\s+\S+ KiB\s+64 MiB\s+team=infra\s+/)
      const listed = JSON.parse((yield* ok(["ls", "--json"])).stdout)
      assert.strictEqual(listed.length, 1)
      assert.strictEqual(listed[0].name, "work")
      assert.strictEqual(listed[0].quotaBytes, 64 * 1024 * 1024)
      assert.deepStrictEqual(listed[0].labels, { team: "infra" })
      const inspected = JSON.parse((yield* ok(["inspect", "work", "--json"])).stdout)
      assert.strictEqual(inspected.usedBytes, 8 + 18 + 4096 + 300_000)
      assert.match((yield* ok(["inspect", "work"])).stdout, /Used:\s+297 KiB \(304122 bytes\)/)

      const archive = NodePath.join(dir, "work.tar")
      yield* ok(["export", "work", "-o", archive])
      assert.strictEqual((yield* ok(["rm", "work"])).stdout.trim(), "work")
      assert.strictEqual((yield* volumes(["inspect", "work"])).code, 4)

      assert.include((yield* ok(["import", "restored", "--create", "-i", archive])).stdout, "into restored")
      const back = NodePath.join(dir, "back")
      yield* ok(["fs", "restored", "get", "/project", back])
      assert.deepStrictEqual(readTree(back), readTree(tree))

      // Export to stdout and import from stdin give the same archive.
      const piped = (yield* ok(["export", "restored"])).raw
      yield* ok(["import", "again", "--create"], { input: piped })
      assert.deepStrictEqual((yield* ok(["export", "again"])).raw.length, piped.length)
    }))

  it.scoped("expected errors: one line on stderr and a distinct exit code", () =>
    Effect.gen(function*() {
      const { dir, ok, volumes } = yield* session
      assertOneLineError((yield* volumes(["inspect", "missing"])), 4, `"missing"`)
      assertOneLineError((yield* volumes(["fs", "missing", "ls"])), 4, `"missing"`)
      assertOneLineError((yield* volumes(["create", "bad/name"])), 3, "bad/name")
      assertOneLineError((yield* volumes(["create", "sized", "--quota", "lots"])), 3, "--quota")
      yield* ok(["create", "dup"])
      assertOneLineError((yield* volumes(["create", "DUP"])), 5, "already exists")
      assertOneLineError((yield* volumes(["fs", "dup", "cat", "/nope.txt"])), 8, "/nope.txt")
      assertOneLineError((yield* volumes(["fs", "dup", "cat", "../../etc/passwd"])), 7, "climbs above")

      yield* ok(["create", "tiny", "--quota", "1M"])
      const big = NodePath.join(dir, "big.bin")
      NodeFs.writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 1))
      assertOneLineError((yield* volumes(["fs", "tiny", "put", big, "/big.bin"])), 9, "quota")
      assert.deepStrictEqual(JSON.parse((yield* ok(["fs", "tiny", "ls", "--json"])).stdout), [])

      assert.strictEqual((yield* volumes(["rm", "missing"])).code, 4)
      assert.strictEqual((yield* volumes(["rm", "--force", "missing"])).code, 0)
      assert.strictEqual((yield* volumes(["no-such-command"])).code, 2)
    }))

  it.scoped("an archive with ../ entries is refused and changes nothing", () =>
    Effect.gen(function*() {
      const { dir, ok, volumes } = yield* session
      const entry = (name: string, content: string) => {
        const data = Buffer.from(content)
        return [Tar.encodeHeader({ name, type: "file", size: data.length, mode: 0o644, uid: 0, gid: 0, mtime: 0 }), data, Tar.padding(data.length)]
      }
      const evil = Buffer.concat([
        ...entry("fine.txt", "harmless"),
        ...entry("keep.txt", "overwritten"),
        ...entry("../../escaped.txt", "pwned"),
        Tar.trailer()
      ])
      const archive = NodePath.join(dir, "evil.tar")
      NodeFs.writeFileSync(archive, evil)

      yield* ok(["create", "target"])
      yield* ok(["fs", "target", "put", archive, "/keep.txt"])
      const before = (yield* ok(["fs", "target", "ls", "--json"])).stdout
      const keep = (yield* ok(["fs", "target", "cat", "/keep.txt"])).raw

      assertOneLineError((yield* volumes(["import", "target", "-i", archive])), 7, "escapes the volume")
      assert.strictEqual((yield* ok(["fs", "target", "ls", "--json"])).stdout, before)
      assert.deepStrictEqual((yield* ok(["fs", "target", "cat", "/keep.txt"])).raw, keep)
      assert.isFalse(NodeFs.existsSync(NodePath.join(dir, "home", "escaped.txt")))
      assert.isFalse(NodeFs.existsSync(NodePath.join(dir, "home", "volumes", "escaped.txt")))

      // With --create the new volume goes away again.
      assertOneLineError((yield* volumes(["import", "fresh", "--create", "-i", archive])), 7, "escapes the volume")
      assert.strictEqual((yield* volumes(["inspect", "fresh"])).code, 4)
    }))

  it.scoped("fs mkdir, cp, mv, rm, stat and get of a single file", () =>
    Effect.gen(function*() {
      const { dir, ok, volumes } = yield* session
      yield* ok(["create", "files"])
      const note = NodePath.join(dir, "note.txt")
      NodeFs.writeFileSync(note, "note\n")
      yield* ok(["fs", "files", "mkdir", "/a/b"])
      yield* ok(["fs", "files", "put", note, "/a/b/"])
      yield* ok(["fs", "files", "cp", "/a", "/copy"])
      yield* ok(["fs", "files", "mv", "/copy/b/note.txt", "/moved.txt"])
      const stat = JSON.parse((yield* ok(["fs", "files", "stat", "/moved.txt", "--json"])).stdout)
      assert.strictEqual(stat.kind, "file")
      assert.strictEqual(stat.size, 5)
      assert.match((yield* ok(["fs", "files", "stat", "/a"])).stdout, /Kind:\s+directory/)
      assert.deepStrictEqual(
        JSON.parse((yield* ok(["fs", "files", "ls", "/", "--json"])).stdout).map((e: { path: string; kind: string }) => [e.path, e.kind]),
        [["/a", "directory"], ["/copy", "directory"], ["/moved.txt", "file"]]
      )
      assertOneLineError(yield* volumes(["fs", "files", "rm", "/copy"]), 10, "is a directory")
      yield* ok(["fs", "files", "rm", "-r", "/copy"])
      yield* ok(["fs", "files", "rm", "/moved.txt"])
      const out = NodePath.join(dir, "out")
      NodeFs.mkdirSync(out)
      yield* ok(["fs", "files", "get", "/a/b/note.txt", out])
      assert.strictEqual(NodeFs.readFileSync(NodePath.join(out, "note.txt"), "utf8"), "note\n")
      assert.deepStrictEqual(
        JSON.parse((yield* ok(["fs", "files", "ls", "--json"])).stdout).map((e: { path: string }) => e.path),
        ["/a"]
      )
    }))

  it.scoped("prune removes what matches and lists it", () =>
    Effect.gen(function*() {
      const { ok } = yield* session
      yield* ok(["create", "keep", "--label", "tier=prod"])
      yield* ok(["create", "scratch1", "--label", "tier=tmp"])
      yield* ok(["create", "scratch2", "--label", "tier=tmp"])
      const dry = (yield* ok(["prune", "--label", "tier=tmp", "--dry-run"])).stdout
      assert.include(dry, "would remove scratch1")
      assert.include(dry, "would remove scratch2")
      assert.strictEqual(JSON.parse((yield* ok(["ls", "--json"])).stdout).length, 3)
      const result = JSON.parse((yield* ok(["prune", "-f", "--label", "tier=tmp", "--json"])).stdout)
      assert.deepStrictEqual([...result.removed].sort(), ["scratch1", "scratch2"])
      assert.deepStrictEqual(JSON.parse((yield* ok(["ls", "--json"])).stdout).map((v: { name: string }) => v.name), ["keep"])
    }))

  it.scoped("prune skips a volume a sandbox holds, in a dry run and for real", () =>
    Effect.gen(function*() {
      const { home, ok } = yield* session
      yield* ok(["create", "held", "--label", "tier=tmp"])
      yield* ok(["create", "free", "--label", "tier=tmp"])
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Sandbox.builder("holder").volume("/held", (m) => m.named("held")).create()
        const dry = (yield* ok(["prune", "--label", "tier=tmp", "--dry-run"])).stdout
        assert.include(dry, "would remove free")
        assert.match(dry, /skipped held \(.*sandbox holder/)
        const real = JSON.parse((yield* ok(["prune", "-f", "--label", "tier=tmp", "--json"])).stdout)
        assert.deepStrictEqual(real.removed, ["free"])
        assert.deepStrictEqual(real.skipped.map((s: { name: string }) => s.name), ["held"])
      })).pipe(Effect.provide(Layer.mergeAll(LocalBackend.layer({ home }), NamespaceRuntime.layer)))
    }))

  it.scoped("progress bars appear under a terminal and not when piped", () =>
    Effect.gen(function*() {
      const { dir, home, ok, volumes } = yield* session
      yield* ok(["create", "data"])
      const file = NodePath.join(dir, "file.bin")
      NodeFs.writeFileSync(file, Buffer.alloc(3 * 1024 * 1024, 3))
      const env = { VOLUMES_PROGRESS_DELAY_MS: "0" }

      const piped = yield* volumes(["fs", "data", "put", file, "/file.bin"], { env })
      assert.strictEqual(piped.code, 0)
      assert.strictEqual(piped.stderr, "")

      const command = [process.execPath, MAIN, "--home", home, "export", "data", "-o", NodePath.join(dir, "out.tar")]
        .map((arg) => `'${arg}'`).join(" ")
      const tty = yield* run("script", ["-q", "-e", "-c", command, "/dev/null"], { env })
      assert.strictEqual(tty.code, 0, tty.stdout + tty.stderr)
      assert.match(tty.stdout, /export data\s+\[#+-*\]\s+\d+%.*\/s\s+ETA/)
      assert.include(tty.stdout, "100%")

      const quiet = yield* volumes(["export", "data", "-o", NodePath.join(dir, "out2.tar")], { env })
      assert.strictEqual(quiet.code, 0)
      assert.strictEqual(quiet.stderr, "")
    }))

  it.scoped("run mounts a volume and exits with the command's exit code", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "shared"])
      const result = yield* volumes(["run", "-v", "shared:/data", "--", "sh", "-c", "echo from-sandbox > /data/note.txt; echo out; exit 7"])
      assert.strictEqual(result.code, 7, result.stderr)
      assert.strictEqual(result.stdout, "out\n")
      assert.strictEqual((yield* ok(["fs", "shared", "cat", "/note.txt"])).stdout, "from-sandbox\n")
    }))

  it.scoped("run -i passes stdin to the command; without -i the command gets none", () =>
    Effect.gen(function*() {
      const { volumes } = yield* session
      const input = new TextEncoder().encode("one\ntwo\nthree\n")
      const piped = yield* volumes(["run", "-i", "--", "wc", "-l"], { input })
      assert.strictEqual(piped.code, 0, piped.stderr)
      assert.strictEqual(piped.stdout.trim(), "3")
      const closed = yield* volumes(["run", "--", "wc", "-l"], { input })
      assert.strictEqual(closed.stdout.trim(), "0")
    }))
})

const s3Endpoint = process.env["EFFECT_VOLUMES_S3_ENDPOINT"] ?? ""

// Needs the server of scripts/ceph-s3-up.sh (its EFFECT_VOLUMES_S3_* exports); skipped without one.
describe.skipIf(s3Endpoint === "")("volumes CLI on the S3 backend", () => {
  it.scoped("create → put → ls → export → import → cat → rm through --backend s3", () =>
    Effect.gen(function*() {
      const { dir, volumes } = yield* session
      const prefix = `cli-test-${process.pid}-${Date.now().toString(36)}/`
      const s3 = (args: ReadonlyArray<string>, options?: { readonly input?: Uint8Array }) =>
        Effect.tap(
          volumes(["--backend", "s3", "--s3-bucket", "effect-volumes-cli-test", "--s3-prefix", prefix, ...args], options),
          (result) => Effect.sync(() => assert.strictEqual(result.code, 0, `volumes ${args.join(" ")} failed: ${result.stderr}`))
        )
      const file = NodePath.join(dir, "payload.bin")
      NodeFs.writeFileSync(file, Buffer.alloc(200_000, 42))
      yield* s3(["create", "remote"])
      yield* s3(["fs", "remote", "put", file, "/data/payload.bin"])
      const names = (result: Result) =>
        JSON.parse(result.stdout).map((v: { name: string; backend: string }) => [v.name, v.backend])
          .filter(([name]: [string]) => name !== "default")
      assert.deepStrictEqual(names(yield* s3(["ls", "--json"])), [["remote", "cloud"]])
      const tar = (yield* s3(["export", "remote"])).raw
      yield* s3(["import", "copy", "--create"], { input: tar })
      assert.deepStrictEqual((yield* s3(["fs", "copy", "cat", "/data/payload.bin"])).raw, NodeFs.readFileSync(file))
      yield* s3(["rm", "remote", "copy"])
      assert.deepStrictEqual(names(yield* s3(["ls", "--json"])), [])
    }))
})
