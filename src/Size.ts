/**
 * Sizes given by users are whole mebibytes; sizes reported by the library are bytes.
 *
 * @since 0.1.0
 */
import { Brand, Either, Schema } from "effect"
import { InvalidConfig } from "./VolumeError.js"

/**
 * A positive whole number of MiB.
 *
 * @since 0.1.0
 * @category models
 */
export type Mebibytes = number & Brand.Brand<"Mebibytes">

/**
 * Schema of {@link Mebibytes}.
 *
 * @since 0.1.0
 * @category models
 */
export const Mebibytes = Schema.Int.pipe(Schema.positive(), Schema.brand("Mebibytes"))

/**
 * Bytes in one MiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const BYTES_PER_MIB = 1024 * 1024

/**
 * What a size setter accepts: a number of MiB (`512`, `Size.gib(20)`) or a string with a
 * unit (`"512M"`, `"20G"`, `"1T"`). It is checked where it is used (`create()`, mount
 * validation), and anything that is not a positive whole number of MiB fails there with
 * `InvalidConfig` — never with an exception.
 *
 * @since 0.2.0
 * @category models
 */
export type SizeInput = number | string

/**
 * `n` MiB. Never throws: the brand marks the unit, and the value is checked where it is
 * used (`create()`, mount validation), so a bad one (`0`, `1.5`) is `InvalidConfig` there.
 * {@link decode} checks a size up front.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mib = (n: number): Mebibytes => n as Mebibytes

/**
 * `n` GiB in MiB (never throws; see {@link mib}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const gib = (n: number): Mebibytes => mib(n * 1024)

/**
 * `n` TiB in MiB (never throws; see {@link mib}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const tib = (n: number): Mebibytes => mib(n * 1024 * 1024)

/**
 * Bytes of a size in MiB.
 *
 * @since 0.1.0
 * @category accessors
 */
export const toBytes = (size: Mebibytes): number => size * BYTES_PER_MIB

const units: Record<string, number> = { "": 1, M: 1, G: 1024, T: 1024 * 1024 }

/**
 * Parses `"512M"`, `"20G"`, `"1T"`, `"512MiB"`, `"1.5G"` or a bare number of MiB.
 * The result must be a whole, positive number of MiB.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (input: string): Either.Either<Mebibytes, InvalidConfig> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([MGT]?)(?:i?B)?\s*$/i.exec(input)
  const fail = (why: string) =>
    Either.left(new InvalidConfig({ message: `size ${JSON.stringify(input)}: ${why}` }))
  if (match === null) return fail(`expected a number with an optional unit M, G or T (e.g. "512M", "20G")`)
  const value = Number(match[1]) * units[match[2]!.toUpperCase()]!
  if (!Number.isInteger(value)) return fail("must be a whole number of MiB")
  if (value <= 0) return fail("must be positive")
  return Either.right(value as Mebibytes)
}

/**
 * Checks a {@link SizeInput}: the whole, positive number of MiB it names, or `InvalidConfig`
 * saying what is wrong with it.
 *
 * @since 0.2.0
 * @category parsing
 */
export const decode = (input: SizeInput): Either.Either<Mebibytes, InvalidConfig> =>
  typeof input === "string"
    ? parse(input)
    : Either.mapLeft(
      Schema.decodeEither(Mebibytes)(input),
      () => new InvalidConfig({ message: `size ${String(input)}: must be a whole, positive number of MiB` })
    )

/**
 * Human-readable bytes ("1.5 GiB").
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatBytes = (bytes: number): string => {
  const steps = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = bytes
  let i = 0
  while (value >= 1024 && i < steps.length - 1) {
    value /= 1024
    i++
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${steps[i]}`
}
