/**
 * The error channels of `VolumeFs` name only what each operation can raise: operations that
 * add no bytes never carry `QuotaExceeded` (checked by the compiler: `npx tsc --noEmit`
 * fails if one does). `VolumeInUse` stays, since a disk volume's files are unreachable
 * while a sandbox has it.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Effect, Stream } from "effect"
import type { QuotaExceeded, VolumeInUse } from "../src/VolumeError.js"
import type { VolumeFs } from "../src/VolumeFs.js"

type ErrorOf<F> = F extends (...args: Array<any>) => infer R
  ? R extends Effect.Effect<any, infer E, any> ? E : R extends Stream.Stream<any, infer E, any> ? E : never
  : never

/** `true` when `E` may be a `T`. */
type Carries<E, T> = [Extract<E, T>] extends [never] ? false : true

const noQuota = {
  read: false as Carries<ErrorOf<VolumeFs["read"]>, QuotaExceeded>,
  readToString: false as Carries<ErrorOf<VolumeFs["readToString"]>, QuotaExceeded>,
  readStream: false as Carries<ErrorOf<VolumeFs["readStream"]>, QuotaExceeded>,
  list: false as Carries<ErrorOf<VolumeFs["list"]>, QuotaExceeded>,
  stat: false as Carries<ErrorOf<VolumeFs["stat"]>, QuotaExceeded>,
  exists: false as Carries<ErrorOf<VolumeFs["exists"]>, QuotaExceeded>,
  readlink: false as Carries<ErrorOf<VolumeFs["readlink"]>, QuotaExceeded>,
  mkdir: false as Carries<ErrorOf<VolumeFs["mkdir"]>, QuotaExceeded>,
  remove: false as Carries<ErrorOf<VolumeFs["remove"]>, QuotaExceeded>,
  removeDir: false as Carries<ErrorOf<VolumeFs["removeDir"]>, QuotaExceeded>,
  rename: false as Carries<ErrorOf<VolumeFs["rename"]>, QuotaExceeded>,
  watch: false as Carries<ErrorOf<VolumeFs["watch"]>, QuotaExceeded>
} satisfies Record<string, false>

const stillPossible = {
  writeQuota: true as Carries<ErrorOf<VolumeFs["copy"]>, QuotaExceeded>,
  readInUse: true as Carries<ErrorOf<VolumeFs["read"]>, VolumeInUse>
} satisfies Record<string, true>

describe("VolumeFs error unions", () => {
  it("reads, listings and metadata carry no QuotaExceeded; writes and disk-volume reads keep what they can raise", () => {
    assert.isTrue(Object.values(noQuota).every((carries) => carries === false))
    assert.isTrue(Object.values(stillPossible).every((carries) => carries === true))
  })
})
