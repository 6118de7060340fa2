/**
 * The records of the local backend's `volumes` table as this version reads them: the
 * columns, and a check of each row by hand (`list` reads every record, so it is kept cheap).
 */
import { Effect } from "effect"
import type { Mebibytes } from "../../Size.js"
import type { VolumeKind } from "../../VolumeSpec.js"

/** One record of the `volumes` table, as this version writes it. */
export interface VolumeRow {
  readonly key: string
  readonly name: string
  readonly kind: VolumeKind
  readonly quota_mib: Mebibytes | null
  readonly capacity_mib: Mebibytes | null
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly created_at: number
  readonly used_bytes: number
  readonly allocated_bytes: number
  readonly files: number
  readonly usage_stale: number
  readonly state: "creating" | "ready" | "removing"
  readonly owner_pid: number | null
  readonly owner_start: number | null
  readonly expires_at: number | null
  readonly last_used_at: number | null
}

const isMib = (value: unknown): value is Mebibytes | null =>
  value === null || (typeof value === "number" && Number.isInteger(value) && value > 0)
const isNullableNumber = (value: unknown): value is number | null => value === null || typeof value === "number"
const isLabels = (value: unknown): value is ReadonlyArray<readonly [string, string]> =>
  Array.isArray(value) &&
  value.every((label) =>
    Array.isArray(label) && label.length === 2 && typeof label[0] === "string" && typeof label[1] === "string"
  )
/** The labels of a volume that has none, shared by every such row (`list` reads them all). */
const NO_LABELS: ReadonlyArray<readonly [string, string]> = Object.freeze([])

const parseLabels = (text: unknown): unknown => {
  if (text === "[]") return NO_LABELS
  if (typeof text !== "string") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The columns of a {@link VolumeRow}, in the order {@link readRow} reads them. Rows are
 * read as arrays (better-sqlite3's raw mode) of only these columns: building an object per
 * row of `SELECT *` was most of the cost of `list` (10,000 rows: 40 ms against 14 ms).
 */
export const ROW_COLUMNS = "key, name, kind, quota_mib, capacity_mib, labels, created_at, used_bytes, allocated_bytes, " +
  "files, usage_stale, state, owner_pid, owner_start, expires_at, last_used_at"

/**
 * Checks one raw row (the values of {@link ROW_COLUMNS}) by hand rather than through
 * Schema: `list` reads every record, and a Schema decode of 10,000 rows costs most of a
 * second (docs/benchmarks.md).
 */
const readRow = (raw: ReadonlyArray<unknown>): VolumeRow | undefined => {
  const row = {
    key: raw[0],
    name: raw[1],
    kind: raw[2],
    quota_mib: raw[3],
    capacity_mib: raw[4],
    labels: parseLabels(raw[5]),
    created_at: raw[6],
    used_bytes: raw[7],
    allocated_bytes: raw[8],
    files: raw[9],
    usage_stale: raw[10],
    state: raw[11],
    owner_pid: raw[12],
    owner_start: raw[13],
    expires_at: raw[14] ?? null,
    last_used_at: raw[15] ?? null
  }
  return typeof row.key === "string" && typeof row.name === "string" &&
      (row.kind === "directory" || row.kind === "disk") && isMib(row.quota_mib) && isMib(row.capacity_mib) &&
      isLabels(row.labels) && typeof row.created_at === "number" && typeof row.used_bytes === "number" &&
      typeof row.allocated_bytes === "number" && typeof row.files === "number" &&
      typeof row.usage_stale === "number" &&
      (row.state === "creating" || row.state === "ready" || row.state === "removing") &&
      isNullableNumber(row.owner_pid) && isNullableNumber(row.owner_start) && isNullableNumber(row.expires_at) &&
      isNullableNumber(row.last_used_at)
    ? row as VolumeRow
    : undefined
}

/**
 * Each record of `rows` made into `A` by `make` (the row itself by default), or a failure
 * naming the first record that does not pass the check of {@link readRow}.
 */
export const decodeRows = <A = VolumeRow>(
  rows: ReadonlyArray<ReadonlyArray<unknown>>,
  make: (values: ReadonlyArray<unknown>) => A | undefined = readRow as (values: ReadonlyArray<unknown>) => A | undefined
): Effect.Effect<ReadonlyArray<A>, { readonly message: string }> =>
  Effect.suspend(() => {
    const out: Array<A> = []
    for (const raw of rows) {
      const made = Array.isArray(raw) ? make(raw) : undefined
      if (made === undefined) return Effect.fail({ message: `unexpected record ${JSON.stringify(raw)}` })
      out.push(made)
    }
    return Effect.succeed(out)
  })

/** Most reports a {@link ReportCache} keeps (one per volume). */
const REPORT_CACHE_SIZE = 100_000

/**
 * What was made from each volume's record, kept while the record's values stay the same:
 * `list` reads every record, and most of them have not changed since the last `list`, so
 * their reports (immutable values) are handed out again instead of being made anew.
 */
export interface ReportCache<A> {
  /** `make` of the record's row, or the report made from equal values before. */
  readonly reportOf: (values: ReadonlyArray<unknown>, make: (row: VolumeRow) => A) => A | undefined
}

export const makeReportCache = <A>(): ReportCache<A> => {
  const entries = new Map<unknown, { readonly values: ReadonlyArray<unknown>; readonly report: A }>()
  const same = (a: ReadonlyArray<unknown>, b: ReadonlyArray<unknown>): boolean => {
    if (a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
    return true
  }
  return {
    reportOf: (values, make) => {
      const known = entries.get(values[0])
      if (known !== undefined && same(known.values, values)) return known.report
      const row = readRow(values)
      if (row === undefined) return undefined
      const report = make(row)
      if (entries.size >= REPORT_CACHE_SIZE) entries.clear()
      entries.set(values[0], { values, report })
      return report
    }
  }
}
