/**
 * The rules of SPEC §5 as pure functions: each returns `None` when the value is fine or
 * `Some(problem)`, a sentence for a person. The public `Mount` module wraps them into
 * `InvalidConfig` with the mount's guest path in front.
 */
import { Option } from "effect"
import { posix } from "node:path"
import * as VolumeSpec from "../../VolumeSpec.js"

/** Disk-image formats a `.disk(hostImagePath)` mount accepts. */
export const DISK_FORMATS = ["raw", "qcow2", "vmdk"] as const
/** Values of `.statVirtualization(...)`. */
export const STAT_VIRTUALIZATIONS = ["strict", "relaxed", "off"] as const
/** Values of `.hostPermissions(...)`. */
export const HOST_PERMISSIONS = ["private", "mirror"] as const
/** Modes of a named-volume mount. */
export const NAMED_VOLUME_MODES = ["existing", "create", "ensureExists"] as const

type DiskFormat = (typeof DISK_FORMATS)[number]

const oneOf = <A extends string>(values: ReadonlyArray<A>, value: unknown): value is A =>
  typeof value === "string" && (values as ReadonlyArray<string>).includes(value)

const quoteAll = (values: ReadonlyArray<string>): string => values.map((v) => JSON.stringify(v)).join(", ")

/** `"x"` for a string, the printed value otherwise (JS callers may pass anything). */
export const show = (value: unknown): string => (typeof value === "string" ? JSON.stringify(value) : String(value))

/** The default format of a disk image: from its extension, else raw. */
export const formatFromExtension = (hostImagePath: string): DiskFormat => {
  const lower = hostImagePath.toLowerCase()
  if (lower.endsWith(".qcow2")) return "qcow2"
  if (lower.endsWith(".vmdk")) return "vmdk"
  return "raw"
}

// Mount option strings (ours and the kernel's) use these as separators.
const SEPARATORS = /[,:;]/

/** Whether a JS string survives a UTF-8 round trip (no lone surrogates). */
const isUtf8Representable = (value: string): boolean => Buffer.from(value, "utf8").toString("utf8") === value

const pathShapeProblem = (what: string, path: unknown): Option.Option<string> => {
  if (typeof path !== "string" || path.length === 0) return Option.some(`${what} must be a non-empty string`)
  if (!path.startsWith("/")) return Option.some(`${what} must be absolute (start with "/")`)
  if (path.includes("\0")) return Option.some(`${what} must not contain a NUL byte`)
  if (!isUtf8Representable(path)) return Option.some(`${what} must be valid UTF-8 (it contains a lone surrogate)`)
  if (SEPARATORS.test(path)) return Option.some(`${what} must not contain "," ":" or ";" (they separate mount options)`)
  return Option.none()
}

/** The guest path rule: absolute, not `/`, no `, : ;`, no `..` segment. */
export const guestPathProblem = (path: unknown): Option.Option<string> =>
  Option.orElse(pathShapeProblem("guest path", path), () => {
    const segments = (path as string).split("/")
    if (segments.includes("..")) return Option.some(`guest path must not contain a ".." segment`)
    if (segments.every((s) => s === "" || s === ".")) {
      return Option.some(`guest path must not be "/" (a mount cannot replace the guest's root)`)
    }
    return Option.none()
  })

/**
 * `/a//b/./c/` → `/a/b/c`: one spelling per directory, so two mounts on the same guest
 * directory, or the same host image mounted twice, are recognised.
 */
export const normalizeAbsolutePath = (path: string): string => {
  const normal = posix.normalize(path)
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal
}

/** The host path rule of bind and disk-image mounts: absolute UTF-8 with no `, : ;`. */
export const hostPathProblem = (path: unknown): Option.Option<string> => pathShapeProblem("host path", path)

