/**
 * Where everything lives in the bucket (docs/cloud.md, "Object layout"):
 *
 * ```
 * <prefix>volumes/<name-key>                       one JSON record per volume (exclusive create, CAS updates)
 * <prefix>data/<name-key>/<id>/<path>              a regular file
 * <prefix>data/<name-key>/<id>/<path>/             an (empty) directory marker
 * <prefix>meta/<name-key>/<id>/intent-<token>      a tree rename/copy in progress (intent.ts)
 * <prefix>removals/<name-key>/<id>                 a removal whose data deletion is not finished (removal.ts)
 * ```
 *
 * `<name-key>` is the lowercase name, so names that differ only in case share one record.
 * `<id>` is fresh for every creation of a name: a removed volume's leftover objects and the
 * handles still pointing at it can never touch a re-created volume of the same name.
 */
import { nameKey } from "../../VolumeSpec.js"
import type { Segments } from "../paths.js"

/** `""` or a prefix ending in exactly one `/`, without a leading one. */
export const normalizePrefix = (prefix: string | undefined): string => {
  const trimmed = (prefix ?? "").replace(/^\/+/, "").replace(/\/+$/, "")
  return trimmed === "" ? "" : `${trimmed}/`
}

export interface Layout {
  /** Prefix under which every volume record lives. */
  readonly recordsPrefix: string
  readonly recordKey: (name: string) => string
  /** The data prefix of one incarnation of a volume. */
  readonly dataPrefix: (name: string, id: string) => string
  /** Bookkeeping objects (intents) of one incarnation. */
  readonly metaPrefix: (name: string, id: string) => string
  /** Prefix of every pending removal. */
  readonly removalsPrefix: string
  /** The pending-removal object of one incarnation. */
  readonly removalKey: (name: string, id: string) => string
}

export const make = (prefix: string | undefined): Layout => {
  const base = normalizePrefix(prefix)
  return {
    recordsPrefix: `${base}volumes/`,
    recordKey: (name) => `${base}volumes/${nameKey(name)}`,
    dataPrefix: (name, id) => `${base}data/${nameKey(name)}/${id}/`,
    metaPrefix: (name, id) => `${base}meta/${nameKey(name)}/${id}/`,
    removalsPrefix: `${base}removals/`,
    removalKey: (name, id) => `${base}removals/${nameKey(name)}/${id}`
  }
}

/** The object holding a regular file at `path` below a volume's data prefix. */
export const fileKey = (data: string, path: Segments): string => data + path.join("/")

/** The marker object of directory `path` (the data prefix itself for the root). */
export const directoryKey = (data: string, path: Segments): string =>
  path.length === 0 ? data : `${data}${path.join("/")}/`

/** Every proper ancestor directory of `path` except the root, outermost first. */
export const ancestors = (path: Segments): ReadonlyArray<Segments> =>
  Array.from({ length: Math.max(0, path.length - 1) }, (_, i) => path.slice(0, i + 1))

/** The meta prefix that belongs to a data prefix (`…data/<name-key>/<id>/` → `…meta/<name-key>/<id>/`). */
/** The last directory of a data prefix (`…/data/<key>/<dir>/` → `<dir>`). */
export const dirOfData = (dataPrefix: string): string => dataPrefix.split("/").at(-2) ?? ""

/** The data prefix beside `dataPrefix` (same name key) for directory `dir`. */
export const siblingData = (dataPrefix: string, dir: string): string => dataPrefix.replace(/[^/]*\/$/, `${dir}/`)

export const metaOfData = (dataPrefix: string): string => dataPrefix.replace(/data\/([^/]*\/[^/]*\/)$/, "meta/$1")

/** The longest key the store accepts, in bytes of UTF-8 (S3's limit). */
export const MAX_KEY_BYTES = 1024
