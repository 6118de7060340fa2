/**
 * What a volume handle does once the backend layer that made it is closed: every operation
 * fails with a `StorageError` (reason `Unavailable`) that says so — on every backend, for
 * the backend's own operations and for `fs()`, `path()` and `remove()` of handles alike.
 * Without this, directory volumes kept working, while disk volumes and `path()` failed
 * with a raw "database connection is not open" and cloud volumes with a destroyed client.
 */
import { Effect, Sink, Stream } from "effect"
import type { Scope } from "effect"
import type { VolumeBackendService } from "../VolumeBackend.js"
import { StorageError } from "../VolumeError.js"
import type { VolumeFs } from "../VolumeFs.js"
import { Staging } from "./volumeFs.js"
import type { InternalVolumeFs } from "./volumeFs.js"

const isStream = (value: unknown): value is Stream.Stream<unknown, unknown, unknown> =>
  typeof value === "object" && value !== null && Stream.StreamTypeId in value

const isSink = (value: unknown): value is Sink.Sink<unknown, unknown, unknown, unknown, unknown> =>
  typeof value === "object" && value !== null && Sink.SinkTypeId in value

/** `result`, checked by `check` before it runs (effects, streams and sinks alike). */
const guarded = (result: unknown, check: Effect.Effect<void, StorageError>): unknown =>
  Effect.isEffect(result)
    ? Effect.zipRight(check, result)
    : isStream(result)
    ? Stream.unwrap(Effect.as(check, result))
    : isSink(result)
    ? Sink.unwrap(Effect.as(check, result))
    : result

/** Every method and effect of `target` guarded by `check`; `fs` results are guarded too. */
const guardObject = <T extends object>(target: T, check: (operation: string) => Effect.Effect<void, StorageError>): T => {
  const out: Record<PropertyKey, unknown> = {}
  for (const [key, value] of Object.entries(target)) {
    if (typeof value === "function") {
      out[key] = (...args: Array<unknown>) => {
        const result: unknown = value(...args)
        return key === "fs" ? guardObject(result as VolumeFs, check) : guarded(result, check(key))
      }
    } else if (Effect.isEffect(value)) out[key] = Effect.zipRight(check(key), value)
    // A group of operations (e.g. `snapshots`) is guarded like the service itself.
    else if (typeof value === "object" && value !== null) out[key] = guardObject(value, check)
    else out[key] = value
  }
  // A file system's staging view (a symbol key, which `Object.entries` skips) is guarded too.
  if (Staging in target) {
    const staging = (target as unknown as InternalVolumeFs)[Staging]
    out[Staging] = (name: string) => guardObject(staging(name), check)
  }
  return out as T
}

/**
 * The service, failing every operation once the current scope (the layer's) has closed.
 */
export const guardBackend = (
  service: VolumeBackendService
): Effect.Effect<VolumeBackendService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = { closed: false }
    yield* Effect.addFinalizer(() => Effect.sync(() => void (state.closed = true)))
    const check = (operation: string) =>
      Effect.suspend(() =>
        state.closed
          ? Effect.fail(
            new StorageError({
              reason: "Unavailable",
              operation,
              message:
                `the ${service.backendKind} backend layer was closed, so this volume handle can no longer reach it (${operation}); ` +
                "use handles only inside the Effect.provide of the layer that made them"
            })
          )
          : Effect.void
      )
    return guardObject(service, check)
  })
