/**
 * Shared helpers of the conformance suite: a per-test fresh backend, failure
 * assertions that name what was expected, and deterministic test data.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { Layer, Scope } from "effect"
import { inspect } from "node:util"
import * as Volume from "../../src/Volume.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import type { VolumeFsError, VolumeFsErrorReason } from "../../src/VolumeError.js"

/**
 * What a backend can do; tests of a capability run only where it exists, and
 * backends without it are checked to refuse it.
 */
export interface ConformanceOptions {
  /** Disk volumes (fixed-size ext4 images, or an equivalent hard cap). */
  readonly supportsDisk: boolean
  /** `Volume.path()` returns a host directory holding the files. */
  readonly supportsPath: boolean
  readonly backendKind: "local" | "memory" | "cloud"
}

/** A test program: it may use the backend and the test's scope. */
export type Program = () => Effect.Effect<unknown, unknown, VolumeBackend | Scope.Scope>

/** Registers one test. Every test builds its own backend from the layer. */
export type Test = (name: string, program: Program) => void

export interface Context {
  readonly options: ConformanceOptions
  readonly test: Test
  /** The backend's layer, for tests that build and close it themselves. */
  readonly layer: Layer.Layer<VolumeBackend, unknown>
}

/**
 * Each test gets a fresh backend: the layer is built for this test alone and torn
 * down when it ends. The live clock is used so timestamps are real and any internal
 * waiting in a backend behaves as it does for users.
 */
export const makeContext = (
  layer: Layer.Layer<VolumeBackend, unknown>,
  options: ConformanceOptions
): Context => ({
  options,
  layer,
  test: (name, program) => it.scopedLive(name, () => Effect.suspend(program).pipe(Effect.provide(layer)))
})

const show = (value: unknown): string => inspect(value, { depth: 4, breakLength: 120 })

/**
 * Runs `self`, asserts it fails with the error tagged `tag`, and returns that error.
 * A success or another error fails the test with a message saying what happened.
 */
export const expectFailure = <const T extends string>(tag: T) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<Extract<E, { readonly _tag: T }>, never, R> =>
  Effect.matchEffect(self, {
    onSuccess: (value) => Effect.sync(() => assert.fail(`expected a ${tag} failure, but it succeeded with ${show(value)}`)),
    onFailure: (error) =>
      Effect.sync(() => {
        const actual = (error as { readonly _tag?: unknown } | null)?._tag
        if (actual !== tag) assert.fail(`expected a ${tag} failure, got ${show(error)}`)
        return error as Extract<E, { readonly _tag: T }>
      })
  })

/** Asserts a `VolumeFsError` with the given reason. */
export const expectFsError = (reason: VolumeFsErrorReason) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<VolumeFsError, never, R> =>
  Effect.map(expectFailure("VolumeFsError")(self), (error) => {
    const fsError = error as unknown as VolumeFsError
    assert.strictEqual(fsError.reason, reason, `expected VolumeFsError ${reason}, got ${show(fsError)}`)
    return fsError
  })

/** Creates a directory volume (optionally customised) and returns its handle. */
export const createVolume = (
  name = "vol",
  customise: (builder: Volume.VolumeBuilder) => Volume.VolumeBuilder = (builder) => builder
) => customise(Volume.builder(name)).create()

/** The names of a list result, in order. */
export const names = (entries: ReadonlyArray<{ readonly path: string }>): Array<string> =>
  entries.map((entry) => entry.path.slice(entry.path.lastIndexOf("/") + 1))

const encoder = new TextEncoder()

/** UTF-8 bytes of a string. */
export const utf8 = (text: string): Uint8Array => encoder.encode(text)

/** `length` deterministic pseudo-random bytes (a xorshift stream), so failures reproduce. */
export const bytes = (length: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(length)
  let state = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < length; i++) {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    out[i] = state & 0xff
  }
  return out
}

/** Asserts two byte arrays are identical without dumping megabytes on failure. */
export const assertSameBytes = (actual: Uint8Array, expected: Uint8Array, what = "bytes"): void => {
  assert.strictEqual(actual.byteLength, expected.byteLength, `${what}: length`)
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength)
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)
  if (!a.equals(b)) {
    let i = 0
    while (i < a.length && a[i] === b[i]) i++
    assert.fail(`${what}: first difference at byte ${i}`)
  }
}

/** Concatenates chunks. */
export const concat = (chunks: Iterable<Uint8Array>): Uint8Array => Buffer.concat(Array.from(chunks))

/** The value of a `Some`, failing the test on `None`. */
export const some = <A>(option: Option.Option<A>, what: string): A => {
  if (Option.isNone(option)) assert.fail(`${what}: expected Some, got None`)
  return option.value
}

export const KiB = 1024
export const MiB = 1024 * 1024

