/**
 * Drives the BUILT `volumes` binary (`dist/cli/main.js`, or `$VOLUMES_CLI_MAIN` to check
 * another build) in subprocesses, each test with its own temp home.
 */
import { assert } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { Effect } from "effect"

export const MAIN = process.env.VOLUMES_CLI_MAIN ?? NodePath.resolve(import.meta.dirname, "../../dist/cli/main.js")

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
  readonly raw: Buffer
}

export interface RunOptions {
  readonly input?: Uint8Array
  readonly env?: Record<string, string>
  /** Killed (and reported with code -9) after this long: a hang is a failure, not a stuck suite. */
  readonly killAfterMs?: number
  /** Closes our end of stdout after this many bytes (a reader that goes away, like `head -c`). */
  readonly closeStdoutAfter?: number
}

export const tempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "volumes-cli-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Runs a process without blocking the test worker; collects its output. */
export const run = (command: string, args: ReadonlyArray<string>, options: RunOptions = {}): Effect.Effect<Result> =>
  Effect.async<Result>((resume) => {
    const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    let seen = 0
    child.stdout.on("data", (chunk: Buffer) => {
      out.push(chunk)
      seen += chunk.length
      if (options.closeStdoutAfter !== undefined && seen >= options.closeStdoutAfter) child.stdout.destroy()
    })
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    child.stdin.on("error", () => {})
    child.stdin.end(options.input ?? null)
    const timer = setTimeout(() => child.kill("SIGKILL"), options.killAfterMs ?? 120_000)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const raw = Buffer.concat(out)
      resume(Effect.succeed({
        code: code ?? (signal === "SIGKILL" ? -9 : signal === null ? -1 : 128),
        stdout: raw.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        raw
      }))
    })
  })

/** A `volumes` runner bound to a fresh home. */
export const session = Effect.gen(function*() {
  if (!NodeFs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`)
  const dir = yield* tempDir
  const home = NodePath.join(dir, "home")
  const volumes = (args: ReadonlyArray<string>, options: RunOptions = {}): Effect.Effect<Result> =>
    run(process.execPath, [MAIN, "--home", home, ...args], options)
  const ok = (args: ReadonlyArray<string>, options?: RunOptions) =>
    Effect.tap(volumes(args, options), (result) =>
      Effect.sync(() => assert.strictEqual(result.code, 0, `volumes ${args.join(" ")} failed: ${result.stderr}`)))
  /** Runs `volumes ...` on a terminal (util-linux `script`); stdout and stderr arrive together. */
  const onTerminal = (args: ReadonlyArray<string>, options: RunOptions = {}) =>
    run("script", ["-q", "-e", "-c", [process.execPath, MAIN, "--home", home, ...args].map(quote).join(" "), "/dev/null"], options)
  return { dir, home, volumes, ok, onTerminal }
})

/** A word for `sh`. */
export const quote = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`

/** The single error line a failed command printed. */
export const assertOneLineError = (result: Result, code: number, mentions: string) => {
  assert.strictEqual(result.code, code, `expected exit ${code}, got ${result.code}: ${result.stderr}`)
  const lines = result.stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, `expected one line, got: ${result.stderr}`)
  assert.match(lines[0]!, /^error: /)
  assert.include(lines[0]!, mentions)
  assert.notMatch(result.stderr, /\n\s+at /)
}

/** A usage error: `error: ...` and a pointer to the right `--help`, exit 2. */
export const assertUsageError = (result: Result, mentions: string, help: string) => {
  assert.strictEqual(result.code, 2, `expected exit 2, got ${result.code}: ${result.stderr}`)
  assert.match(result.stderr, /^error: /)
  assert.include(result.stderr, mentions)
  assert.include(result.stderr, `'${help} --help'`)
  assert.notInclude(result.stderr, "\x1b[")
}
