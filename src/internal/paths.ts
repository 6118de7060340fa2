/**
 * The one implementation of volume path rules: every backend sees paths only as
 * normalised segment lists produced here.
 */
import { Effect } from "effect"
import { InvalidPath } from "../VolumeError.js"

/** A normalised volume path: no empty, `.` or `..` segments. `[]` is the root. */
export type Segments = ReadonlyArray<string>

/** U+0001–U+001F (NUL has its own message). */
const CONTROL_CHARACTER = /[\u0001-\u001f]/

/** Longest name of one path component (ext4's and most file systems' limit, in UTF-8 bytes). */
const MAX_SEGMENT_BYTES = 255

/**
 * Parses a volume-relative path: leading `/` stripped, `.` and empty segments dropped,
 * `..` resolved lexically; climbing above the root, a NUL byte or a control character
 * (U+0001–U+001F, which object stores refuse in batch deletes and which no portable name
 * needs) is `InvalidPath` on every backend. Temporary names are reserved; only the library's
 * own staging view (`reserved`, a temporary name of its own) may address one, as the first
 * segment.
 */
export const parse = (path: string, reserved?: string): Effect.Effect<Segments, InvalidPath> =>
  Effect.suspend(() => {
    if (typeof path !== "string") {
      return Effect.fail(new InvalidPath({ path: String(path), reason: "a path must be a string" }))
    }
    if (path.includes("\0")) return Effect.fail(new InvalidPath({ path, reason: "contains a NUL byte" }))
    if (CONTROL_CHARACTER.test(path)) {
      return Effect.fail(new InvalidPath({ path, reason: "contains a control character (U+0001–U+001F)" }))
    }
    const out: Array<string> = []
    for (const segment of path.split("/")) {
      if (segment === "" || segment === ".") continue
      if (segment === "..") {
        if (out.length === 0) {
          return Effect.fail(new InvalidPath({ path, reason: "climbs above the volume root" }))
        }
        out.pop()
        continue
      }
      if (isTempName(segment) && !(out.length === 0 && segment === reserved)) {
        return Effect.fail(new InvalidPath({ path, reason: `names starting with "${TEMP_PREFIX}" are reserved` }))
      }
      if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
        return Effect.fail(new InvalidPath({ path, reason: `a component is longer than ${MAX_SEGMENT_BYTES} bytes` }))
      }
      out.push(segment)
    }
    return Effect.succeed(out)
  })

/** Like {@link parse}, but the root is refused: the operation needs a file or directory name. */
export const parseNonRoot = (
  path: string,
  operation: string,
  reserved?: string
): Effect.Effect<NonRootSegments, InvalidPath> =>
  Effect.flatMap(parse(path, reserved), (segments) =>
    isNonRoot(segments)
      ? Effect.succeed(segments)
      : Effect.fail(new InvalidPath({ path, reason: `${operation} needs a path below the volume root` })))

/** Segments with at least one element. */
export type NonRootSegments = readonly [string, ...Array<string>]

export const isNonRoot = (segments: Segments): segments is NonRootSegments => segments.length > 0

/** The `/`-anchored display form of normalised segments. */
export const format = (segments: Segments): string => "/" + segments.join("/")

/** The parent directory and the last name. */
export const split = (segments: NonRootSegments): { readonly parent: Segments; readonly name: string } => ({
  parent: segments.slice(0, -1),
  name: segments[segments.length - 1]!
})

/** Whether `inner` equals `outer` or lies below it. */
export const isWithin = (inner: Segments, outer: Segments): boolean =>
  inner.length >= outer.length && outer.every((segment, i) => inner[i] === segment)

/** The child path `segments/name`. */
export const child = (segments: Segments, name: string): NonRootSegments => [...segments, name] as unknown as NonRootSegments

/**
 * Prefix of the temporary files that atomic writes create next to their target.
 * Names with this prefix are never listed and cannot be addressed by users.
 */
export const TEMP_PREFIX = ".effect-volumes-tmp-"

export const isTempName = (name: string): boolean => name.startsWith(TEMP_PREFIX)

/** A fresh temporary name for an atomic write. */
export const tempName = (): string =>
  `${TEMP_PREFIX}${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`
