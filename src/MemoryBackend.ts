/**
 * An in-memory `VolumeBackend` for tests: no files, no database, nothing to clean up.
 *
 * It is not a toy: every volume and file operation gives the same results and the same
 * errors as the local backend (the conformance suite runs against both), so tests that
 * pass against it hold against `LocalBackend.layer()`.
 *
 * @since 0.1.0
 */
import { Effect, Layer } from "effect"
import { guardBackend } from "./internal/layerGuard.js"
import * as internal from "./internal/memory/memoryBackend.js"
import type { VolumeBackendService } from "./VolumeBackend.js"
import { VolumeBackend } from "./VolumeBackend.js"

/**
 * A fresh, empty in-memory backend service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<VolumeBackendService> = internal.make

/**
 * The in-memory backend. Each time the layer is built it starts from an empty store, so
 * `Effect.provide(MemoryBackend.layer)` per test keeps tests isolated (tests inside one
 * `it.layer(MemoryBackend.layer)` block share one store).
 *
 * How it differs from the local backend, by design:
 * - `backendKind` is `"memory"`; `path()` and `getDefault()` fail with `Unsupported`.
 * - Disk volumes are trees like directory volumes, hard-capped by their size: a write,
 *   stream or copy that would take the files' total size above `capacityMib` fails with
 *   `VolumeFsError` `NoSpace` and changes nothing. The whole capacity is usable (a real
 *   ext4 image loses a few MiB to metadata), and `usedBytes` of a disk volume is the sum
 *   of its file sizes rather than the image's allocated blocks.
 * - Directories report a size of 4096 bytes (one ext4 block); files are `0o644`,
 *   directories `0o755`, owned by this process's uid and gid.
 * - Everything lives in this process and is gone when the layer's scope ends.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<VolumeBackend> = Layer.scoped(VolumeBackend, Effect.flatMap(make, guardBackend))
