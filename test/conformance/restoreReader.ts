/**
 * What a reader sees while a volume is restored (SPEC §9 "restore is atomic"): shared by
 * the conformance test and the cross-machine S3 test.
 *
 * The volume holds `names` reading "live" plus a file `extra.txt`; its snapshot holds the
 * same names reading "snap" and no `extra.txt`. A pass reads every file in order, then
 * whether `extra.txt` exists and whether the root listing shows it, and labels each
 * observation "live" or "snap". An atomic restore gives a sequence of passes whose
 * observations are all "live" up to one point and all "snap" after it.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as Volume from "../../src/Volume.js"
import type { VolumeFs } from "../../src/VolumeFs.js"

/** File names of the restore tests. */
export const restoreNames = (count: number): ReadonlyArray<string> =>
  Array.from({ length: count }, (_, i) => `d${i % 4}/f${i}.txt`)

/** Creates volume `volume` with `names` reading "snap", snapshot `s`, then every file "live" and `extra.txt`. */
export const prepareRestore = (volume: string, names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const vol = yield* Volume.builder(volume).create()
    yield* Effect.forEach(names, (name) => vol.fs().write(name, "snap"), { concurrency: 16, discard: true })
    yield* Volume.snapshot(volume, { name: "s" })
    yield* Effect.forEach(names, (name) => vol.fs().write(name, "live"), { concurrency: 16, discard: true })
    yield* vol.fs().write("extra.txt", "live")
  })

/** One pass over the volume, file by file. */
export const readPass = (fs: VolumeFs, names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    for (const name of names) seen.push(yield* fs.readToString(name))
    seen.push((yield* fs.exists("extra.txt")) ? "live" : "snap")
    const listed = yield* fs.list("/")
    seen.push(listed.some((entry) => entry.path === "/extra.txt") ? "live" : "snap")
    return seen
  })

/** Fails unless `observed` is some "live" observations followed by at least one and only "snap" ones. */
export const assertOneSwitch = (observed: ReadonlyArray<string>): void => {
  const switched = observed.indexOf("snap")
  assert.isAtLeast(switched, 0, "the restore took effect")
  assert.deepStrictEqual(observed.slice(0, switched).filter((label) => label !== "live"), [])
  assert.deepStrictEqual(
    observed.slice(switched).filter((label) => label !== "snap"),
    [],
    `after the first restored file only restored ones (switch at observation ${switched} of ${observed.length})`
  )
}
