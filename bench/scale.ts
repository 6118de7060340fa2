/**
 * Scale curves on the local backend (issue 14, target 7): `get`, a quota-checked 4 KiB write
 * and an explicit re-measure at 10, 1,000 and 100,000 files in one volume; `get`, `list` and a
 * 4 KiB write at 10, 1,000 and 10,000 volumes in one home; and 8 processes doing mixed
 * operations on one fresh home (throughput, p99, errors).
 *
 *   BENCH_SCALE_PARTS=files,volumes,mixed   which of the three to run (default all)
 */
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Volume from "../dist/Volume.js"
import { bytes, withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { child, KiB, log, quick, sample, samplePair, stats, timeRatioTarget } from "./runner.js"

const area = "scale (local)"

/** Adds files `from` .. `to - 1` (100 bytes each, 1,000 per subdirectory) below `dir`. */
export const populate = (dir: string, from: number, to: number): void => {
  const data = Buffer.alloc(100, 7)
  for (let i = from; i < to; i++) {
    const sub = join(dir, `d${Math.floor(i / 1000)}`)
    if (i % 1000 === 0 || i === from) mkdirSync(sub, { recursive: true })
    writeFileSync(join(sub, `f${i}`), data)
  }
}

const filesCurve = (run: <A, E>(e: Effect.Effect<A, E, any>) => Promise<A>) => async (rows: Array<Row>) => {
  const big = await run(Volume.builder("big").quota("64 GiB").create())
  const empty = await run(Volume.builder("empty").quota("64 GiB").create())
  const dir = await run(big.path())
  const data = bytes(4 * KiB)
  let have = 0
  for (const files of quick ? [10, 1_000, 10_000] : [10, 1_000, 100_000]) {
    log(`scale: ${files} files`)
    populate(dir, have, files)
    have = files
    // Host-side writes are outside the library's view: the explicit re-measure (timed below) stores the usage.
    const m = await sample(() => run(Volume.measure("big")), { rounds: files >= 100_000 ? 3 : 5, batch: files <= 10 ? 20 : 1 })
    const label = `${files.toLocaleString("en")} files`
    let used = 0
    const g = await sample(async () => (used = (await run(Volume.get("big"))).usedBytes), { batch: 50 })
    rows.push({ area, operation: `get, volume with ${label}`, ours: g, extra: `usedBytes ${used.toLocaleString("en")}` })
    const w = await samplePair(
      (i) => run(big.fs().write(`w${i % 16}`, data)),
      (i) => run(empty.fs().write(`w${i % 16}`, data)),
      { batch: quick ? 50 : 200 }
    )
    rows.push({
      area,
      operation: `quota-checked 4 KiB write, volume with ${label}`,
      ours: w.ours,
      baselineLabel: "the same write in an empty quota'd volume",
      baseline: w.baseline,
      ...(files >= 100_000 || (quick && files === 10_000) ? { target: timeRatioTarget("≤ 1.3x the empty volume", w.ours, w.baseline, 1.3) } : {})
    })
    rows.push({ area, operation: `Volume.measure (explicit re-measure), volume with ${label}`, ours: m })
  }
}

const volumesCurve = (run: <A, E>(e: Effect.Effect<A, E, any>) => Promise<A>) => async (rows: Array<Row>) => {
  const data = bytes(4 * KiB)
  let have = 0
  for (const count of quick ? [10, 1_000, 2_000] : [10, 1_000, 10_000]) {
    log(`scale: ${count} volumes (creating ${count - have})`)
    const t = performance.now()
    const names = Array.from({ length: count - have }, (_, i) => `v-${have + i}`)
    await run(Effect.forEach(names, (n) => Volume.builder(n).label("bench", "scale").create(), { concurrency: 8, discard: true }))
    const setup = performance.now() - t
    have = count
    const label = `${count.toLocaleString("en")} volumes`
    const g = await sample(() => run(Volume.get("v-0")), { batch: 50 })
    rows.push({ area, operation: `get, home with ${label}`, ours: g })
    let seen = 0
    const l = await sample(async () => (seen = (await run(Volume.list({ labels: { bench: "scale" } }))).length), {
      rounds: quick ? 3 : 7,
      batch: count <= 10 ? 20 : 1
    })
    rows.push({
      area,
      operation: `list, home with ${label}`,
      ours: l,
      ...(count === 10_000 ? { target: { text: "≤ 50 ms", met: l.median <= 50 } } : {}),
      extra: `${seen} listed; setup ${(setup / 1000).toFixed(1)} s through the API at concurrency 8`
    })
    const fs = (await run(Volume.get("v-0"))).fs()
    const w = await sample((i) => run(fs.write(`w${i % 16}`, data)), { batch: quick ? 50 : 200 })
    rows.push({ area, operation: `4 KiB write, home with ${label}`, ours: w })
  }
}

interface MixedResult {
  readonly ops: number
  readonly ms: ReadonlyArray<number>
  readonly errors: Record<string, number>
}

const mixed = async (home: string, rows: Array<Row>) => {
  const procs = 8
  const seconds = quick ? 3 : 10
  log(`scale: ${procs} processes of mixed operations for ${seconds} s`)
  const results = await Promise.all(
    Array.from({ length: procs }, (_, i) => child<MixedResult>("mixedChild.ts", [home, String(i), String(seconds * 1000)]))
  )
  const ops = results.reduce((a, r) => a + r.ops, 0)
  const all = results.flatMap((r) => r.ms)
  const sorted = [...all].sort((a, b) => a - b)
  const p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0
  const errors: Record<string, number> = {}
  for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
  const busy = Object.entries(errors).filter(([k]) => /SQLITE_BUSY|database is locked/i.test(k)).reduce((a, [, v]) => a + v, 0)
  rows.push({
    area,
    operation: `${procs} processes, mixed operations on one home (create, write 4 KiB, read, get, list, remove)`,
    ours: stats(all),
    target: { text: "no SQLITE_BUSY reaches a caller", met: busy === 0 },
    extra: `${(ops / seconds).toFixed(0)} ops/s in all; p99 ${p99.toFixed(1)} ms; errors: ${
      Object.keys(errors).length === 0 ? "none" : JSON.stringify(errors)
    }`
  })
}

/** `BENCH_SCALE_PARTS=files,volumes,mixed` (default all): which curves of this area run. */
const parts = process.env["BENCH_SCALE_PARTS"]?.split(",").map((s) => s.trim()) ?? ["files", "volumes", "mixed"]

export const run = async (): Promise<Array<Row>> => {
  const rows: Array<Row> = []
  if (parts.includes("files")) await withLocalHome(({ run }) => filesCurve(run)(rows))
  if (parts.includes("volumes")) await withLocalHome(({ run }) => volumesCurve(run)(rows))
  // A home of its own: the processes' `list` reads their volumes, not the curves' 10,000.
  if (parts.includes("mixed")) await withLocalHome(({ root }) => mixed(join(root, "home"), rows))
  return rows
}
