/**
 * The bench harness: warm-ups, rounds, min/median/max, rows with a baseline measured in
 * the same run, and the markdown table. Every area module returns `Row`s.
 */
import { spawn } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const benchDir = dirname(fileURLToPath(import.meta.url))

/** `BENCH_SCALE=quick` shrinks every size and round count for development; `full` is the real run. */
export const quick = process.env["BENCH_SCALE"] === "quick"

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

export interface Stats {
  readonly min: number
  readonly median: number
  readonly max: number
  readonly n: number
}

export const stats = (samples: ReadonlyArray<number>): Stats => {
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { min: sorted[0]!, median, max: sorted[sorted.length - 1]!, n: sorted.length }
}

export interface SampleOptions {
  readonly warmup?: number
  readonly rounds?: number
  /** Operations per sample: the sample is the mean time of one operation over `batch` runs. */
  readonly batch?: number
  /** Runs before each sample, untimed (e.g. removing what the last sample created). */
  readonly before?: () => Promise<unknown>
}

/** Milliseconds per operation, one number per round, after `warmup` untimed rounds. */
export const sample = async (fn: (i: number) => Promise<unknown>, options: SampleOptions = {}): Promise<Stats> => {
  const warmup = options.warmup ?? 1
  const rounds = options.rounds ?? (quick ? 3 : 7)
  const batch = options.batch ?? 1
  const out: Array<number> = []
  let counter = 0
  for (let round = 0; round < warmup + rounds; round++) {
    if (options.before !== undefined) await options.before()
    const start = performance.now()
    for (let i = 0; i < batch; i++) await fn(counter++)
    const ms = (performance.now() - start) / batch
    if (round >= warmup) out.push(ms)
  }
  return stats(out)
}

/**
 * Alternates `ours` and `baseline` round by round, so both see the same machine noise.
 */
export const samplePair = async (
  ours: (i: number) => Promise<unknown>,
  baseline: (i: number) => Promise<unknown>,
  options: SampleOptions = {}
): Promise<{ ours: Stats; baseline: Stats }> => {
  const warmup = options.warmup ?? 1
  const rounds = options.rounds ?? (quick ? 3 : 7)
  const a: Array<number> = []
  const b: Array<number> = []
  let counter = 0
  for (let round = 0; round < warmup + rounds; round++) {
    for (const [fn, into] of round % 2 === 0 ? [[baseline, b], [ours, a]] as const : [[ours, a], [baseline, b]] as const) {
      if (options.before !== undefined) await options.before()
      const batch = options.batch ?? 1
      const start = performance.now()
      for (let i = 0; i < batch; i++) await fn(counter++)
      const ms = (performance.now() - start) / batch
      if (round >= warmup) into.push(ms)
    }
  }
  return { ours: stats(a), baseline: stats(b) }
}

/** How a target compares: `ours/baseline` time ratio at most `maxTimeRatio`, or an absolute bound. */
export interface Target {
  readonly text: string
  readonly met: boolean
}

export interface Row {
  readonly area: string
  readonly operation: string
  /** Times in ms per operation. */
  readonly ours?: Stats
  readonly baselineLabel?: string
  readonly baseline?: Stats
  /** Bytes per operation: adds MB/s to the row. */
  readonly bytes?: number
  readonly target?: Target
  /** Extra measurements (peak RSS, ...). */
  readonly extra?: string
  /** Why a row is skipped, or what limits a missed target. */
  readonly note?: string
  readonly skipped?: boolean
}

/** Time ratio ours/baseline of the medians (1.00 = same; 2.00 = twice as slow). */
export const ratio = (row: Pick<Row, "ours" | "baseline">): number | undefined =>
  row.ours !== undefined && row.baseline !== undefined ? row.ours.median / row.baseline.median : undefined

/** A target "ours/baseline time ratio <= max". */
export const timeRatioTarget = (text: string, ours: Stats, baseline: Stats, max: number): Target => ({
  text,
  met: ours.median / baseline.median <= max
})

const fmtMs = (ms: number): string =>
  ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms >= 0.01 ? ms.toFixed(3) : ms.toFixed(4)

const fmtStats = (s: Stats | undefined, bytes: number | undefined): string => {
  if (s === undefined) return "—"
  const base = `${fmtMs(s.min)} / **${fmtMs(s.median)}** / ${fmtMs(s.max)} ms`
  return bytes === undefined ? base : `${base} (${((bytes / 1e6) / (s.median / 1000)).toFixed(0)} MB/s)`
}

export const tableHeader =
  "| area | operation | effect-volumes min / **median** / max | baseline | baseline min / **median** / max | ratio (ours/baseline time) | target | met? | notes |\n" +
  "|---|---|---|---|---|---|---|---|---|"

const cell = (s: string): string => s.replaceAll("|", "\\|").replaceAll("\n", " ")

export const formatRow = (row: Row): string => {
  const r = ratio(row)
  const met = row.target === undefined ? "" : row.target.met ? "✅ yes" : "❌ no"
  const notes = [row.extra, row.note].filter((x) => x !== undefined && x !== "").join("; ")
  return `| ${cell(row.area)} | ${cell(row.operation)} | ${row.skipped === true ? "skipped" : fmtStats(row.ours, row.bytes)} | ${
    cell(row.baselineLabel ?? "—")
  } | ${row.baseline === undefined ? "—" : fmtStats(row.baseline, row.bytes)} | ${r === undefined ? "—" : r.toFixed(2)} | ${
    cell(row.target?.text ?? "")
  } | ${met} | ${cell(notes)} |`
}

export const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** Runs `bench/<script>` in a fresh Node (through tsx) and parses the JSON line it prints last. */
export const child = <A>(script: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<A> =>
  new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ["--import", "tsx", join(benchDir, script), ...args], {
      env,
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()))
    proc.on("error", reject)
    proc.on("close", (code) => {
      if (code !== 0) return reject(new Error(`${script} ${args.join(" ")} exited with ${code}: ${out}`))
      const last = out.trim().split("\n").pop() ?? ""
      try {
        resolve(JSON.parse(last) as A)
      } catch (e) {
        reject(new Error(`${script}: bad output ${out}`))
      }
    })
  })
