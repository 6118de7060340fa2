/**
 * The sandbox file server (evfs) against a plain bind mount, inside a running namespace
 * sandbox: 64 MiB sequential write and read, untarring 5,000 small files, and the start
 * cost of one served mount.
 */
import { Effect, Exit, Scope } from "effect"
import { execFile } from "node:child_process"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import type * as Mount from "../dist/Mount.js"
import * as Sandbox from "../dist/Sandbox.js"
import * as Volume from "../dist/Volume.js"
import { bwrapProblem, localRuntime, removeTree, runner, scratchRoot } from "./common.js"
import type { Row } from "./runner.js"
import { log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"

const exec = promisify(execFile)

type Served = readonly [label: string, describe: (m: Mount.MountBuilder, host: string) => Mount.MountBuilder]

const SERVED: ReadonlyArray<Served> = [
  ["strict + private", (m, host) => m.bind(host).statVirtualization("strict").hostPermissions("private")],
  ["relaxed + mirror, uid/gid", (m, host) => m.bind(host).statVirtualization("relaxed").hostPermissions("mirror").uid(1000).gid(1000)],
  ["off + private", (m, host) => m.bind(host).statVirtualization("off").hostPermissions("private")],
  ["quota (named volume, 4 GiB)", (m) => m.named("quota")]
]

const FILES = 5000

/** `BENCH_ROWS=write,start`: only the rows whose operation mentions one of these words. */
const ROWS = process.env["BENCH_ROWS"]?.split(",").map((w) => w.trim()).filter((w) => w !== "")
const wanted = (operation: string): boolean => ROWS === undefined || ROWS.some((w) => operation.includes(w))

export const run = async (): Promise<Array<Row>> => {
  const problem = await bwrapProblem()
  if (problem !== undefined) return [{ area: "file server", operation: "all", skipped: true, note: problem }]
  const root = scratchRoot()
  const rt = localRuntime(join(root, "home"))
  const run = runner(rt)
  const rows: Array<Row> = []
  const rounds = quick ? 3 : 5
  try {
    await run(Volume.builder("quota").quota(4096).create())
    // 5,000 files of 1 KiB in 50 directories, as one tar the sandboxes read from /src
    const tree = join(root, "tree")
    for (let d = 0; d < 50; d++) {
      mkdirSync(join(tree, `d${d}`), { recursive: true })
      for (let f = 0; f < FILES / 50; f++) writeFileSync(join(tree, `d${d}`, `f${f}`), "x".repeat(1024))
    }
    await exec("tar", ["-cf", join(root, "tree.tar"), "-C", tree, "."])
    const plainHost = join(root, "plain")
    mkdirSync(plainHost)

    /** A started sandbox with the mount at /p and the tar at /src, until `close`. */
    const open = async (describe: (m: Mount.MountBuilder) => Mount.MountBuilder) => {
      const scope = await run(Scope.make())
      const sb = await run(
        Sandbox.builder("bench-fs").volume("/p", describe).volume("/src", (m) => m.bind(root).readonly()).create().pipe(
          Scope.extend(scope)
        )
      )
      const sh = (script: string) =>
        run(Effect.flatMap(sb.exec("sh", ["-c", script]), (out) =>
          out.exitCode === 0 ? Effect.void : Effect.die(new Error(`${script}: ${out.stderr}`))))
      return { sh, close: () => run(Scope.close(scope, Exit.void)) }
    }

    const plain = await open((m) => m.bind(plainHost))
    try {
      for (const [label, describe] of SERVED) {
        const host = join(root, `served-${label.replaceAll(/[^a-z]/g, "")}`)
        mkdirSync(host)
        const served = await open((m) => describe(m, host))
        try {
          log(`file server: ${label}`)
          const workloads: ReadonlyArray<{
            readonly operation: string
            readonly script: string
            readonly before: string
            readonly bytes?: number
            readonly max: number
            readonly target: string
          }> = [
            {
              operation: "64 MiB sequential write (dd bs=1M)",
              script: "dd if=/dev/zero of=/p/big bs=1M count=64 status=none",
              before: "rm -f /p/big",
              bytes: 64 * MiB,
              max: 1 / 0.6,
              target: "≥ 0.6x the plain bind's throughput"
            },
            {
              operation: "64 MiB sequential read (cat)",
              script: "cat /p/big > /dev/null",
              before: "[ -e /p/big ] || dd if=/dev/zero of=/p/big bs=1M count=64 status=none",
              bytes: 64 * MiB,
              max: 1 / 0.6,
              target: "≥ 0.6x the plain bind's throughput"
            },
            {
              operation: `untar ${FILES} files of 1 KiB`,
              // (off + private refuses the chmod tar does as root: the host inode is not the guest's)
              script: "mkdir /p/x && tar --no-same-owner --no-same-permissions -xf /src/tree.tar -C /p/x",
              before: "rm -rf /p/x /p/big",
              max: 2.5,
              target: "≤ 2.5x the plain bind's time"
            }
          ]
          for (const w of workloads) {
            if (!wanted(`${w.operation}: ${label}`)) continue
            const pair = await samplePair(() => served.sh(w.script), () => plain.sh(w.script), {
              rounds,
              before: async () => {
                await served.sh(w.before)
                await plain.sh(w.before)
              }
            })
            rows.push({
              area: "file server",
              operation: `${w.operation}: ${label}`,
              ours: pair.ours,
              baselineLabel: "plain bind",
              baseline: pair.baseline,
              ...(w.bytes === undefined ? {} : { bytes: w.bytes }),
              target: timeRatioTarget(w.target, pair.ours, pair.baseline, w.max)
            })
          }
        } finally {
          await served.close()
        }
      }
    } finally {
      await plain.close()
    }

    if (!wanted("start")) return rows
    log("file server: start cost")
    const host = join(root, "start")
    mkdirSync(host)
    const startStop = (describe: (m: Mount.MountBuilder) => Mount.MountBuilder) => () =>
      run(Effect.scoped(Effect.gen(function*() {
        const sb = yield* Sandbox.builder("bench-start").volume("/p", describe).create()
        yield* sb.exec("true")
        yield* sb.stop()
      })))
    const pair = await samplePair(
      startStop((m) => m.bind(host).statVirtualization("strict").hostPermissions("private")),
      startStop((m) => m.bind(host)),
      { batch: quick ? 2 : 5, rounds: quick ? 3 : 7 }
    )
    const over = pair.ours.median - pair.baseline.median
    rows.push({
      area: "file server",
      operation: "start → true → stop, one served mount (strict + private)",
      ours: pair.ours,
      baselineLabel: "one plain bind mount",
      baseline: pair.baseline,
      target: { text: "≤ 30 ms above a plain mount", met: over <= 30 },
      extra: `+${over.toFixed(1)} ms over the plain mount`
    })
    rmSync(tree, { recursive: true, force: true })
  } finally {
    await rt.dispose()
    removeTree(root)
  }
  return rows
}
