/**
 * MemoryBackend: the small-file and lifecycle operations against plain `Map` operations.
 */
import { Effect, ManagedRuntime } from "effect"
import * as MemoryBackend from "../dist/MemoryBackend.js"
import * as Volume from "../dist/Volume.js"
import { bytes } from "./common.js"
import type { Row } from "./runner.js"
import { KiB, log, quick, samplePair } from "./runner.js"

export const run = async (): Promise<Array<Row>> => {
  const rt = ManagedRuntime.make(MemoryBackend.layer)
  const run = <A, E>(e: Effect.Effect<A, E, any>): Promise<A> => rt.runPromise(e as Effect.Effect<A, E, never>)
  const rows: Array<Row> = []
  const area = "MemoryBackend"
  const batch = quick ? 200 : 2000
  try {
    const fs = (await run(Volume.builder("mem").create())).fs()
    const map = new Map<string, Uint8Array>()
    const data = bytes(4 * KiB)
    log("memory: small files")
    const w = await samplePair(
      (i) => run(fs.write(`f${i % 100}`, data)),
      async (i) => void map.set(`f${i % 100}`, data.slice()),
      { batch }
    )
    rows.push({ area, operation: "write 4 KiB", ours: w.ours, baselineLabel: "Map.set (copy of the bytes)", baseline: w.baseline })
    const r = await samplePair(
      (i) => run(fs.read(`f${i % 100}`)),
      async (i) => map.get(`f${i % 100}`)!.slice(),
      { batch }
    )
    rows.push({ area, operation: "read 4 KiB", ours: r.ours, baselineLabel: "Map.get (copy of the bytes)", baseline: r.baseline })
    const vols = new Map<string, { name: string }>()
    const cr = await samplePair(
      (i) => run(Effect.zipRight(Volume.builder(`v${i}`).create(), Volume.remove(`v${i}`))),
      async (i) => {
        vols.set(`v${i}`, { name: `v${i}` })
        vols.delete(`v${i}`)
      },
      { batch }
    )
    rows.push({ area, operation: "create + remove a volume", ours: cr.ours, baselineLabel: "Map.set + Map.delete", baseline: cr.baseline })
    const g = await samplePair(
      () => run(Volume.get("mem")),
      async () => vols.get("mem") ?? map.size,
      { batch }
    )
    rows.push({ area, operation: "get (100 files)", ours: g.ours, baselineLabel: "Map.get", baseline: g.baseline })
  } finally {
    await rt.dispose()
  }
  return rows
}
