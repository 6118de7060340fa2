/**
 * The description of a volume to create, and the rules it must satisfy.
 *
 * @since 0.1.0
 */
import { Effect, Either, Option, Schema } from "effect"
import { BYTES_PER_MIB, type Mebibytes } from "./Size.js"
import { InvalidConfig } from "./VolumeError.js"

/**
 * A directory volume (host files) or a disk volume (a raw ext4 image).
 *
 * @since 0.1.0
 * @category models
 */
export const VolumeKind = Schema.Literal("directory", "disk")

/**
 * @since 0.1.0
 * @category models
 */
export type VolumeKind = typeof VolumeKind.Type

/**
 * One label: a key and a value.
 *
 * @since 0.1.0
 * @category models
 */
export const Label = Schema.Tuple(Schema.String, Schema.String)

/**
 * What to create. Built by `Volume.builder(name)...build()` without validation;
 * {@link validate} checks it.
 *
 * @since 0.1.0
 * @category models
 */
export class VolumeSpec extends Schema.Class<VolumeSpec>("VolumeSpec")({
  name: Schema.String,
  kind: VolumeKind,
  quotaMib: Schema.OptionFromNullOr(Schema.Number),
  capacityMib: Schema.OptionFromNullOr(Schema.Number),
  labels: Schema.Array(Label)
}) {}

/**
 * Alias of {@link VolumeSpec}, the name the reference design uses.
 *
 * @since 0.1.0
 * @category models
 */
export const VolumeConfig = VolumeSpec

/**
 * @since 0.1.0
 * @category models
 */
export type VolumeConfig = VolumeSpec

/**
 * Longest volume name.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_NAME_LENGTH = 128

/**
 * Smallest disk volume: below this `mkfs.ext4` with 4 KiB blocks and a journal leaves
 * too little room to be useful.
 *
 * @since 0.1.0
 * @category constants
 */
export const MIN_DISK_MIB = 64

/**
 * Largest disk volume (ext4 with 4 KiB blocks and default features tops out at 16 TiB).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_DISK_MIB = 16 * 1024 * 1024

/**
 * Largest quota (the byte count must stay an exact JavaScript number).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_QUOTA_MIB = Math.floor(Number.MAX_SAFE_INTEGER / BYTES_PER_MIB)

/**
 * Longest label key and value.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_LABEL_KEY_LENGTH = 63
/**
 * @since 0.1.0
 * @category constants
 */
export const MAX_LABEL_VALUE_LENGTH = 255

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
// Printable: no C0/C1 control characters.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/**
 * Checks a volume name against the naming rule; `None` when it is valid.
 *
 * @since 0.1.0
 * @category validation
 */
export const nameProblem = (name: string): Option.Option<string> => {
  if (typeof name !== "string" || name.length === 0) return Option.some("name must not be empty")
  if (name.length > MAX_NAME_LENGTH) {
    return Option.some(`name must be at most ${MAX_NAME_LENGTH} characters (got ${name.length})`)
  }
  if (!NAME_PATTERN.test(name)) {
    return Option.some(
      `name ${JSON.stringify(name)} must start with an ASCII letter or digit and contain only ASCII letters, digits, ".", "-" or "_"`
    )
  }
  return Option.none()
}

/**
 * Validates a volume name.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateName = (name: string): Effect.Effect<string, InvalidConfig> =>
  Option.match(nameProblem(name), {
    onNone: () => Effect.succeed(name),
    onSome: (message) => Effect.fail(new InvalidConfig({ message }))
  })

/**
 * The case-insensitive identity of a volume name: names that differ only in case are
 * the same volume on every backend.
 *
 * @since 0.1.0
 * @category validation
 */
export const nameKey = (name: string): string => name.toLowerCase()

const sizeProblem = (field: string, value: number, min: number, max: number): Option.Option<string> => {
  if (!Number.isInteger(value)) return Option.some(`${field} must be a whole number of MiB (got ${value})`)
  if (value < min) return Option.some(`${field} must be at least ${min} MiB (got ${value})`)
  if (value > max) return Option.some(`${field} must be at most ${max} MiB (got ${value})`)
  return Option.none()
}

