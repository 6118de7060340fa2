/**
 * The default backend: volumes on this machine. Records live in SQLite at
 * `<home>/db/volumes.db`, files under `<home>/volumes/<name>/data/` (directory volumes)
 * or in `<home>/volumes/<name>/disk.raw` (disk volumes, sparse ext4 images).
 *
 * Several processes may share one home: creation has exactly one winner, removal is
 * refused while a sandbox in any process holds the volume, and whatever a crashed
 * process left half done is finished when the home is next opened.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Context, Effect, Layer } from "effect"
import type { Duration, Scope } from "effect"
import { LocalAttachments } from "./internal/local/attachments.js"
import * as Database from "./internal/local/database.js"
import * as Layout from "./internal/local/layout.js"
import { guardBackend } from "./internal/layerGuard.js"
import * as internal from "./internal/local/localBackend.js"
import type { VolumeBackendService } from "./VolumeBackend.js"
import { VolumeBackend } from "./VolumeBackend.js"
import type { StorageError } from "./VolumeError.js"

/**
 * Options of {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalBackendOptions {
  /**
   * The home directory. Defaults to `$EFFECT_VOLUMES_HOME`, else `~/.effect-volumes`.
   * Relative paths are resolved against the working directory.
   */
  readonly home?: string | undefined
  /**
   * How long a disk volume's image stays mounted after the last host-side `fs()`
   * operation, so a burst of operations mounts it once. Meanwhile another process cannot
   * attach the volume (`VolumeInUse`); a sandbox of this backend can. Default: released at
   * once.
   *
   * @since 0.2.0
   */
  readonly diskIdleTimeToLive?: Duration.DurationInput | undefined
}

/**
 * The home a backend with these options uses (absolute).
 *
 * @since 0.1.0
 * @category accessors
 */
export const resolveHome = (options: LocalBackendOptions = {}): Effect.Effect<string, StorageError> =>
  Layout.resolveHome(options.home)

const context = (options: LocalBackendOptions) =>
  Layer.unwrapEffect(
    Effect.map(resolveHome(options), (home) => {
      const layout = Layout.make(home)
      return Layer.scopedContext(
        Effect.flatMap(internal.make(layout, { diskIdleTimeToLive: options.diskIdleTimeToLive }), (backend) =>
          Effect.map(guardBackend(backend.service), (service) =>
            Context.make(VolumeBackend, service).pipe(Context.add(LocalAttachments, backend.attachments))))
      ).pipe(Layer.provide(Layer.merge(Database.layer(layout.database), NodeContext.layer)))
    })
  )

/**
 * The local backend. Opening it creates the home if needed, migrates the database and
 * recovers from crashed processes; the database closes when the layer's scope ends.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: LocalBackendOptions = {}): Layer.Layer<VolumeBackend, StorageError> => context(options)

/**
 * The local backend service, open for the lifetime of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: LocalBackendOptions = {}): Effect.Effect<VolumeBackendService, StorageError, Scope.Scope> =>
  Effect.map(Layer.build(context(options)), Context.get(VolumeBackend))