/** The file-system type of a disk image: non-empty, no `, ; : =`. */
export const fstypeProblem = (fstype: unknown): Option.Option<string> => {
  if (typeof fstype !== "string" || fstype.trim().length === 0) return Option.some("fstype must not be empty")
  if (/[,;:=\s\0]/.test(fstype)) {
    return Option.some(`fstype ${JSON.stringify(fstype)} must not contain "," ";" ":" "=", spaces or NUL`)
  }
  return Option.none()
}

/** The image format, when a JS caller bypassed the types. */
export const formatProblem = (format: unknown): Option.Option<string> =>
  oneOf(DISK_FORMATS, format)
    ? Option.none()
    : Option.some(`format(${show(format)}) is not one of ${quoteAll(DISK_FORMATS)}`)

/** A tmpfs size: a positive whole number of MiB. */
export const tmpfsSizeProblem = (size: unknown): Option.Option<string> =>
  typeof size === "number" && Number.isInteger(size) && size > 0 && size <= VolumeSpec.MAX_QUOTA_MIB
    ? Option.none()
    : Option.some(`size(${show(size)}) must be a positive whole number of MiB`)

/** Values of the two file-sharing policies and their one forbidden combination. */
export const policyProblem = (
  statVirtualization: Option.Option<unknown>,
  hostPermissions: Option.Option<unknown>
): Option.Option<string> => {
  if (Option.isSome(statVirtualization) && !oneOf(STAT_VIRTUALIZATIONS, statVirtualization.value)) {
    return Option.some(
      `statVirtualization(${show(statVirtualization.value)}) is not one of ${quoteAll(STAT_VIRTUALIZATIONS)}`
    )
  }
  if (Option.isSome(hostPermissions) && !oneOf(HOST_PERMISSIONS, hostPermissions.value)) {
    return Option.some(`hostPermissions(${show(hostPermissions.value)}) is not one of ${quoteAll(HOST_PERMISSIONS)}`)
  }
  if (
    Option.contains(statVirtualization, "off") && Option.contains(hostPermissions, "mirror")
  ) {
    return Option.some(
      `statVirtualization("off") cannot be combined with hostPermissions("mirror"): with "off" the guest sees ` +
        `literal host metadata, so there is no guest mode to mirror; use "strict" or "relaxed", or "private"`
    )
  }
  return Option.none()
}

const idProblem = (call: string, id: Option.Option<unknown>): Option.Option<string> =>
  Option.flatMap(id, (value) =>
    typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 4294967294
      ? Option.none()
      : Option.some(`${call}(${show(value)}) must be a whole number from 0 to 4294967294`))

/**
 * `uid`/`gid` set the guest-visible owner of files without an overlay record, so they need
 * the overlay: statVirtualization "strict" or "relaxed".
 */
export const ownerProblem = (
  statVirtualization: Option.Option<unknown>,
  uid: Option.Option<unknown>,
  gid: Option.Option<unknown>
): Option.Option<string> => {
  const bad = Option.orElse(idProblem("uid", uid), () => idProblem("gid", gid))
  if (Option.isSome(bad)) return bad
  const calls = [
    ...Option.toArray(Option.map(uid, (n) => `uid(${show(n)})`)),
    ...Option.toArray(Option.map(gid, (n) => `gid(${show(n)})`))
  ]
  if (calls.length === 0 || Option.contains(statVirtualization, "strict") || Option.contains(statVirtualization, "relaxed")) {
    return Option.none()
  }
  return Option.some(
    `${calls.join(" and ")} need statVirtualization("strict") or ("relaxed"): the owner a guest sees is kept ` +
      `in the file server's overlay, which "off" or an unset policy does not use`
  )
}

