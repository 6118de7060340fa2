/**
 * A small ustar encoder with PAX extended headers for what ustar cannot hold (long
 * names, long link targets, sizes of 8 GiB and more, non-ASCII names). Export is
 * encoded here so it stays a plain Effect `Stream` with backpressure and typed errors;
 * import parses with `tar-stream`, which knows the many dialects found in the wild.
 */

export const BLOCK = 512

export type TarEntryType = "file" | "directory" | "symlink"

export interface TarEntry {
  /** Archive-relative name without a leading `/`; directories without a trailing `/`. */
  readonly name: string
  readonly type: TarEntryType
  readonly size: number
  readonly mode: number
  readonly uid: number
  readonly gid: number
  /** Seconds since the epoch. */
  readonly mtime: number
  readonly linkname?: string | undefined
}

const encoder = new TextEncoder()

const typeFlag: Record<TarEntryType, string> = { file: "0", directory: "5", symlink: "2" }

/** Largest value an 11-digit octal field holds. */
const MAX_OCTAL_11 = 0o77777777777

const writeString = (block: Uint8Array, offset: number, length: number, value: string): void => {
  block.set(encoder.encode(value).subarray(0, length), offset)
}

const writeOctal = (block: Uint8Array, offset: number, length: number, value: number): void => {
  writeString(block, offset, length, Math.max(0, Math.floor(value)).toString(8).padStart(length - 1, "0").slice(-(length - 1)) + "\0")
}

const isPlainAscii = (value: string): boolean => /^[\x20-\x7e]*$/.test(value)

/** One PAX record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record. */
const paxRecord = (key: string, value: string): string => {
  const body = ` ${key}=${value}\n`
  const bodyBytes = encoder.encode(body).length
  let length = bodyBytes + 1
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes
  return `${length}${body}`
}

const headerBlock = (fields: {
  readonly name: string
  readonly flag: string
  readonly size: number
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly mtime: number
  readonly linkname: string
}): Uint8Array => {
  const block = new Uint8Array(BLOCK)
  writeString(block, 0, 100, fields.name)
  writeOctal(block, 100, 8, fields.mode & 0o7777)
  writeOctal(block, 108, 8, fields.uid)
  writeOctal(block, 116, 8, fields.gid)
  writeOctal(block, 124, 12, fields.size > MAX_OCTAL_11 ? 0 : fields.size)
  writeOctal(block, 136, 12, fields.mtime)
  block.fill(0x20, 148, 156)
  writeString(block, 156, 1, fields.flag)
  writeString(block, 157, 100, fields.linkname)
  writeString(block, 257, 6, "ustar\0")
  writeString(block, 263, 2, "00")
  let sum = 0
  for (const byte of block) sum += byte
  writeString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ")
  return block
}

/** Zero bytes that pad `size` bytes of data to a whole block. */
export const padding = (size: number): Uint8Array => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK)

/** Two zero blocks: the end of the archive. */
export const trailer = (): Uint8Array => new Uint8Array(BLOCK * 2)

/** The header block(s) of one entry, with a PAX header first when ustar cannot hold it. */
export const encodeHeader = (entry: TarEntry): Uint8Array => {
  const name = entry.type === "directory" ? `${entry.name}/` : entry.name
  const linkname = entry.linkname ?? ""
  const size = entry.type === "file" ? entry.size : 0
  const records: Array<string> = []
  if (encoder.encode(name).length > 100 || !isPlainAscii(name)) records.push(paxRecord("path", name))
  if (encoder.encode(linkname).length > 100 || !isPlainAscii(linkname)) records.push(paxRecord("linkpath", linkname))
  if (size > MAX_OCTAL_11) records.push(paxRecord("size", String(size)))
  const main = headerBlock({
    name: isPlainAscii(name) ? name.slice(0, 100) : "long-name",
    flag: typeFlag[entry.type],
    size,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtime: entry.mtime,
    linkname: isPlainAscii(linkname) ? linkname.slice(0, 100) : ""
  })
  if (records.length === 0) return main
  const pax = encoder.encode(records.join(""))
  const paxHeader = headerBlock({
    name: "PaxHeader",
    flag: "x",
    size: pax.length,
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: entry.mtime,
    linkname: ""
  })
  const out = new Uint8Array(BLOCK + pax.length + padding(pax.length).length + BLOCK)
  out.set(paxHeader, 0)
  out.set(pax, BLOCK)
  out.set(main, out.length - BLOCK)
  return out
}
