/**
 * Tables, JSON records and raw bytes on stdout.
 */
import { Options } from "@effect/cli"
import { DateTime, Effect, Option } from "effect"
import { BYTES_PER_MIB, formatBytes } from "../Size.js"
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

/** `--json`: what state-changing and listing commands print for scripts. */
export const jsonOption = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON (sizes in bytes)"))

/** `--format TEMPLATE`: one line per record, `{{.Field}}` replaced by the record's field (the `--json` names). */
export const formatOption = Options.text("format").pipe(
  Options.withPseudoName("TEMPLATE"),
  Options.withDescription("print each record through a template, e.g. '{{.name}} {{.usedBytes}}' (fields as in --json)"),
  Options.optional
)

/** `{{.name}}` (or `{{ .Name }}`: field names ignore case) → the record's field; `{{json .}}` → the whole record. */
export const template = (format: string, record: Readonly<Record<string, unknown>>): string =>
  format.replace(/\\n/g, "\n").replace(/\\t/g, "\t").replace(/\{\{\s*(json\s+)?\.(\w*)\s*\}\}/g, (_, json: string | undefined, field: string) => {
    const key = Object.keys(record).find((k) => k.toLowerCase() === field.toLowerCase())
    const value = field === "" ? record : key === undefined ? undefined : record[key]
    if (json !== undefined || (typeof value === "object" && value !== null)) return JSON.stringify(value ?? null)
    return value === undefined || value === null ? "" : String(value)
  })

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

/** The one timestamp format of human-readable output: ISO 8601, UTC, whole seconds. */
export const timestamp = (time: DateTime.Utc): string => DateTime.formatIso(time).replace(/\.\d+Z$/, "Z")

const optionalDate = (time: Option.Option<DateTime.Utc>): string | null =>
  Option.match(time, { onNone: () => null, onSome: DateTime.formatIso })

const quotaBytes = (volume: VolumeHandle): number | null =>
  Option.getOrNull(Option.map(volume.quotaMib, (mib) => mib * BYTES_PER_MIB))

/** Whether a volume uses more than its quota (a sandbox may write past it; host writes then fail). */
export const overQuota = (volume: VolumeHandle): boolean => {
  const quota = quotaBytes(volume)
  return quota !== null && volume.usedBytes > quota
}

/** The JSON record of a volume (sizes in exact bytes). */
export const volumeRecord = (volume: VolumeHandle) => ({
  name: volume.name,
  kind: volume.kind,
  backend: volume.backendKind,
  usedBytes: volume.usedBytes,
  quotaBytes: quotaBytes(volume),
  overQuota: overQuota(volume),
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
    onNone: () =>
      Option.match(volume.quotaMib, {
        onNone: () => "-",
        onSome: (mib) => `${formatBytes(mib * BYTES_PER_MIB)}${overQuota(volume) ? " OVER QUOTA" : ""}`
      })
  })

const labelsText = (volume: VolumeHandle): string =>
  volume.labels.length === 0 ? "-" : volume.labels.map(([k, v]) => `${k}=${v}`).join(",")

/** The `volumes ls` table. */
export const volumeTable = (volumes: ReadonlyArray<VolumeHandle>): string =>
  table(
    ["NAME", "KIND", "USED", "QUOTA/SIZE", "LABELS", "CREATED"],
    volumes.map((v) => [v.name, v.kind, formatBytes(v.usedBytes), limitText(v), labelsText(v), timestamp(v.createdAt)])
  )

/** The `volumes inspect` text. */
export const volumeDetails = (volume: VolumeHandle): string => {
  const record = volumeRecord(volume)
  const rows: Array<[string, string]> = [
    ["Name", record.name],
    ["Kind", record.kind],
    ["Backend", record.backend],
    ["Used", `${formatBytes(record.usedBytes)} (${record.usedBytes} bytes)`],
    ["Quota", record.quotaBytes === null ? "-" : `${formatBytes(record.quotaBytes)} (${record.quotaBytes} bytes)${record.overQuota ? ", OVER QUOTA" : ""}`],
    ["Size", record.capacityBytes === null ? "-" : `${formatBytes(record.capacityBytes)} (${record.capacityBytes} bytes)`],
    ["Labels", labelsText(volume)],
    ["Created", timestamp(volume.createdAt)]
  ]
  if (record.dataPath !== null) rows.push(["Data path", record.dataPath])
  if (record.diskPath !== null) rows.push(["Disk image", record.diskPath])
  if (record.cloud !== null) rows.push(["Store", `${record.cloud.endpoint} ${record.cloud.bucket}/${record.cloud.prefix}`])
  return rows.map(([k, v]) => `${(k + ":").padEnd(12)}${v}`).join("\n")
}

