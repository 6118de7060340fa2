/**
 * The spec of a fork's target (SPEC §9): the source's kind, capacity, quota and labels,
 * with the caller's overrides, validated like any new volume. Every backend derives it
 * from the source it has just looked up, so no backend measures the source for it.
 */
import { Effect, Option } from "effect"
import type { ForkRequest, VolumeInfo } from "../VolumeBackend.js"
import { VolumeAlreadyExists } from "../VolumeError.js"
import type { InvalidConfig } from "../VolumeError.js"
import * as VolumeSpec from "../VolumeSpec.js"

/** The validated target spec; a target named like its source already exists. */
export const make = (
  source: VolumeInfo,
  request: ForkRequest
): Effect.Effect<VolumeSpec.ValidSpec, InvalidConfig | VolumeAlreadyExists> =>
  Effect.gen(function*() {
    const spec = yield* VolumeSpec.validate(
      new VolumeSpec.VolumeSpec({
        name: request.target,
        kind: source.kind,
        quotaMib: Option.orElse(request.quotaMib, () => source.quotaMib),
        capacityMib: source.capacityMib,
        labels: Option.getOrElse(request.labels, () => source.labels)
      }, { disableValidation: true })
    )
    if (VolumeSpec.nameKey(spec.name) === VolumeSpec.nameKey(source.name)) {
      return yield* new VolumeAlreadyExists({ volume: spec.name })
    }
    return spec
  })
