/**
 * `npm run bench`: every area side by side with its baseline, one markdown table.
 *
 *   BENCH_SCALE=quick   small sizes and few rounds (development); default is the full run
 *   BENCH_ONLY=a,b      only these areas (lifecycle, files, streams, disk, sandbox, fileserver, s3, memory, microsandbox, snapshots, scale)
 *   BENCH_OUT=path      where the table goes (default docs/benchmarks.md; full runs of every area only)
 */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { cpus, freemem, totalmem } from "node:os"
import { join } from "node:path"
import type { Row } from "./runner.js"
import { annotate } from "./report.js"
import { benchDir, formatRow, log, quick, tableHeader } from "./runner.js"

const areas: ReadonlyArray<readonly [string, () => Promise<{ run: () => Promise<Array<Row>> }>]> = [
  ["lifecycle", () => import("./lifecycle.js")],
  ["files", () => import("./files.js")],
  ["streams", () => import("./streams.js")],
  ["disk", () => import("./disk.js")],
  ["sandbox", () => import("./sandbox.js")],
  ["fileserver", () => import("./fileServer.js")],
  ["s3", () => import("./s3.js")],
  ["memory", () => import("./memory.js")],
  ["microsandbox", () => import("./microsandbox.js")],
  ["snapshots", () => import("./snapshots.js")],
  ["scale", () => import("./scale.js")]
]

const sh = (cmd: string, args: ReadonlyArray<string>): string => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" }).trim()
  } catch {
    return "?"
  }
}

const loadAtStart = sh("cat", ["/proc/loadavg"]).split(" ").slice(0, 3).join(" ")
const only = process.env["BENCH_ONLY"]?.split(",").map((s) => s.trim()).filter((s) => s !== "")
const started = performance.now()
const rows: Array<Row> = []
const failures: Array<string> = []
for (const [name, load] of areas) {
  if (only !== undefined && !only.includes(name)) continue
  const t = performance.now()
  log(`== ${name}`)
  try {
    const area = await load()
    const got = (await area.run()).map(annotate)
    rows.push(...got)
    console.log(tableHeader)
    for (const row of got) console.log(formatRow(row))
  } catch (e) {
    const msg = e instanceof Error ? (e.stack ?? e.message) : String(e)
    failures.push(`${name}: ${msg.split("\n")[0]}`)
    log(`${name} FAILED: ${msg}`)
  }
  log(`== ${name} took ${((performance.now() - t) / 1000).toFixed(1)} s`)
}
const totalS = (performance.now() - started) / 1000

const machine = [
  `nproc ${sh("nproc", [])}`,
  `${cpus()[0]?.model ?? "?"}`,
  `RAM ${(totalmem() / 2 ** 30).toFixed(1)} GiB (${(freemem() / 2 ** 30).toFixed(1)} GiB free at the end)`,
  sh("uname", ["-srm"]),
  `Node ${process.version}`
].join(", ")
const free = sh("free", ["-m"])
const commit = sh("git", ["-C", join(benchDir, ".."), "rev-parse", "--short", "HEAD"])
const dirty = sh("git", ["-C", join(benchDir, ".."), "status", "--porcelain", "--", "src"]) === "" ? "" : " (with uncommitted changes in src/)"
const table = [tableHeader, ...rows.map(formatRow)].join("\n")
const targets = [tableHeader, ...rows.filter((row) => row.target !== undefined).map(formatRow)].join("\n")
const load = sh("cat", ["/proc/loadavg"]).split(" ").slice(0, 3).join(" ")
const report = { machine, free, commit: commit + dirty, date: new Date().toISOString(), totalS, load: `${loadAtStart} at the start, ${load} at the end`, targets, table, failures }

console.log(`\n${table}\n\ntotal ${totalS.toFixed(0)} s; commit ${report.commit}; ${machine}`)
if (failures.length > 0) console.log(`failed areas:\n${failures.join("\n")}`)

const out = process.env["BENCH_OUT"] ?? (quick || only !== undefined ? undefined : join(benchDir, "..", "docs", "benchmarks.md"))
if (out !== undefined) {
  const { render } = await import("./report.js")
  writeFileSync(out, render(report))
  log(`wrote ${out}`)
}
if (failures.length > 0) process.exitCode = 1