/** A subpath: a directory inside the volume, relative (a leading "/" is allowed), no `..`. */
export const subpathProblem = (subpath: unknown): Option.Option<string> => {
  const call = `subpath(${show(subpath)})`
  if (typeof subpath !== "string") return Option.some(`${call} must be a string`)
  if (subpath.includes("\0")) return Option.some(`${call} must not contain a NUL byte`)
  if (SEPARATORS.test(subpath)) return Option.some(`${call} must not contain "," ":" or ";"`)
  const segments = subpath.split("/").filter((s) => s !== "" && s !== ".")
  if (segments.includes("..")) return Option.some(`${call} must not contain a ".." segment (it would climb out)`)
  if (segments.length === 0) return Option.some(`${call} names the volume root; drop subpath to mount the whole volume`)
  return Option.none()
}

/** The mode of a named-volume mount, when a JS caller bypassed the types. */
export const modeProblem = (mode: unknown): Option.Option<string> =>
  oneOf(NAMED_VOLUME_MODES, mode)
    ? Option.none()
    : Option.some(`mode ${show(mode)} is not one of ${quoteAll(NAMED_VOLUME_MODES)}`)

/** What a named-volume mount asks of the volume it creates or accepts. */
export interface RequestedVolumeFields {
  readonly kind: Option.Option<unknown>
  readonly capacityMib: Option.Option<unknown>
  readonly quotaMib: Option.Option<unknown>
  readonly labels: ReadonlyArray<readonly [string, string]>
}

/**
 * In `existing` mode nothing is created, so any description of a volume to create would be
 * silently ignored; we refuse it instead. Returns the calls that were made.
 */
export const specOptionsInExistingMode = (fields: RequestedVolumeFields): ReadonlyArray<string> => [
  ...Option.match(fields.kind, { onNone: () => [], onSome: (kind) => [`${String(kind)}()`] }),
  ...Option.match(fields.capacityMib, { onNone: () => [], onSome: (n) => [`size(${show(n)})`] }),
  ...Option.match(fields.quotaMib, { onNone: () => [], onSome: (n) => [`quota(${show(n)})`] }),
  ...fields.labels.map(([k, v]) => `label(${show(k)}, ${show(v)})`)
]

/** The facts about an existing volume the `ensureExists` rule compares. */
export interface ExistingVolume {
  readonly kind: VolumeSpec.VolumeKind
  readonly quotaMib: Option.Option<number>
  readonly capacityMib: Option.Option<number>
  readonly labels: ReadonlyArray<readonly [string, string]>
}

/** What an `ensureExists` mount requests (a `VolumeSpec` fits). */
export interface RequestedVolume {
  readonly kind: VolumeSpec.VolumeKind
  readonly quotaMib: Option.Option<number>
  readonly capacityMib: Option.Option<number>
  readonly labels: ReadonlyArray<readonly [string, string]>
}

const mib = (value: Option.Option<number>): string =>
  Option.match(value, { onNone: () => "none", onSome: (n) => `${n} MiB` })

/** The `ensureExists` rule: `None` when the existing volume is acceptable, else every mismatch. */
export const compatible = (existing: ExistingVolume, requested: RequestedVolume): Option.Option<string> => {
  const problems: Array<string> = []
  if (existing.kind !== requested.kind) {
    problems.push(`it is a ${existing.kind} volume, but a ${requested.kind} volume was requested`)
  }
  const compareSize = (option: string, have: Option.Option<number>, want: Option.Option<number>) => {
    if (Option.isSome(want) && !Option.contains(have, want.value)) {
      problems.push(`its ${option} is ${mib(have)}, but ${option}(${want.value}) was requested`)
    }
  }
  compareSize("quota", existing.quotaMib, requested.quotaMib)
  compareSize("size", existing.capacityMib, requested.capacityMib)
  const own = new Map(existing.labels)
  for (const [key, value] of VolumeSpec.dedupeLabels(requested.labels)) {
    const have = own.get(key)
    if (have !== value) {
      problems.push(
        `its label ${JSON.stringify(key)} is ${have === undefined ? "absent" : JSON.stringify(have)}, ` +
          `but label(${JSON.stringify(key)}, ${JSON.stringify(value)}) was requested`
      )
    }
  }
  return problems.length === 0 ? Option.none() : Option.some(problems.join("; "))
}
