/**
 * readStream / writeStream of 64 MiB and 1 GiB against node:fs streams, each transfer in its
 * own process (bench/streamChild.ts) so peak RSS is comparable; RSS independence from file
 * size compares the 64 MiB and 1 GiB peaks.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import * as Volume from "../src/Volume.js"
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
    const rounds = quick ? 2 : 3
    for (const size of quick ? [16 * MiB, 64 * MiB] : [64 * MiB, GiB]) {
      const label = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`
      for (const op of ["write", "read"] as const) {
        log(`streams: ${op} ${label}`)
        // One process per implementation and row, all rounds in it (its peak RSS covers them
        // all); write before read: the read rows read what the last write left.
        const base = [await child<Result>("streamChild.ts", ["node", op, String(size), String(rounds), plain])]
        const ours = [await child<Result>("streamChild.ts", ["ours", op, String(size), String(rounds), home, "streams"])]
        const o: Stats = stats(ours.flatMap((x) => x.ms))
        const b: Stats = stats(base.flatMap((x) => x.ms))
        const oRss = Math.max(...ours.map((x) => x.maxRssMiB))
        const bRss = Math.max(...base.map((x) => x.maxRssMiB))
        peak[`${op}-${size}`] = oRss
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
        } MiB)`
      })
    }
  } finally {
    removeTree(root)
  }
  return rows
}