/** What `fs ls`/`fs stat` know of an entry beyond `FsEntry`: a link's target, a special file's type. */
export interface EntryDetail {
  readonly target?: string | undefined
  readonly special?: "pipe" | "socket" | "char-device" | "block-device" | undefined
}

const TYPE_LETTER = { pipe: "p", socket: "s", "char-device": "c", "block-device": "b" } as const

/** `rwxr-xr-x` with a leading type letter, like `ls -l` (`p` for a FIFO). */
export const modeText = (entry: FsEntry, detail: EntryDetail = {}): string => {
  const kind = entry.kind === "directory"
    ? "d"
    : entry.kind === "symlink"
    ? "l"
    : entry.kind === "other"
    ? detail.special === undefined ? "?" : TYPE_LETTER[detail.special]
    : "-"
  let bits = ""
  for (const shift of [6, 3, 0]) {
    const v = (entry.mode >> shift) & 7
    bits += (v & 4 ? "r" : "-") + (v & 2 ? "w" : "-") + (v & 1 ? "x" : "-")
  }
  return kind + bits
}

const kindText = (entry: FsEntry, detail: EntryDetail): string =>
  entry.kind === "other" && detail.special !== undefined ? detail.special : entry.kind

/** The JSON record of a file-system entry (sizes in exact bytes). */
export const entryRecord = (entry: FsEntry, detail: EntryDetail = {}) => ({
  path: entry.path,
  kind: kindText(entry, detail),
  size: entry.size,
  mode: entry.mode,
  uid: entry.uid,
  gid: entry.gid,
  modified: optionalDate(entry.modified),
  target: detail.target ?? Option.getOrNull(entry.target)
})

/** The JSON record of `fs stat`. */
export const metadataRecord = (meta: FsMetadata, detail: EntryDetail = {}) => ({
  ...entryRecord(meta, detail),
  readonly: meta.readonly,
  accessed: optionalDate(meta.accessed),
  created: optionalDate(meta.created)
})

const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1)

const humanDate = (time: Option.Option<DateTime.Utc>) => Option.match(time, { onNone: () => "-", onSome: timestamp })

/** The `volumes fs NAME ls` table. */
export const entryTable = (entries: ReadonlyArray<readonly [FsEntry, EntryDetail]>): string =>
  table(
    ["MODE", "SIZE", "MODIFIED", "NAME"],
    entries.map(([e, detail]) => [
      modeText(e, detail),
      e.kind === "file" || e.kind === "symlink" ? formatBytes(e.size) : "-",
      humanDate(e.modified),
      baseName(e.path) + (e.kind === "directory" ? "/" : "") + (detail.target === undefined ? "" : ` -> ${detail.target}`)
    ])
  )

/** The `volumes fs NAME stat` text. */
export const metadataDetails = (meta: FsMetadata, detail: EntryDetail = {}): string => {
  const record = metadataRecord(meta, detail)
  const rows: Array<[string, string]> = [
    ["Path", record.path + (detail.target === undefined ? "" : ` -> ${detail.target}`)],
    ["Kind", record.kind],
    ["Size", `${formatBytes(record.size)} (${record.size} bytes)`],
    ["Mode", `${modeText(meta, detail)} (0${record.mode.toString(8)})`],
    ["Owner", `${record.uid}:${record.gid}`],
    ["Read-only", String(record.readonly)],
    ["Modified", humanDate(meta.modified)],
    ["Accessed", humanDate(meta.accessed)],
    ["Created", humanDate(meta.created)]
  ]
  return rows.map(([k, v]) => `${(k + ":").padEnd(11)}${v}`).join("\n")
}