/**
 * Checks labels against the label rules; `None` when they are valid.
 *
 * @since 0.2.0
 * @category validation
 */
export const labelsProblem = (labels: ReadonlyArray<readonly [string, string]>): Option.Option<string> => {
  for (const [key, value] of labels) {
    if (typeof key !== "string" || key.length === 0) return Option.some("label key must not be empty")
    if (key.length > MAX_LABEL_KEY_LENGTH) {
      return Option.some(`label key ${JSON.stringify(key)} must be at most ${MAX_LABEL_KEY_LENGTH} characters`)
    }
    if (CONTROL.test(key)) return Option.some(`label key ${JSON.stringify(key)} must be printable (no control characters)`)
    if (key.includes("=")) return Option.some(`label key ${JSON.stringify(key)} must not contain "="`)
    if (typeof value !== "string") return Option.some(`label ${JSON.stringify(key)} must have a string value`)
    if (value.length > MAX_LABEL_VALUE_LENGTH) {
      return Option.some(`label ${JSON.stringify(key)}: value must be at most ${MAX_LABEL_VALUE_LENGTH} characters`)
    }
  }
  return Option.none()
}

/**
 * Labels with repeated keys collapsed: the last value wins, the first position stays.
 *
 * @since 0.1.0
 * @category validation
 */
export const dedupeLabels = (
  labels: ReadonlyArray<readonly [string, string]>
): ReadonlyArray<readonly [string, string]> => Array.from(new Map(labels).entries())

/**
 * A spec that passed {@link validate}: labels are de-duplicated, sizes are whole MiB.
 *
 * @since 0.1.0
 * @category models
 */
export interface ValidSpec extends VolumeSpec {
  readonly quotaMib: Option.Option<Mebibytes>
  readonly capacityMib: Option.Option<Mebibytes>
}

/**
 * Checks every rule of a {@link VolumeSpec}; the message names the field and the rule.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (spec: VolumeSpec): Effect.Effect<ValidSpec, InvalidConfig> =>
  Either.match(check(spec), { onLeft: Effect.fail, onRight: Effect.succeed })

/**
 * {@link validate} without an effect: the valid spec, or the `InvalidConfig` naming the rule.
 *
 * @since 0.1.0
 * @category validation
 */
export const check = (spec: VolumeSpec): Either.Either<ValidSpec, InvalidConfig> => {
  const problem = Option.orElse(nameProblem(spec.name), () => kindProblem(spec)).pipe(
    Option.orElse(() => labelsProblem(spec.labels))
  )
  return Option.match(problem, {
    onSome: (message) => Either.left(new InvalidConfig({ message: `volume ${JSON.stringify(spec.name)}: ${message}` })),
    onNone: () => Either.right(new VolumeSpec({ ...spec, labels: dedupeLabels(spec.labels) }) as ValidSpec)
  })
}

const kindProblem = (spec: VolumeSpec): Option.Option<string> => {
  switch (spec.kind) {
    case "directory":
      if (Option.isSome(spec.capacityMib)) {
        return Option.some("size applies only to disk volumes; use quota to limit a directory volume")
      }
      return Option.flatMap(spec.quotaMib, (quota) => sizeProblem("quota", quota, 1, MAX_QUOTA_MIB))
    case "disk":
      if (Option.isSome(spec.quotaMib)) {
        return Option.some("quota applies only to directory volumes; a disk volume is capped by its size")
      }
      return Option.match(spec.capacityMib, {
        onNone: () => Option.some(`a disk volume needs a size (at least ${MIN_DISK_MIB} MiB)`),
        onSome: (size) => sizeProblem("size", size, MIN_DISK_MIB, MAX_DISK_MIB)
      })
    default:
      return Option.some(`kind must be "directory" or "disk" (got ${JSON.stringify(spec.kind)})`)
  }
}
