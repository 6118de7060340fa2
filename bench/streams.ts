/**
 * readStream / writeStream of 64 MiB and 1 GiB against node:fs streams, each transfer in its
 * own process (bench/streamChild.ts) so peak RSS is comparable; RSS independence from file
 * size compares the 64 MiB and 1 GiB peaks.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import * as Volume from "../dist/Volume.js"
import { localRuntime, removeTree, runner, scratchRoot } from "./common.js"
import type { Row, Stats } from "./runner.js"
import { child, GiB, log, MiB, quick, stats, timeRatioTarget } from "./runner.js"

interface Result {
  readonly ms: ReadonlyArray<number>
  readonly maxRssMiB: number
  readonly baseRssMiB: number
}

export const run = async (): Promise<Array<Row>> => {
  const root = scratchRoot()
  const home = join(root, "home")
  const plain = join(root, "plain")
  mkdirSync(plain)
  const rt = localRuntime(home)
  const rows: Array<Row> = []
  const area = "streams (local)"
  const peak: Record<string, number> = {}
  try {
    await runner(rt)(Volume.builder("streams").create())
    await rt.dispose()
    const rounds = quick ? 2 : 5
    for (const size of quick ? [16 * MiB, 64 * MiB] : [64 * MiB, GiB]) {
      const label = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`
      for (const op of ["write", "read"] as const) {
        log(`streams: ${op} ${label}`)
        // One process per implementation and round, the rounds interleaved (node, [node
        // atomic,] ours, node, ...) so every implementation sees the same writeback state;
        // write before read: the read rows read what the last write left.
        const impls = op === "write" ? (["node", "node-atomic", "ours"] as const) : (["node", "ours"] as const)
        const results: Record<string, Array<Result>> = { node: [], "node-atomic": [], ours: [] }
        for (let r = 0; r < rounds; r++) {
          for (const impl of impls) {
            const args = impl === "ours" ? [home, "streams"] : [plain]
            results[impl]!.push(await child<Result>("streamChild.ts", [impl, op, String(size), "1", ...args]))
          }
        }
        const ours = results["ours"]!
        const base = results["node"]!
        const o: Stats = stats(ours.flatMap((x) => x.ms))
        const b: Stats = stats(base.flatMap((x) => x.ms))
        // Each round's process has its own peak; the row takes their median, as for times.
        const oRss = stats(ours.map((x) => x.maxRssMiB)).median
        const bRss = stats(base.map((x) => x.maxRssMiB)).median
        // Whether RSS grows with the file is read from one more process per size that makes
        // all the rounds' transfers in a row: one 64 MiB transfer may end before the GC's
        // first collection of external memory, so its peak alone would understate what any
        // long stream holds and make the comparison measure the GC's trigger, not buffering.
        const sustained = await child<Result>("streamChild.ts", ["ours", op, String(size), String(rounds), home, "streams"])
        peak[`${op}-${size}`] = sustained.maxRssMiB
        // "read/stream ≥ 0.85x of node:fs": both stream directions.
        const target = timeRatioTarget("≥ 0.85x node:fs throughput", o, b, 1 / 0.85)
        rows.push({
          area,
          operation: `${op === "write" ? "writeStream (sink)" : "readStream"} ${label}`,
          ours: o,
          baselineLabel: `node:fs ${op === "write" ? "createWriteStream" : "createReadStream"}`,
          baseline: b,
          bytes: size,
          target,
          extra: `peak RSS ${oRss.toFixed(0)} MiB vs ${bRss.toFixed(0)} MiB (process start ≈ ${
            Math.min(...ours.map((x) => x.baseRssMiB)).toFixed(0)
          } MiB)`
        })
        if (op === "write") {
          const a: Stats = stats(results["node-atomic"]!.flatMap((x) => x.ms))
          rows.push({
            area,
            operation: `writeStream (sink) ${label}, against the same guarantee`,
            ours: o,
            baselineLabel: "node:fs createWriteStream(tmp) + rename",
            baseline: a,
            bytes: size,
            extra: "the anchor gives node:fs what the sink promises (readers see the old or the new file, never a part)"
          })
        }
      }
    }
    const [small, big] = quick ? [16 * MiB, 64 * MiB] : [64 * MiB, GiB]
    for (const op of ["write", "read"] as const) {
      const growth = peak[`${op}-${big}`]! - peak[`${op}-${small}`]!
      rows.push({
        area,
        operation: `${op} stream peak RSS: ${big / MiB} MiB file vs ${small / MiB} MiB file`,
        target: { text: "peak RSS independent of file size (growth < 32 MiB)", met: growth < 32 },
        extra: `${peak[`${op}-${small}`]!.toFixed(0)} → ${peak[`${op}-${big}`]!.toFixed(0)} MiB (${growth >= 0 ? "+" : ""}${
          growth.toFixed(0)
        } MiB; one process per size making ${rounds} transfers in a row)`
      })
    }
  } finally {
    removeTree(root)
  }
  return rows
}
