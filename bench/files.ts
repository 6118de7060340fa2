/**
 * Whole-file write/read on a directory volume of the local backend against node:fs/promises in a
 * plain directory on the same disk: writes against the same atomic replace (writeFile of a
 * temporary file, then rename over the target), reads against readFile.
 */
import { mkdirSync } from "node:fs"
import { readFile, rename, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as Volume from "../dist/Volume.js"
import { bytes, withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { KiB, log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"

export const sizes = [
  { label: "4 KiB", size: 4 * KiB, batch: quick ? 50 : 300, rounds: quick ? 3 : 7, small: true },
  { label: "1 MiB", size: MiB, batch: quick ? 5 : 30, rounds: quick ? 3 : 7, small: true },
  { label: "64 MiB", size: 64 * MiB, batch: 1, rounds: quick ? 2 : 5, small: false }
] as const

/** The small-file target (1.3x) for 4 KiB/1 MiB; 0.8x (write) and 0.85x (read) throughput for 64 MiB. */
export const fileTarget = (op: "write" | "read", small: boolean) =>
  small
    ? { text: "≤ 1.3x node:fs time", max: 1.3 }
    : op === "write"
    ? { text: "≥ 0.8x node:fs throughput", max: 1 / 0.8 }
    : { text: "≥ 0.85x node:fs throughput", max: 1 / 0.85 }

/** node:fs doing what an atomic write does: the bytes into a temporary file, then rename over the target. */
const atomicWriteFile = async (path: string, data: Uint8Array) => {
  await writeFile(`${path}.tmp`, data)
  await rename(`${path}.tmp`, path)
}

export const run = (): Promise<Array<Row>> =>
  withLocalHome(async ({ root, run }) => {
    const rows: Array<Row> = []
    const vol = await run(Volume.builder("files").create())
    const fs = vol.fs()
    const plain = join(root, "plain")
    mkdirSync(plain)
    for (const s of sizes) {
      log(`files: ${s.label}`)
      const data = bytes(s.size)
      const name = `f-${s.size}`
      const w = await samplePair(
        () => run(fs.write(name, data)),
        () => atomicWriteFile(join(plain, name), data),
        { batch: s.batch, rounds: s.rounds }
      )
      const wt = fileTarget("write", s.small)
      rows.push({
        area: "files (local)",
        operation: `write ${s.label} (atomic)`,
        ours: w.ours,
        baselineLabel: "fs/promises writeFile(tmp) + rename",
        baseline: w.baseline,
        bytes: s.size,
        target: timeRatioTarget(wt.text, w.ours, w.baseline, wt.max)
      })
      const r = await samplePair(
        () => run(fs.read(name)),
        () => readFile(join(plain, name)),
        { batch: s.batch, rounds: s.rounds }
      )
      const rtgt = fileTarget("read", s.small)
      rows.push({
        area: "files (local)",
        operation: `read ${s.label}`,
        ours: r.ours,
        baselineLabel: "fs/promises readFile",
        baseline: r.baseline,
        bytes: s.size,
        target: timeRatioTarget(rtgt.text, r.ours, r.baseline, rtgt.max)
      })
    }
    return rows
  })
