/**
 * Host-side `fs()` inside a disk volume (ext4 image, loop-mounted in a private namespace)
 * against the same operation on a directory volume: bursts with the mount kept for
 * `diskIdleTimeToLive` after the last operation (the first operation of a burst mounts, the
 * rest reuse the mount), and single operations with the default (released at once).
 */
import * as Volume from "../dist/Volume.js"
import { bytes, withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { KiB, log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"

/** How long the bench keeps an idle mount: longer than the gap between two operations of a burst. */
const IDLE = "1 second"

export const run = async (): Promise<Array<Row>> => [...await bursts(), ...await singles()]

/** One 4 KiB write and one read at a time, the mount released after each (the default). */
const singles = (): Promise<Array<Row>> =>
  withLocalHome(async ({ run }) => {
    const disk = (await run(Volume.builder("disk").disk().size(1024).create())).fs()
    const dir = (await run(Volume.builder("dir").create())).fs()
    const data = bytes(4 * KiB)
    const rows: Array<Row> = []
    for (const op of ["write", "read"] as const) {
      log(`disk: single 4 KiB ${op}s, mount released at once`)
      const pair = await samplePair(
        () => run(op === "write" ? disk.write("single", data) : disk.read("single")),
        () => run(op === "write" ? dir.write("single", data) : dir.read("single")),
        { batch: quick ? 3 : 10, rounds: quick ? 3 : 5 }
      )
      rows.push({
        area: "disk volume (local)",
        operation: `host fs() ${op} 4 KiB, one operation (default: the mount is released after it)`,
        ours: pair.ours,
        baselineLabel: "same op on a directory volume",
        baseline: pair.baseline,
        bytes: 4 * KiB
      })
    }
    return rows
  })

const bursts = (): Promise<Array<Row>> =>
  withLocalHome(async ({ run }) => {
    const rows: Array<Row> = []
    const disk = (await run(Volume.builder("disk").disk().size(1024).create())).fs()
    const dir = (await run(Volume.builder("dir").create())).fs()
    for (const s of [
      { label: "4 KiB", size: 4 * KiB, batch: quick ? 20 : 100, rounds: quick ? 3 : 7 },
      { label: "64 MiB", size: 64 * MiB, batch: 1, rounds: quick ? 2 : 5 }
    ]) {
      log(`disk: ${s.label}`)
      const data = bytes(s.size)
      const name = `f-${s.size}`
      for (const op of ["write", "read"] as const) {
        const pair = await samplePair(
          () => run(op === "write" ? disk.write(name, data) : disk.read(name)),
          () => run(op === "write" ? dir.write(name, data) : dir.read(name)),
          { batch: s.batch, rounds: s.rounds }
        )
        rows.push({
          area: "disk volume (local)",
          operation: `host fs() ${op} ${s.label} inside a 1 GiB disk volume, ${s.batch === 1 ? "one per round" : `burst of ${s.batch}`} (diskIdleTimeToLive ${IDLE})`,
          ours: pair.ours,
          baselineLabel: "same op on a directory volume",
          baseline: pair.baseline,
          bytes: s.size,
          // A round is a burst of `batch` operations: the private mount stays up across it.
          ...(s.size === 4 * KiB ? { target: timeRatioTarget(`burst of ${s.batch}: ≤ 3x the directory volume`, pair.ours, pair.baseline, 3) } : {})
        })
      }
    }
    return rows
  }, { diskIdleTimeToLive: IDLE })
