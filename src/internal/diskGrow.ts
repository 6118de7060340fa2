/**
 * The rules of growing a disk volume (`Volume.update(name, { size })`, SPEC §10), written
 * once for every backend: only a disk volume has a size, it only grows, and the new size
 * obeys the limits a new disk volume's size does. Each backend checks them again against
 * the record it holds while it grows the volume, so a concurrent change cannot slip by.
 */
import { Either, Option } from "effect"
import type { Mebibytes } from "../Size.js"
import type { VolumeInfo } from "../VolumeBackend.js"
import { InvalidConfig } from "../VolumeError.js"
import * as VolumeSpec from "../VolumeSpec.js"

/** What a grow request comes to: nothing to do (the volume already has that size) or grow from → to. */
export type GrowPlan =
  | { readonly _tag: "Unchanged" }
  | { readonly _tag: "Grow"; readonly fromMib: Mebibytes; readonly toMib: Mebibytes }

/**
 * Checks a request to give volume `current` a size of `sizeMib` MiB: `InvalidConfig`
 * naming why for a directory volume, a smaller size, or a size outside the disk limits.
 */
export const planGrow = (current: VolumeInfo, sizeMib: number): Either.Either<GrowPlan, InvalidConfig> => {
  const refuse = (why: string) => Either.left(new InvalidConfig({ message: `volume ${JSON.stringify(current.name)}: ${why}` }))
  if (current.kind !== "disk" || Option.isNone(current.capacityMib)) {
    return refuse("size applies only to disk volumes; change a directory volume's quota instead")
  }
  const fromMib = current.capacityMib.value
  // The size limits of a new disk volume, in one place (VolumeSpec).
  const checked = VolumeSpec.check(
    new VolumeSpec.VolumeSpec({
      name: current.name,
      kind: "disk",
      quotaMib: Option.none(),
      capacityMib: Option.some(sizeMib),
      labels: []
    }, { disableValidation: true })
  )
  if (Either.isLeft(checked)) return Either.left(checked.left)
  if (sizeMib < fromMib) {
    return refuse(
      `a disk volume only grows: it has ${fromMib} MiB and ${sizeMib} MiB was asked for (shrinking could lose data)`
    )
  }
  return Either.right(
    sizeMib === fromMib ? { _tag: "Unchanged" } : { _tag: "Grow", fromMib, toMib: sizeMib as Mebibytes }
  )
}
