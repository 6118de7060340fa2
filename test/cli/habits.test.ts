/**
 * The `volumes` binary for people (issue 13): one test per finding, each through the
 * built binary, plus the runtime rules of the CLI (issue 16 item 9).
 */
import { assert, describe, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as NodeZlib from "node:zlib"
import { Effect } from "effect"
import { assertOneLineError, assertUsageError, MAIN, run, session } from "./harness.js"

const packageJson = JSON.parse(NodeFs.readFileSync(NodePath.resolve(import.meta.dirname, "../../package.json"), "utf8"))

describe("volumes CLI habits", () => {
  it.scoped("1: -v NAME:/path mounts an existing volume of any kind; creating needs --create-volumes", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "db", "--disk", "--size", "64M"])
      yield* ok(["run", "-v", "db:/var/lib/db", "--", "sh", "-c", "echo row > /var/lib/db/table"])
      const read = yield* ok(["run", "--mount", "type=volume,src=db,dst=/data", "--", "cat", "/data/table"])
      assert.strictEqual(read.stdout, "row\n")
      assertOneLineError(yield* volumes(["run", "-v", "missing:/m", "--", "true"]), 4, `"missing"`)
      assert.strictEqual((yield* volumes(["inspect", "missing"])).code, 4)
      yield* ok(["run", "--create-volumes", "-v", "fresh:/m", "--", "true"])
      yield* ok(["run", "--mount", "type=volume,src=fresh2,dst=/m,create", "--", "true"])
      assert.deepStrictEqual((yield* ok(["ls", "-q"])).stdout.trim().split("\n").sort(), ["db", "fresh", "fresh2"])
    }))

  it.scoped("2: prune lists what would go and refuses without --force when nobody can answer", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "one"])
      yield* ok(["create", "two"])
      const refused = yield* volumes(["prune"])
      assertUsageError(refused, "-f/--force", "volumes prune")
      assert.include(refused.stdout, "would remove one")
      assert.include(refused.stdout, "would remove two")
      assert.deepStrictEqual((yield* ok(["ls", "-q"])).stdout.trim().split("\n").sort(), ["one", "two"])
      assert.include((yield* ok(["prune", "--dry-run"])).stdout, "would remove one")
      const forced = JSON.parse((yield* ok(["prune", "--force", "--json"])).stdout)
      assert.deepStrictEqual([...forced.removed].sort(), ["one", "two"])
      assert.strictEqual((yield* ok(["ls", "-q"])).stdout, "")
    }))

  it.scoped("3: a home that cannot be created fails at once with a clear error", () =>
    Effect.gen(function*() {
      const result = yield* run(process.execPath, [MAIN, "--home", "/proc/nope/home", "ls"], { killAfterMs: 60_000 })
      assertOneLineError(result, 12, "cannot create")
    }))

  it.scoped("4: help is plain when piped or NO_COLOR, names the program, marks optional options, has no filler", () =>
    Effect.gen(function*() {
      const { ok, onTerminal } = yield* session
      const help = (yield* ok(["create", "--help"])).stdout
      assert.notInclude(help, "\x1b[")
      // A usage line too long for one line folds its options into [OPTIONS], listed below it.
      assert.include(help, "Usage: volumes create [OPTIONS] NAME")
      assert.match(help, /\n {2}--label KEY=VALUE\.\.\. +a label; repeatable\n/)
      assert.notInclude(help, "A user-defined piece of text")
      assert.notInclude(help, "A true or false value")
      assert.notInclude(help, "--wizard")
      assert.include(help, "--home DIR")
      assert.include((yield* ok(["fs", "v", "ls", "--help"])).stdout, "Usage: volumes fs NAME ls [--json] [PATH]")
      const root = (yield* ok(["--help"])).stdout
      assert.include(root, "Usage: volumes [GLOBAL OPTIONS] COMMAND")
      assert.include(root, "EFFECT_VOLUMES_HOME")
      assert.notInclude(root, "--wizard")
      assert.strictEqual((yield* ok(["--version"])).stdout, `${packageJson.version}\n`)
      // On a terminal: bold headings, unless NO_COLOR says otherwise.
      assert.include((yield* onTerminal(["create", "--help"])).stdout, "\x1b[1mUsage:")
      assert.notInclude((yield* onTerminal(["create", "--help"], { env: { NO_COLOR: "1" } })).stdout, "\x1b[")
    }))

  it.scoped("5: usage errors say error:, point at the right --help and exit 2", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      assertUsageError(yield* volumes(["create"]), "NAME", "volumes create")
      assertUsageError(yield* volumes(["ls", "--bogus"]), "--bogus", "volumes ls")
      yield* ok(["create", "v"])
      const unknown = yield* volumes(["fs", "v", "frobnicate"])
      assertUsageError(unknown, "unknown command 'frobnicate'", "volumes fs NAME")
      assert.include(unknown.stderr, "ls, cat, put, get")
      assert.notInclude(unknown.stderr, "create")
      assertUsageError(yield* volumes(["fs", "v"]), "needs a command", "volumes fs NAME")
      assertUsageError(yield* volumes(["frobnicate"]), "unknown command", "volumes")
    }))

  it.scoped("6: messages in the CLI's words, with hints; a .tar.gz file just works, gzip on stdin is named", () =>
    Effect.gen(function*() {
      const { dir, ok, volumes } = yield* session
      yield* ok(["create", "v"])
      yield* ok(["fs", "v", "mkdir", "/d"])
      assertOneLineError(yield* volumes(["fs", "v", "rm", "/d"]), 10, "use -r")
      assertOneLineError(yield* volumes(["fs", "v", "rm", "-r", "/"]), 7, "the volume's root directory")
      assertOneLineError(yield* volumes(["create", "w", "--size", "1G"]), 3, "add --disk")
      assertOneLineError(yield* volumes(["run", "-v", "./src:/s", "--", "true"]), 3, "use an absolute host path")
      const note = NodePath.join(dir, "note.txt")
      NodeFs.writeFileSync(note, "hi\n")
      yield* ok(["fs", "v", "put", note, "/note.txt"])
      const tar = (yield* ok(["export", "v"])).raw
      const gz = NodePath.join(dir, "v.tar.gz")
      NodeFs.writeFileSync(gz, NodeZlib.gzipSync(tar))
      assert.include((yield* ok(["import", "copy", "--create", "-i", gz])).stdout, "imported 2 entries")
      assert.strictEqual((yield* ok(["fs", "copy", "cat", "/note.txt"])).stdout, "hi\n")
      yield* ok(["create", "single"])
      yield* ok(["fs", "single", "put", note, "/note.txt"])
      const one = (yield* ok(["export", "single"])).raw
      yield* ok(["fs", "single", "rm", "/note.txt"])
      const piped = NodePath.join(dir, "one.tar")
      NodeFs.writeFileSync(piped, one)
      assert.include((yield* ok(["import", "single", "-i", piped])).stdout, "imported 1 entry ")
      assertOneLineError(yield* volumes(["import", "single"], { input: NodeZlib.gzipSync(one) }), 14, "gzip detected")
    }))

  it.scoped("7: run's options end at the command; an unknown option before it is an error, never the command", () =>
    Effect.gen(function*() {
      const { volumes } = yield* session
      assertUsageError(yield* volumes(["run", "-v", "x:/p", "--disk", "--", "true"]), "'--disk'", "volumes run")
      const passed = yield* volumes(["run", "sh", "-c", `echo "$@"`, "sh", "--json", "-v", "--help"])
      assert.strictEqual(passed.code, 0, passed.stderr)
      assert.strictEqual(passed.stdout, "--json -v --help\n")
      const piped = yield* volumes(["run", "-it", "--", "true"])
      assertUsageError(piped, "not a terminal", "volumes run")
    }))

  it.scoped("8: put checks the whole tree against the quota before writing, in human units", () =>
    Effect.gen(function*() {
      const { dir, ok, onTerminal, volumes } = yield* session
      yield* ok(["create", "tiny", "--quota", "1M"])
      const tree = NodePath.join(dir, "tree")
      NodeFs.mkdirSync(tree)
      NodeFs.writeFileSync(NodePath.join(tree, "a.bin"), Buffer.alloc(600 * 1024, 1))
      NodeFs.writeFileSync(NodePath.join(tree, "b.bin"), Buffer.alloc(600 * 1024, 2))
      const failed = yield* volumes(["fs", "tiny", "put", tree, "/"])
      assertOneLineError(failed, 9, "1.2 MiB more")
      assert.notMatch(failed.stderr, /\d{6,}/)
      assert.deepStrictEqual(JSON.parse((yield* ok(["fs", "tiny", "ls", "--json"])).stdout), [])
      // The bar ends by clearing its line, so the summary starts on a clean one.
      yield* ok(["create", "big"])
      const shown = yield* onTerminal(["fs", "big", "put", tree, "/"], { env: { VOLUMES_PROGRESS_DELAY_MS: "0" } })
      assert.strictEqual(shown.code, 0, shown.stdout)
      assert.match(shown.stdout, /\[#+\]\s+100%[^\n]*\r\x1b\[2Kcopied 2 files \(1\.2 MiB\) to \/tree/)
    }))

  it.scoped("9: output for scripts: --json on changes, ls -q, --format, inspect A B, get -/put -", () =>
    Effect.gen(function*() {
      const { dir, ok } = yield* session
      assert.strictEqual(JSON.parse((yield* ok(["create", "a", "--label", "t=1", "--json"])).stdout).name, "a")
      yield* ok(["create", "b"])
      assert.strictEqual((yield* ok(["ls", "-q"])).stdout, "b\na\n")
      assert.strictEqual((yield* ok(["ls", "--format", "{{.Name}} {{.usedBytes}} {{.labels}}"])).stdout, `b 0 {}\na 0 {"t":"1"}\n`)
      const both = JSON.parse((yield* ok(["inspect", "a", "b", "--json"])).stdout)
      assert.deepStrictEqual(both.map((v: { name: string }) => v.name), ["a", "b"])
      const put = JSON.parse((yield* ok(["fs", "a", "put", "-", "/in.bin", "--json"], { input: Buffer.alloc(1000, 7) })).stdout)
      assert.deepStrictEqual(put, { to: "/in.bin", files: 1, directories: 0, symlinks: 0, bytes: 1000 })
      assert.deepStrictEqual((yield* ok(["fs", "a", "get", "/in.bin", "-"])).raw, Buffer.alloc(1000, 7))
      const got = JSON.parse((yield* ok(["fs", "a", "get", "/in.bin", NodePath.join(dir, "out.bin"), "--json"])).stdout)
      assert.strictEqual(got.bytes, 1000)
      assert.deepStrictEqual(JSON.parse((yield* ok(["fs", "a", "mkdir", "/d", "--json"])).stdout), { created: "/d" })
      assert.deepStrictEqual(JSON.parse((yield* ok(["fs", "a", "rm", "-r", "/d", "--json"])).stdout), { removed: "/d" })
      const tar = NodePath.join(dir, "a.tar")
      assert.strictEqual(JSON.parse((yield* ok(["export", "a", "-o", tar, "--json"])).stdout).bytes, NodeFs.statSync(tar).size)
      assert.strictEqual(JSON.parse((yield* ok(["import", "b", "-i", tar, "--json"])).stdout).entries, 1)
      assert.deepStrictEqual(JSON.parse((yield* ok(["rm", "a", "b", "--json"])).stdout), { removed: ["a", "b"] })
    }))

  it.scoped("10: listings show link targets and pipes, one timestamp format, over-quota marks, df", () =>
    Effect.gen(function*() {
      const { ok } = yield* session
      // Sandboxes cannot write past a quota (the file server), so the volume goes over its
      // quota the way a user gets there: by lowering the quota below its usage.
      yield* ok(["create", "v", "--quota", "4M"])
      yield* ok(["run", "-v", "v:/v", "--", "sh", "-c", "echo x > /v/file; ln -s file /v/link; mkfifo /v/pipe; head -c 2000000 /dev/zero > /v/big"])
      yield* ok(["update", "v", "--quota", "1M"])
      const listing = (yield* ok(["fs", "v", "ls"])).stdout
      assert.match(listing, /\nlrwxrwxrwx .* link -> file\n/)
      assert.match(listing, /\nprw-r--r-- .* pipe\n/)
      assert.match(listing, / \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /)
      const entries = JSON.parse((yield* ok(["fs", "v", "ls", "--json"])).stdout)
      assert.deepStrictEqual(
        entries.map((e: { path: string; kind: string; target: string | null }) => [e.path, e.kind, e.target]),
        [["/big", "file", null], ["/file", "file", null], ["/link", "symlink", "file"], ["/pipe", "pipe", null]]
      )
      assert.match((yield* ok(["fs", "v", "stat", "/link"])).stdout, /^Path:\s+\/link -> file$/m)
      const table = (yield* ok(["ls"])).stdout
      assert.match(table, /\nv\s+directory\s+1\.9 MiB\s+1\.0 MiB OVER QUOTA\s+-\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n/)
      assert.isTrue(JSON.parse((yield* ok(["ls", "--json"])).stdout)[0].overQuota)
      const df = JSON.parse((yield* ok(["df", "--json"])).stdout)
      assert.strictEqual(df.volumes[0].files, 4)
      assert.isAtLeast(df.volumes[0].allocatedBytes, 1_900_000)
      assert.strictEqual(df.total.reclaimableBytes, df.volumes[0].logicalBytes)
      assert.match((yield* ok(["df"])).stdout, /^1 volume: 1\.9 MiB logical, .* reclaimable by prune\n/)
    }))
})

