/**
 * `volumes run --memory/--cpus/--pids`: the limits reach the sandbox from the command line
 * (the BUILT `dist/cli/main.js`, as in test/cli; `npm test` builds first).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { assertNothingLeft, tempDir } from "./support.js"

const MAIN = resolve(import.meta.dirname, "../../dist/cli/main.js")

const volumes = (home: string, args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`)
    execFile(process.execPath, [MAIN, "--home", home, ...args], (error, stdout, stderr) => {
      resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }))
    })
  })

describe("escape suite: volumes run limits", () => {
  it.scopedLive("--pids stops a fork loop, --memory kills a big allocation, bad values are refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const home = join(dir, "home")
      const forks = yield* volumes(home, [
        "run",
        "--pids",
        "16",
        "--cpus",
        "0.5",
        "--",
        "python3",
        "-c",
        "import os\nn = 0\ntry:\n    for _ in range(64):\n        if os.fork() == 0:\n            os.execvp('sleep', ['sleep', '2.5'])\n        n += 1\nexcept BlockingIOError:\n    print('refused after', n)"
      ])
      assert.strictEqual(forks.code, 0, forks.stderr)
      assert.match(forks.stdout, /^refused after \d+\n$/)
      assert.isBelow(Number(forks.stdout.split(" ")[2]), 16)
      const oom = yield* volumes(home, ["run", "--memory", "64M", "--", "python3", "-c", "b = bytearray(256 * 1024 * 1024)"])
      assert.notStrictEqual(oom.code, 0)
      assert.include(oom.stderr, "memory limit (64 MiB)")
      const bad = yield* volumes(home, ["run", "--memory", "lots", "--", "true"])
      assert.notStrictEqual(bad.code, 0)
      assert.include(bad.stderr, "--memory")
      yield* assertNothingLeft(dir)
    }))
})
