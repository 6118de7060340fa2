/**
 * The cloud backend: every volume — its record and its files — lives in one bucket of an
 * S3-compatible object store (AWS S3, Ceph RADOS Gateway, MinIO, ...), so every machine
 * pointing at the same bucket and prefix sees the same volumes.
 *
 * How it differs from the local backend, by design (docs/cloud.md):
 * - `backendKind` is `"cloud"`; `path()` and disk volumes fail with `Unsupported`.
 * - `getDefault()` returns the store's default volume (named `default`, created on first
 *   use); removing it fails with `Unsupported`.
 * - Files have no owner or mode in the store: files report `0o644`, directories `0o755`,
 *   owned by this process.
 * - {@link recount} recounts a volume's usage from a listing; {@link cleanup} reclaims what
 *   failed removals and killed writers left (docs/cloud.md, "Consistency model").
 *
 * @since 0.1.0
 */
import { Config, Duration, Effect, Layer, Option, Redacted } from "effect"
import type { ConfigError, Scope } from "effect"
import { guardBackend } from "./internal/layerGuard.js"
import * as internal from "./internal/s3/backend.js"
import * as Snapshot from "./internal/snapshot.js"
import type { Volume } from "./Volume.js"
import type { VolumeBackendService } from "./VolumeBackend.js"
import { VolumeBackend } from "./VolumeBackend.js"
import type { CommitFailed, StorageError, VolumeFsFailure, VolumeNotFound } from "./VolumeError.js"
import { Unsupported } from "./VolumeError.js"

/**
 * Where the store is and how to sign in.
 *
 * @since 0.1.0
 * @category models
 */
export interface S3BackendOptions {
  /** The endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:7480`. */
  readonly endpoint: string
  readonly region: string
  /** Created on first use when it does not exist and the credentials allow it. */
  readonly bucket: string
  /** Key prefix of everything the backend stores, so one bucket can hold several stores. */
  readonly prefix?: string | undefined
  readonly credentials: {
    readonly accessKeyId: string
    readonly secretAccessKey: string | Redacted.Redacted<string>
  }
  /** Path-style URLs (`endpoint/bucket/key`); most self-hosted servers need it. Default `true`. */
  readonly forcePathStyle?: boolean | undefined
  /** Attempts of an idempotent request on network errors, 5xx and throttling. Default 6. */
  readonly maxAttempts?: number | undefined
  /**
   * Longest wait for one attempt's answer. Default 30 seconds. A call fails with
   * `StorageError` (reason `Unavailable`) within `maxAttempts × requestTimeout` plus the
   * backoff pauses (about 2.5 s for 6 attempts) when the store does not answer.
   */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /**
   * How long a sandbox's hold on a volume lasts without renewal (it renews every third of
   * it): a crashed holder blocks `remove`/`rename`/`prune` on every machine for at most
   * this long. Default 30 seconds.
   */
  readonly leaseTtl?: Duration.DurationInput | undefined
}

/**
 * The name of the store's default volume.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_VOLUME: string = internal.DEFAULT_VOLUME

const settingsOf = (options: S3BackendOptions): internal.S3BackendSettings => ({
  endpoint: options.endpoint,
  region: options.region,
  bucket: options.bucket,
  prefix: options.prefix,
  credentials: {
    accessKeyId: options.credentials.accessKeyId,
    secretAccessKey: Redacted.isRedacted(options.credentials.secretAccessKey)
      ? Redacted.value(options.credentials.secretAccessKey)
      : options.credentials.secretAccessKey
  },
  forcePathStyle: options.forcePathStyle ?? true,
  ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
  ...(options.requestTimeout === undefined
    ? {}
    : { requestTimeoutMillis: Duration.toMillis(Duration.decode(options.requestTimeout)) }),
  ...(options.leaseTtl === undefined ? {} : { leaseTtl: options.leaseTtl })
})

/**
 * The cloud backend service, open for the lifetime of the scope (the bucket is created
 * if it is missing).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: S3BackendOptions): Effect.Effect<VolumeBackendService, StorageError, Scope.Scope> =>
  internal.make(settingsOf(options))

/**
 * The cloud backend.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: S3BackendOptions): Layer.Layer<VolumeBackend, StorageError> =>
  Layer.scoped(VolumeBackend, Effect.flatMap(make(options), guardBackend))

/**
 * The options {@link layerConfig} reads: `EFFECT_VOLUMES_S3_ENDPOINT`, `_REGION`
 * (default `us-east-1`), `_BUCKET`, `_PREFIX` (optional), `_ACCESS_KEY_ID`,
 * `_SECRET_ACCESS_KEY` and `_FORCE_PATH_STYLE` (default `true`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const config: Config.Config<S3BackendOptions> = Config.all({
  endpoint: Config.string("EFFECT_VOLUMES_S3_ENDPOINT"),
  region: Config.withDefault(Config.string("EFFECT_VOLUMES_S3_REGION"), "us-east-1"),
  bucket: Config.string("EFFECT_VOLUMES_S3_BUCKET"),
  prefix: Config.option(Config.string("EFFECT_VOLUMES_S3_PREFIX")),
  accessKeyId: Config.string("EFFECT_VOLUMES_S3_ACCESS_KEY_ID"),
  secretAccessKey: Config.redacted("EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"),
  forcePathStyle: Config.withDefault(Config.boolean("EFFECT_VOLUMES_S3_FORCE_PATH_STYLE"), true)
}).pipe(
  Config.map(({ accessKeyId, prefix, secretAccessKey, ...rest }): S3BackendOptions => ({
    ...rest,
    prefix: Option.getOrUndefined(prefix),
    credentials: { accessKeyId, secretAccessKey }
  }))
)

/**
 * The cloud backend configured from the environment (see {@link config}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<VolumeBackend, StorageError | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(config, layer)
)

/**
 * What {@link cleanup} reclaimed: leftovers of removed volumes (incarnations and their
 * objects) and aborted multipart uploads.
 *
 * @since 0.2.0
 * @category models
 */
