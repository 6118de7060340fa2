/**
 * `volumes fs` with links and modes, through the BUILT binary (`npm run build` first):
 * put/get round trips byte- and mode-identical trees, `ln -s`, `readlink`, `chmod`,
 * `watch --json`, and `get FILE host/absent-dir/`.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"

const MAIN = NodePath.resolve(import.meta.dirname, "../../dist/cli/main.js")
const execFileAsync = promisify(execFile)

/** A fresh home and a `volumes` runner for it; `code` is the exit status. */
const session = Effect.gen(function*() {
  if (!NodeFs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`)
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "volumes-links-"))),
    (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
  )
  const home = NodePath.join(dir, "home")
  const volumes = (args: ReadonlyArray<string>) =>
    Effect.promise(() =>
      execFileAsync(process.execPath, [MAIN, "--home", home, ...args]).then(
        ({ stderr, stdout }) => ({ code: 0, stdout, stderr }),
        (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr })
      )
    )
  const ok = (args: ReadonlyArray<string>) =>
    Effect.tap(volumes(args), (result) =>
      Effect.sync(() => assert.strictEqual(result.code, 0, `volumes ${args.join(" ")} failed: ${result.stderr}`)))
  return { dir, home, volumes, ok }
})

/** Every entry below `root`: kind, permission bits, and content or link target. */
const describeHostTree = (root: string): Array<string> => {
  const out: Array<string> = []
  const walk = (dir: string, rel: string) => {
    for (const name of NodeFs.readdirSync(dir).sort()) {
      const path = NodePath.join(dir, name)
      const key = `${rel}/${name}`
      const info = NodeFs.lstatSync(path)
      const mode = (info.mode & 0o7777).toString(8)
      if (info.isSymbolicLink()) out.push(`${key} link ${NodeFs.readlinkSync(path)}`)
      else if (info.isDirectory()) {
        out.push(`${key} dir ${mode}`)
        walk(path, key)
      } else out.push(`${key} file ${mode} ${NodeFs.readFileSync(path).toString("base64")}`)
    }
  }
  walk(root, "")
  return out
}

/** node_modules/.bin-style links, an executable script, a 0700 data directory, a dangling link. */
const makeTree = (root: string): void => {
  NodeFs.mkdirSync(NodePath.join(root, "lib"), { recursive: true })
  NodeFs.mkdirSync(NodePath.join(root, "bin"))
  NodeFs.mkdirSync(NodePath.join(root, "pgdata"))
  NodeFs.writeFileSync(NodePath.join(root, "lib/cli.js"), "console.log('cli')\n")
  NodeFs.symlinkSync("../lib/cli.js", NodePath.join(root, "bin/tool"))
  NodeFs.symlinkSync("/nowhere/at/all", NodePath.join(root, "bin/dangling"))
  NodeFs.writeFileSync(NodePath.join(root, "bin/run.sh"), "#!/bin/sh\necho ran\n")
  NodeFs.chmodSync(NodePath.join(root, "bin/run.sh"), 0o755)
  NodeFs.writeFileSync(NodePath.join(root, "pgdata/PG_VERSION"), "16\n")
  NodeFs.chmodSync(NodePath.join(root, "pgdata/PG_VERSION"), 0o600)
  NodeFs.chmodSync(NodePath.join(root, "pgdata"), 0o700)
}

describe("volumes fs: links and modes", () => {
  it.scoped("put then get of a tree with links, a script and a 0700 directory is byte- and mode-identical", () =>
    Effect.gen(function*() {
      const { dir, ok } = yield* session
      const tree = NodePath.join(dir, "scripts")
      makeTree(tree)
      yield* ok(["create", "tools"])
      const put = yield* ok(["fs", "tools", "put", tree, "/"])
      assert.notInclude(put.stderr, "skipped", "nothing is skipped")
      assert.strictEqual((yield* ok(["fs", "tools", "readlink", "/scripts/bin/tool"])).stdout, "../lib/cli.js\n")
      const back = NodePath.join(dir, "back")
      yield* ok(["fs", "tools", "get", "/scripts", back])
      assert.deepStrictEqual(describeHostTree(back), describeHostTree(tree))
      assert.strictEqual(NodeFs.lstatSync(back).mode & 0o7777, NodeFs.lstatSync(tree).mode & 0o7777)
    }))

  it.scoped("ln -s, readlink and chmod; bad modes are refused", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "tools"])
      yield* ok(["fs", "tools", "ln", "-s", "../lib/cli.js", "/bin/tool"])
      assert.strictEqual((yield* ok(["fs", "tools", "readlink", "/bin/tool"])).stdout, "../lib/cli.js\n")
      const listed = JSON.parse((yield* ok(["fs", "tools", "stat", "/bin/tool", "--json"])).stdout)
      assert.strictEqual(listed.kind, "symlink")
      const existing = yield* volumes(["fs", "tools", "ln", "-s", "x", "/bin/tool"])
      assert.notStrictEqual(existing.code, 0)
      assert.include(existing.stderr, "already exists")
      const dir = yield* session
      const script = NodePath.join(dir.dir, "tool.sh")
      NodeFs.writeFileSync(script, "#!/bin/sh\n")
      yield* ok(["fs", "tools", "put", script, "/bin/tool.sh"])
      yield* ok(["fs", "tools", "chmod", "755", "/bin/tool.sh"])
      assert.strictEqual(JSON.parse((yield* ok(["fs", "tools", "stat", "/bin/tool.sh", "--json"])).stdout).mode, 0o755)
      const bad = yield* volumes(["fs", "tools", "chmod", "999", "/bin/tool.sh"])
      assert.strictEqual(bad.code, 3, bad.stderr)
      assert.include(bad.stderr, "999")
      const missing = yield* volumes(["fs", "tools", "chmod", "644", "/nope"])
      assert.include(missing.stderr, "/nope")
    }))

  it.scoped("get of a file into an absent directory named with a trailing / puts it there under its own name", () =>
    Effect.gen(function*() {
      const { dir, ok } = yield* session
      const file = NodePath.join(dir, "note.txt")
      NodeFs.writeFileSync(file, "note\n")
      yield* ok(["create", "files"])
      yield* ok(["fs", "files", "put", file, "/a/note.txt"])
      const out = NodePath.join(dir, "absent", "deeper")
      yield* ok(["fs", "files", "get", "/a/note.txt", `${out}/`])
      assert.strictEqual(NodeFs.readFileSync(NodePath.join(out, "note.txt"), "utf8"), "note\n")
    }))

  it.scoped("watch --json prints one JSON event per line until interrupted", () =>
    Effect.gen(function*() {
      const { home, ok } = yield* session
      yield* ok(["create", "watched"])
      // A directory volume's files on the host (docs/design.md, "Local layout").
      const hostDir = NodePath.join(home, "volumes", "watched", "data")
      const lines = yield* Effect.async<Array<string>>((resume) => {
        const child = spawn(process.execPath, [MAIN, "--home", home, "fs", "watched", "watch", "/", "--json"], {
          stdio: ["ignore", "pipe", "pipe"]
        })
        let out = ""
        let n = 0
        // Writes a file on the host until the watch reports one (the watch takes a moment to start).
        const timer = setInterval(() => NodeFs.writeFileSync(NodePath.join(hostDir, `host-${n++}.txt`), "x"), 200)
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString("utf8")
          if (out.includes("\n")) child.kill("SIGINT")
        })
        child.on("close", () => {
          clearInterval(timer)
          resume(Effect.succeed(out.trim().split("\n")))
        })
      })
      const event = JSON.parse(lines[0]!)
      assert.include(["Created", "Modified"], event._tag)
      assert.match(event.path, /^\/host-\d+\.txt$/)
    }))
})