describe("volumes CLI runtime", () => {
  it.scoped("a reader that goes away: finalizers run (the sandbox lets go of its volume), exit 141", () =>
    Effect.gen(function*() {
      const { home, ok, volumes } = yield* session
      yield* ok(["create", "held"])
      const result = yield* volumes(
        ["run", "-v", "held:/h", "--", "sh", "-c", "while :; do echo line; done"],
        { closeStdoutAfter: 20, killAfterMs: 60_000 }
      )
      assert.strictEqual(result.code, 141, result.stderr)
      assert.strictEqual(result.stderr, "")
      const holders = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT holder FROM attachments`).pipe(
        Effect.provide(SqliteClient.layer({ filename: NodePath.join(home, "db", "volumes.db"), readonly: true }))
      )
      assert.deepStrictEqual(holders, [])
    }))

  it.scoped("flags fall back to environment variables; a flag wins", () =>
    Effect.gen(function*() {
      const { dir, volumes } = yield* session
      const env = { EFFECT_VOLUMES_HOME: NodePath.join(dir, "other-home") }
      const viaEnv = yield* run(process.execPath, [MAIN, "create", "from-env"], { env })
      assert.strictEqual(viaEnv.code, 0, viaEnv.stderr)
      assert.strictEqual((yield* run(process.execPath, [MAIN, "inspect", "from-env"], { env })).code, 0)
      // The session passes --home, which wins over the variable: the volume is not there.
      assert.strictEqual((yield* volumes(["inspect", "from-env"], { env })).code, 4)
      const s3 = yield* volumes(["ls"], { env: { EFFECT_VOLUMES_BACKEND: "s3", EFFECT_VOLUMES_S3_ENDPOINT: "" } })
      assertOneLineError(s3, 3, "--s3-endpoint (or EFFECT_VOLUMES_S3_ENDPOINT)")
    }))
})
