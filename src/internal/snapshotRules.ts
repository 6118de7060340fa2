/**
 * The rules of SPEC §9 that every backend's snapshots follow, written once: a fork's target
 * spec, the target's quota, and the report of a new snapshot.
 */
import { Effect, Option } from "effect"
import { BYTES_PER_MIB } from "../Size.js"
import { SnapshotInfo } from "../VolumeBackend.js"
import type { ForkRequest, SnapshotRequest, VolumeInfo } from "../VolumeBackend.js"
import { QuotaExceeded, VolumeAlreadyExists } from "../VolumeError.js"
import type { InvalidConfig } from "../VolumeError.js"
import * as VolumeSpec from "../VolumeSpec.js"

/**
 * The spec of a fork's target: the source's kind, capacity, quota and labels, with the
 * caller's overrides, validated like any new volume; a target named like its source already
 * exists. Backends derive it from the source they have just looked up (no measuring).
 */
export const forkSpec = (
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

/** `QuotaExceeded` (naming the target) when `usedBytes` of content do not fit the target's quota. */
export const checkTargetQuota = (target: VolumeSpec.ValidSpec, usedBytes: number): Effect.Effect<void, QuotaExceeded> =>
  Option.isSome(target.quotaMib) && usedBytes > target.quotaMib.value * BYTES_PER_MIB
    ? Effect.fail(
      new QuotaExceeded({
        volume: target.name,
        quotaBytes: target.quotaMib.value * BYTES_PER_MIB,
        usedBytes: 0,
        requestedBytes: usedBytes
      })
    )
    : Effect.void

/** The report of a snapshot just taken of `volume`. */
export const snapshotInfo = (
  volume: VolumeInfo,
  request: SnapshotRequest,
  usedBytes: number,
  hostPath: Option.Option<string>
): SnapshotInfo =>
  new SnapshotInfo({
    volume: volume.name,
    name: request.name,
    kind: volume.kind,
    capacityMib: volume.capacityMib,
    labels: request.labels,
    createdAt: request.createdAt,
    expiresAt: request.expiresAt,
    usedBytes,
    hostPath
  })

/**
 * The holder label of a sandbox that mounts a snapshot: backends refuse to remove the
 * snapshot while a holder with this label (for any `holder`) holds its volume.
 */
export const snapshotHolder = (holder: string, snapshot: string): string =>
  `${holder} (snapshot ${VolumeSpec.nameKey(snapshot)})`