export type CleanupResult = internal.Reclaimed

/**
 * A volume's usage counted from a listing of the store: `logicalBytes` (what `usedBytes`
 * reports), `allocatedBytes` (plus the parts of unfinished multipart uploads), `files`, and
 * the number of unfinished uploads.
 *
 * @since 0.2.0
 * @category models
 */
export type UsageReport = internal.UsageReport

const extras = Effect.flatMap(VolumeBackend, (service) =>
  Option.match(internal.extrasOf(service), {
    onNone: () => Effect.fail(new Unsupported({ operation: "this operation", backend: service.backendKind })),
    onSome: Effect.succeed
  }))

/**
 * Reclaims what failed or interrupted operations left in the store: the data, bookkeeping
 * and multipart uploads of removed volumes (a `Volume.remove` that failed after its
 * tombstone), and multipart uploads of live volumes started more than `uploadGrace` ago
 * (default one hour: writers killed mid-upload). Safe to run from any machine at any time.
 *
 * @since 0.2.0
 * @category combinators
 */
export const cleanup = (
  options: { readonly uploadGrace?: Duration.DurationInput } = {}
): Effect.Effect<CleanupResult, StorageError | Unsupported, VolumeBackend> =>
  Effect.flatMap(extras, (cloud) =>
    cloud.cleanup(options.uploadGrace === undefined ? undefined : Duration.decode(options.uploadGrace)))

/**
 * Recounts the volume's usage from a listing (the source of truth), stores the figure as its
 * `usedBytes`, and returns what the listing found.
 *
 * @since 0.2.0
 * @category combinators
 */
export const recount = (
  volume: Volume
): Effect.Effect<UsageReport, StorageError | Unsupported | VolumeNotFound, VolumeBackend> =>
  Effect.flatMap(extras, (cloud) => cloud.recount(volume))

/**
 * What {@link commitSnapshot} did to the volume (see docs/sandboxes.md, "Committing snapshot
 * mounts").
 *
 * @since 0.1.0
 * @category models
 */
export type SnapshotCommit = Snapshot.VolumeCommit

/**
 * The local cache directory of a volume's snapshot: under `$EFFECT_VOLUMES_CLOUD_CACHE`
 * (default `<tmpdir>/effect-volumes-cloud-cache`), keyed by bucket and the volume's data
 * prefix, so a re-created volume of the same name never reuses an old cache.
 *
 * @since 0.1.0
 * @category accessors
 */
export const snapshotDirectory = (volume: Volume): string => Snapshot.cacheDirectory(volume)

/**
 * Materialises the volume into a local directory (default {@link snapshotDirectory}) for a
 * sandbox to mount: only files changed in the store since the last sync are downloaded.
 * Returns the directory.
 *
 * @since 0.1.0
 * @category combinators
 */
export const materializeSnapshot = (
  volume: Volume,
  directory: string = snapshotDirectory(volume)
): Effect.Effect<string, VolumeFsFailure> => Effect.as(Snapshot.materialize(volume.fs(), directory), directory)

/**
 * Commits what changed in the snapshot directory since it was materialised, path by path
 * against the state materialised then: a path changed here and elsewhere is a conflict (the
 * store's version stays, this one is kept beside the directory); a path some write refuses
 * fails the commit with `CommitFailed` after every other change was committed.
 *
 * @since 0.1.0
 * @category combinators
 */
export const commitSnapshot = (
  volume: Volume,
  directory: string = snapshotDirectory(volume)
): Effect.Effect<SnapshotCommit, CommitFailed> =>
  Effect.map(Snapshot.commitAll([{ volume: volume.name, fs: volume.fs(), directory }]), (commits) => commits[0]!)
