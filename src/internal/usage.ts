/**
 * A volume's usage as the library keeps it: apparent bytes and allocated bytes of its
 * regular files and symlinks, and how many of them there are. Backends keep it current
 * from their own writes (see docs/design.md, "Usage and quota accounting"); the figures
 * are additive, so changes from several writers and processes can be summed.
 */

/** Usage figures, or a change of them. */
export interface Usage {
  /** Apparent size (`st_size`) of regular files and symlinks. */
  readonly logicalBytes: number
  /** Bytes the file system allocated for them (`st_blocks * 512`). */
  readonly allocatedBytes: number
  /** Regular files and symlinks. */
  readonly files: number
}

export const zero: Usage = { logicalBytes: 0, allocatedBytes: 0, files: 0 }

export const add = (a: Usage, b: Usage): Usage => ({
  logicalBytes: a.logicalBytes + b.logicalBytes,
  allocatedBytes: a.allocatedBytes + b.allocatedBytes,
  files: a.files + b.files
})

export const subtract = (a: Usage, b: Usage): Usage => ({
  logicalBytes: a.logicalBytes - b.logicalBytes,
  allocatedBytes: a.allocatedBytes - b.allocatedBytes,
  files: a.files - b.files
})

export const isZero = (u: Usage): boolean => u.logicalBytes === 0 && u.allocatedBytes === 0 && u.files === 0

/** What the entry with these stat fields contributes (directories and special files: nothing). */
export const ofStat = (
  stat: { readonly size: number; readonly blocks: number; isFile(): boolean; isSymbolicLink(): boolean } | undefined
): Usage =>
  stat !== undefined && (stat.isFile() || stat.isSymbolicLink())
    ? { logicalBytes: stat.size, allocatedBytes: stat.blocks * 512, files: 1 }
    : zero

/** Receives each committed change of a volume's usage, synchronously, right after it happened. */
export type UsageSink = (change: Usage) => void
