/**
 * Volume lifecycle on the local backend: create/remove, a 1 GiB disk volume, `get` of
 * volumes with many files (against `du -sb` on the same tree) and `list` of many volumes.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import * as Volume from "../src/Volume.js"
import { withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { log, quick, sample, samplePair } from "./runner.js"

const exec = promisify(execFile)

/** Fills `dir` with `count` 100-byte files, 1,000 per subdirectory. */
const populate = (dir: string, count: number): void => {
  const data = Buffer.alloc(100, 7)
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${Math.floor(i / 1000)}`)
    if (i % 1000 === 0) mkdirSync(sub, { recursive: true })
    writeFileSync(join(sub, `f${i}`), data)
  }
}

export const run = (): Promise<Array<Row>> =>
  withLocalHome(async ({ run }) => {
    const rows: Array<Row> = []
    const area = "lifecycle (local)"
    log("lifecycle: create + remove")
    const cr = await sample((i) => run(Effect.zipRight(Volume.builder(`cr-${i}`).create(), Volume.remove(`cr-${i}`))), {
      batch: quick ? 5 : 20
    })
    rows.push({ area, operation: "create + remove a directory volume", ours: cr })

    log("lifecycle: 1 GiB disk volume")
    let last: string | undefined
    const disk = await sample((i) => run(Volume.builder((last = `disk-${i}`)).disk().size(1024).create()), {
      rounds: quick ? 2 : 5,
      before: async () => {
        if (last !== undefined) await run(Volume.remove(last))
        last = undefined
      }
    })
    if (last !== undefined) await run(Volume.remove(last))
    rows.push({ area, operation: "create a 1 GiB disk volume (ext4 image)", ours: disk, note: "remove untimed" })

    for (const count of quick ? [10, 1_000, 5_000] : [10, 10_000, 100_000]) {
      log(`lifecycle: get with ${count} files`)
      const vol = await run(Volume.builder(`files-${count}`).create())
      const path = await run(vol.path())
      populate(path, count)
      let used = 0
      let du = 0
      const g = await samplePair(
        async () => (used = (await run(Volume.get(`files-${count}`))).usedBytes),
        async () => (du = Number((await exec("du", ["-sb", path])).stdout.split("\t")[0])),
        { batch: count <= 10 ? 20 : 1, rounds: quick ? 3 : count >= 100_000 ? 3 : 5 }
      )
      rows.push({
        area,
        operation: `get with ${count.toLocaleString("en")} files (real usedBytes)`,
        ours: g.ours,
        baselineLabel: "du -sb on the same tree",
        baseline: g.baseline,
        extra: `usedBytes ${used.toLocaleString("en")} vs du ${du.toLocaleString("en")}`
      })
    }

    let have = 0
    for (const count of quick ? [10, 100, 500] : [10, 1_000, 10_000]) {
      log(`lifecycle: list with ${count} volumes (creating ${count - have})`)
      const t = performance.now()
      const names = Array.from({ length: count - have }, (_, i) => `l-${have + i}`)
      await run(Effect.forEach(names, (n) => Volume.builder(n).label("bench", "list").create(), { concurrency: 8, discard: true }))
      const setup = performance.now() - t
      have = count
      let seen = 0
      const l = await sample(async () => (seen = (await run(Volume.list({ labels: { bench: "list" } }))).length), {
        rounds: quick ? 3 : 7,
        batch: count <= 10 ? 20 : 1
      })
      rows.push({
        area,
        operation: `list with ${count.toLocaleString("en")} volumes`,
        ours: l,
        ...(count === 10_000 ? { target: { text: "≤ 50 ms", met: l.median <= 50 } } : {}),
        extra: `${seen} listed; setup ${(setup / 1000).toFixed(1)} s through the API at concurrency 8`
      })
    }
    return rows
  })
