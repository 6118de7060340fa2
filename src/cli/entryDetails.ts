/**
 * Link targets and special-file types for `fs ls`/`fs stat`. A link's target comes from
 * `FsEntry.target` (every backend reports it). `FsEntry` reports a FIFO, a socket or a
 * device as `other`; where the volume's files are on this host (local directory volumes)
 * its type is read with `lstat`, which never follows the entry itself. This reads metadata
 * only, for the host user who runs the command and could read it anyway.
 */
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect, Option } from "effect"
import type { VolumeHandle } from "../Volume.js"
import type { FsEntry } from "../VolumeFs.js"
import type { EntryDetail } from "./output.js"

const specialOf = (stats: { isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }) =>
  stats.isFIFO()
    ? "pipe" as const
    : stats.isSocket()
    ? "socket" as const
    : stats.isCharacterDevice()
    ? "char-device" as const
    : stats.isBlockDevice()
    ? "block-device" as const
    : undefined


/** Each entry with what the host can add to it. */
export const withDetails = <E extends FsEntry>(
  volume: VolumeHandle,
  entries: ReadonlyArray<E>
): Effect.Effect<Array<readonly [E, EntryDetail]>> => {
  const root = volume.kind === "directory"
    ? Option.getOrUndefined(Option.flatMap(volume.local, (local) => local.dataPath))
    : undefined
  return Effect.forEach(entries, (entry) => {
    const target = Option.getOrUndefined(entry.target)
    if (root === undefined || entry.kind !== "other") return Effect.succeed([entry, { target }] as const)
    const hostPath = NodePath.join(root, entry.path)
    return Effect.promise(async (): Promise<EntryDetail> => ({
      special: await NodeFs.lstat(hostPath).then(specialOf, () => undefined)
    })).pipe(Effect.map((detail) => [entry, detail] as const))
  }, { concurrency: 16 })
}
