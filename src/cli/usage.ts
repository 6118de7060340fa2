/**
 * `volumes df`: usage per volume and in total, like `docker system df -v`: logical bytes
 * (what the files hold), allocated bytes (what the storage spends, where this host can
 * see it: local directory volumes and disk images), files, and what `prune` could
 * reclaim (volumes no sandbox holds; the local backend knows its holders).
 */
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect, Option } from "effect"
import { formatBytes } from "../Size.js"
import type { VolumeHandle } from "../Volume.js"
import { VolumeBackend } from "../VolumeBackend.js"
import * as Output from "./output.js"

/** One volume's line of the report. */
export interface VolumeUsage {
  readonly name: string
  readonly kind: string
  readonly logicalBytes: number
  readonly allocatedBytes: number | null
  readonly files: number | null
  readonly inUse: boolean
  readonly overQuota: boolean
}

/** Files and allocated bytes below a host directory, read without following links. */
const walk = async (dir: string): Promise<{ files: number; allocated: number }> => {
  let files = 0
  let allocated = 0
  const pending = [dir]
  while (pending.length > 0) {
    const current = pending.pop()!
    for await (const entry of await NodeFs.opendir(current)) {
      const path = NodePath.join(current, entry.name)
      const info = await NodeFs.lstat(path).catch(() => undefined)
      if (info === undefined) continue
      allocated += info.blocks * 512
      if (entry.isDirectory()) pending.push(path)
      else files++
    }
  }
  return { files, allocated }
}

const hostUsage = (volume: VolumeHandle): Effect.Effect<{ files: number | null; allocated: number | null }> => {
  const dataPath = Option.flatMap(volume.local, (local) => local.dataPath)
  if (Option.isSome(dataPath)) return Effect.promise(() => walk(dataPath.value).catch(() => ({ files: null, allocated: null })))
  if (Option.isSome(volume.diskPath)) {
    const image = volume.diskPath.value
    return Effect.promise(() =>
      NodeFs.stat(image).then((info) => ({ files: null, allocated: info.blocks * 512 }), () => ({ files: null, allocated: null }))
    )
  }
  return Effect.succeed({ files: null, allocated: null })
}

/** Measures every volume and sums them up. */
export const measure = (volumes: ReadonlyArray<VolumeHandle>) =>
  Effect.gen(function*() {
    const { holders: holdersOf } = yield* VolumeBackend
    const rows = yield* Effect.forEach(volumes, (volume) =>
      Effect.gen(function*() {
        const { allocated, files } = yield* hostUsage(volume)
        const holders = yield* holdersOf.list(volume.name)
        return {
          name: volume.name,
          kind: volume.kind,
          logicalBytes: volume.usedBytes,
          allocatedBytes: allocated,
          files,
          inUse: holders.length > 0,
          overQuota: Output.overQuota(volume)
        } satisfies VolumeUsage
      }), { concurrency: 4 })
    return {
      volumes: rows,
      total: {
        volumes: rows.length,
        logicalBytes: rows.reduce((sum, r) => sum + r.logicalBytes, 0),
        allocatedBytes: rows.reduce((sum, r) => sum + (r.allocatedBytes ?? 0), 0),
        reclaimableBytes: rows.filter((r) => !r.inUse).reduce((sum, r) => sum + r.logicalBytes, 0)
      }
    }
  })

const optionalBytes = (bytes: number | null) => (bytes === null ? "-" : formatBytes(bytes))

/** The `volumes df` text. */
export const table = (report: Effect.Effect.Success<ReturnType<typeof measure>>): string => {
  const { total } = report
  const summary = `${total.volumes} volume${total.volumes === 1 ? "" : "s"}: ${formatBytes(total.logicalBytes)} logical, ` +
    `${formatBytes(total.allocatedBytes)} allocated, ${formatBytes(total.reclaimableBytes)} reclaimable by prune`
  return [
    summary,
    "",
    Output.table(
      ["NAME", "KIND", "LOGICAL", "ALLOCATED", "FILES", "IN USE"],
      report.volumes.map((r) => [
        r.name + (r.overQuota ? " (OVER QUOTA)" : ""),
        r.kind,
        formatBytes(r.logicalBytes),
        optionalBytes(r.allocatedBytes),
        r.files === null ? "-" : String(r.files),
        r.inUse ? "yes" : "no"
      ])
    )
  ].join("\n")
}
