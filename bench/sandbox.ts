/**
 * Sandbox start → `true` → stop with 0 / 3 / 8 named directory-volume mounts (namespace
 * runtime) against a bare `bwrap --ro-bind / / true`.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { join } from "node:path"
import { promisify } from "node:util"
import * as Sandbox from "../dist/Sandbox.js"
import * as Volume from "../dist/Volume.js"
import { bwrapProblem, localRuntime, removeTree, runner, scratchRoot } from "./common.js"
import type { Row } from "./runner.js"
import { log, quick, samplePair } from "./runner.js"

const exec = promisify(execFile)

export const run = async (): Promise<Array<Row>> => {
  const problem = await bwrapProblem()
  if (problem !== undefined) return [{ area: "sandbox", operation: "start → true → stop", skipped: true, note: problem }]
  const root = scratchRoot()
  const rt = localRuntime(join(root, "home"))
  const run = runner(rt)
  const rows: Array<Row> = []
  try {
    for (let i = 0; i < 8; i++) await run(Volume.builder(`m${i}`).create())
    for (const mounts of [0, 3, 8]) {
      log(`sandbox: ${mounts} mounts`)
      let builder = Sandbox.builder("bench")
      for (let i = 0; i < mounts; i++) builder = builder.volume(`/mnt/m${i}`, (m) => m.named(`m${i}`))
      const once = Effect.scoped(Effect.gen(function*() {
        const sb = yield* builder.create()
        const out = yield* sb.exec("true")
        if (out.exitCode !== 0) return yield* Effect.die(new Error(`true exited ${out.exitCode}: ${out.stderr}`))
        yield* sb.stop()
      }))
      const pair = await samplePair(
        () => run(once),
        () => exec("bwrap", ["--ro-bind", "/", "/", "true"]),
        { batch: quick ? 2 : 5, rounds: quick ? 3 : 7 }
      )
      const over = pair.ours.median - pair.baseline.median
      rows.push({
        area: "sandbox (namespace runtime)",
        operation: `start → true → stop, ${mounts} named volume mounts`,
        ours: pair.ours,
        baselineLabel: "bwrap --ro-bind / / true",
        baseline: pair.baseline,
        ...(mounts === 3 ? { target: { text: "≤ 25 ms above bare bwrap", met: over <= 25 } } : {}),
        extra: `+${over.toFixed(1)} ms over bare bwrap`
      })
    }
  } finally {
    await rt.dispose()
    removeTree(root)
  }
  return rows
}
