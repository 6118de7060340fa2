/**
 * Tables, JSON records and raw bytes on stdout.
 */
import { DateTime, Effect, Option } from "effect"
import { BYTES_PER_MIB, formatBytes } from "../Size.js"
import { Options } from "@effect/cli"
import type { ListFilter, VolumeHandle } from "../Volume.js"
import type { FsEntry, FsMetadata } from "../VolumeFs.js"
import type { OutputClosed } from "./errors.js"
import { writeStdout } from "./stdio.js"

/** `--label k[=v]`, repeatable: the filter of `ls`, `prune` and `df`. */
export const labelFilter = Options.text("label").pipe(
  Options.withPseudoName("KEY[=VALUE]"),
  Options.withDescription("only volumes with this label (KEY) or label value (KEY=VALUE); repeatable"),
  Options.repeated
)

/** The `--label k[=v]` filters as a `Volume.list` filter. */
export const listFilter = (labels: ReadonlyArray<string>): ListFilter =>
  labels.length === 0 ? {} : {
    labels: Object.fromEntries(labels.map((text) => {
      const at = text.indexOf("=")
      return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)]
    }))
  }

/** Prints a line to stdout. */
export const line = (text: string): Effect.Effect<void, OutputClosed> => writeStdout(text + "\n")

/** Prints `value` as pretty JSON. */
export const json = (value: unknown): Effect.Effect<void, OutputClosed> => line(JSON.stringify(value, null, 2))

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)))
  const render = (row: ReadonlyArray<string>) =>
    row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd()
  return [render(header), ...rows.map(render)].join("\n")
}

const dateText = (time: DateTime.Utc): string => DateTime.formatIso(time).replace("T", " ").replace(/\.\d+Z$|Z$/, "Z")

const optionalDate = (time: Option.Option<DateTime.Utc>): string | null =>
  Option.match(time, { onNone: () => null, onSome: DateTime.formatIso })

/** The JSON record of a volume (sizes in exact bytes). */
export const volumeRecord = (volume: VolumeHandle) => ({
  name: volume.name,
  kind: volume.kind,
  backend: volume.backendKind,
  usedBytes: volume.usedBytes,
  quotaBytes: Option.getOrNull(Option.map(volume.quotaMib, (mib) => mib * BYTES_PER_MIB)),
  capacityBytes: Option.getOrNull(volume.capacityBytes),
  labels: Object.fromEntries(volume.labels),
  createdAt: DateTime.formatIso(volume.createdAt),
  diskPath: Option.getOrNull(volume.diskPath),
  dataPath: Option.getOrNull(Option.flatMap(volume.local, (local) => local.dataPath)),
  cloud: Option.getOrNull(Option.map(volume.cloud, (cloud) => ({ endpoint: cloud.endpoint, bucket: cloud.bucket, prefix: cloud.prefix })))
})

const limitText = (volume: VolumeHandle): string =>
  Option.match(volume.capacityBytes, {
    onSome: (bytes) => `${formatBytes(bytes)} (size)`,
    onNone: () => Option.match(volume.quotaMib, { onNone: () => "-", onSome: (mib) => formatBytes(mib * BYTES_PER_MIB) })
  })

const labelsText = (volume: VolumeHandle): string =>
  volume.labels.length === 0 ? "-" : volume.labels.map(([k, v]) => `${k}=${v}`).join(",")

/** The `volumes ls` table. */
export const volumeTable = (volumes: ReadonlyArray<VolumeHandle>): string =>
  table(
    ["NAME", "KIND", "USED", "QUOTA/SIZE", "LABELS", "CREATED"],
    volumes.map((v) => [v.name, v.kind, formatBytes(v.usedBytes), limitText(v), labelsText(v), dateText(v.createdAt)])
  )

/** The `volumes inspect` text. */
export const volumeDetails = (volume: VolumeHandle): string => {
  const record = volumeRecord(volume)
  const rows: Array<[string, string]> = [
    ["Name", record.name],
    ["Kind", record.kind],
    ["Backend", record.backend],
    ["Used", `${formatBytes(record.usedBytes)} (${record.usedBytes} bytes)`],
    ["Quota", record.quotaBytes === null ? "-" : `${formatBytes(record.quotaBytes)} (${record.quotaBytes} bytes)`],
    ["Size", record.capacityBytes === null ? "-" : `${formatBytes(record.capacityBytes)} (${record.capacityBytes} bytes)`],
    ["Labels", labelsText(volume)],
    ["Created", dateText(volume.createdAt)]
  ]
  if (record.dataPath !== null) rows.push(["Data path", record.dataPath])
  if (record.diskPath !== null) rows.push(["Disk image", record.diskPath])
  if (record.cloud !== null) rows.push(["Store", `${record.cloud.endpoint} ${record.cloud.bucket}/${record.cloud.prefix}`])
  return rows.map(([k, v]) => `${(k + ":").padEnd(12)}${v}`).join("\n")
}

/** `rwxr-xr-x` with a leading kind letter, like `ls -l`. */
export const modeText = (entry: FsEntry): string => {
  const kind = entry.kind === "directory" ? "d" : entry.kind === "symlink" ? "l" : entry.kind === "other" ? "?" : "-"
  let bits = ""
  for (const shift of [6, 3, 0]) {
    const v = (entry.mode >> shift) & 7
    bits += (v & 4 ? "r" : "-") + (v & 2 ? "w" : "-") + (v & 1 ? "x" : "-")
  }
  return kind + bits
}

/** The JSON record of a file-system entry (sizes in exact bytes). */
export const entryRecord = (entry: FsEntry) => ({
  path: entry.path,
  kind: entry.kind,
  size: entry.size,
  mode: entry.mode,
  uid: entry.uid,
  gid: entry.gid,
  modified: optionalDate(entry.modified)
})

/** The JSON record of `fs stat`. */
export const metadataRecord = (meta: FsMetadata) => ({
  ...entryRecord(meta),
  readonly: meta.readonly,
  accessed: optionalDate(meta.accessed),
  created: optionalDate(meta.created)
})

const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1)

/** The `volumes fs NAME ls` table. */
export const entryTable = (entries: ReadonlyArray<FsEntry>): string =>
  table(
    ["MODE", "SIZE", "MODIFIED", "NAME"],
    entries.map((e) => [
      modeText(e),
      e.kind === "directory" ? "-" : formatBytes(e.size),
      Option.match(e.modified, { onNone: () => "-", onSome: dateText }),
      baseName(e.path) + (e.kind === "directory" ? "/" : "")
    ])
  )

/** The `volumes fs NAME stat` text. */
export const metadataDetails = (meta: FsMetadata): string => {
  const record = metadataRecord(meta)
  const rows: Array<[string, string]> = [
    ["Path", record.path],
    ["Kind", record.kind],
    ["Size", `${formatBytes(record.size)} (${record.size} bytes)`],
    ["Mode", `${modeText(meta)} (0${record.mode.toString(8)})`],
    ["Owner", `${record.uid}:${record.gid}`],
    ["Read-only", String(record.readonly)],
    ["Modified", record.modified ?? "-"],
    ["Accessed", record.accessed ?? "-"],
    ["Created", record.created ?? "-"]
  ]
  return rows.map(([k, v]) => `${(k + ":").padEnd(11)}${v}`).join("\n")
}
