/**
 * Host-side access to the files of a volume, with no sandbox involved.
 *
 * Paths are volume-relative and normalised (see `docs/files.md`); nothing outside the
 * volume can be reached, not even through symlinks a sandbox planted.
 *
 * @since 0.1.0
 */
import { FileSystem } from "@effect/platform"
import type { Effect, Scope, Sink, Stream } from "effect"
import { Layer, Option, Schema } from "effect"
import * as internalFileSystem from "./internal/fileSystem.js"
import type { InvalidConfig, VolumeFsFailure, VolumeFsReadFailure } from "./VolumeError.js"

/**
 * What a path is.
 *
 * @since 0.1.0
 * @category models
 */
export const FsEntryKind = Schema.Literal("file", "directory", "symlink", "other")

/**
 * @since 0.1.0
 * @category models
 */
export type FsEntryKind = typeof FsEntryKind.Type

const entryFields = {
  /** `/`-anchored, normalised volume path. */
  path: Schema.String,
  kind: FsEntryKind,
  /** Apparent size in bytes (a symlink's size is the length of its target). */
  size: Schema.Number,
  /** Permission bits only (`st_mode & 0o7777`). */
  mode: Schema.Number,
  uid: Schema.Number,
  gid: Schema.Number,
  modified: Schema.OptionFromNullOr(Schema.DateTimeUtc),
  /** A symlink's target, exactly as stored (`None` for every other kind). */
  target: Schema.optionalWith(Schema.OptionFromNullOr(Schema.String), { default: () => Option.none() })
}

/**
 * One entry of a directory listing.
 *
 * @since 0.1.0
 * @category models
 */
export class FsEntry extends Schema.Class<FsEntry>("FsEntry")(entryFields) {}

/**
 * Everything `stat` reports about a path (the path itself, never a symlink's target).
 *
 * @since 0.1.0
 * @category models
 */
export class FsMetadata extends Schema.Class<FsMetadata>("FsMetadata")({
  ...entryFields,
  /** No write permission bit is set for anyone. */
  readonly: Schema.Boolean,
  accessed: Schema.OptionFromNullOr(Schema.DateTimeUtc),
  created: Schema.OptionFromNullOr(Schema.DateTimeUtc)
}) {}

/**
 * An open atomic write. Nothing is visible at the target path until `close()` succeeds;
 * if the scope that opened it closes first (error, interruption), the old content stays
 * and the temporary file is removed.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeFsWriteSink {
  readonly write: (chunk: Uint8Array | string) => Effect.Effect<void, VolumeFsFailure>
  readonly close: () => Effect.Effect<void, VolumeFsFailure>
}

/**
 * Options of `write`, `writeStream` and `sink`.
 *
 * @since 0.2.0
 * @category models
 */
export interface WriteOptions {
  /**
   * Permission bits of the written file (`0..0o7777`; anything else is `InvalidConfig`).
   * A write always publishes a new file, so without `mode` it gets `0o644`.
   */
  readonly mode?: number
}

/**
 * Options of `watch`.
 *
 * @since 0.2.0
 * @category models
 */
export interface WatchOptions {
  /** Also report changes in every directory below the watched one (default `false`). */
  readonly recursive?: boolean
}

/**
 * A change seen by `watch`. Paths are `/`-anchored volume paths.
 *
 * - `Created`: a new entry appeared (a directory, a link, a copied tree, a new file);
 * - `Modified`: a file's content or an entry's mode changed (an atomic replacement of a file
 *   reports `Modified` on the local backend, which cannot tell it from a rewrite);
 * - `Removed`: an entry went away;
 * - `Renamed`: an entry moved from `from` to `path` (polling backends report a rename as
 *   `Removed` + `Created`).
 *
 * @since 0.2.0
 * @category models
 */
export type WatchEvent = typeof WatchEvent.Type

/**
 * @since 0.2.0
 * @category models
 */
export const WatchEvent = Schema.Union(
  Schema.TaggedStruct("Created", { path: Schema.String }),
  Schema.TaggedStruct("Modified", { path: Schema.String }),
  Schema.TaggedStruct("Removed", { path: Schema.String }),
  Schema.TaggedStruct("Renamed", { from: Schema.String, path: Schema.String })
)

/**
 * Largest permission bits `chmod` and the `mode` of a write accept.
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_MODE = 0o7777

/**
 * Largest chunk `readStream` yields.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_CHUNK_BYTES = 64 * 1024

/**
 * File access inside one volume.
 *
 * @since 0.1.0
 * @category models
 */
export interface VolumeFs {
  /** The volume these operations act on. */
  readonly volume: string
  /** The whole file. */
  readonly read: (path: string) => Effect.Effect<Uint8Array, VolumeFsReadFailure>
  /** The whole file as UTF-8; invalid UTF-8 fails with `VolumeFsError` `InvalidData`. */
  readonly readToString: (path: string) => Effect.Effect<string, VolumeFsReadFailure>
  /** The file in chunks of at most 64 KiB (or `chunkSize`), in constant memory. */
  readonly readStream: (
    path: string,
    options?: { readonly chunkSize?: number }
  ) => Stream.Stream<Uint8Array, VolumeFsReadFailure>
  /**
   * Creates parents, then replaces the file atomically. The new file gets `options.mode`
   * (default `0o644`); a mode outside `0..0o7777` is `InvalidConfig`.
   */
  readonly write: {
    (path: string, data: string | Uint8Array): Effect.Effect<void, VolumeFsFailure>
    (path: string, data: string | Uint8Array, options: WriteOptions): Effect.Effect<void, VolumeFsFailure | InvalidConfig>
  }
  /** An atomic streaming write tied to the current scope (`options` as for `write`). */
  readonly writeStream: {
    (path: string): Effect.Effect<VolumeFsWriteSink, VolumeFsFailure, Scope.Scope>
    (path: string, options: WriteOptions): Effect.Effect<VolumeFsWriteSink, VolumeFsFailure | InvalidConfig, Scope.Scope>
  }
  /** A `Sink` that writes the stream to `path` atomically when the stream ends (`options` as for `write`). */
  readonly sink: {
    (path: string): Sink.Sink<void, Uint8Array, never, VolumeFsFailure>
    (path: string, options: WriteOptions): Sink.Sink<void, Uint8Array, never, VolumeFsFailure | InvalidConfig>
  }
  /**
   * Creates a symbolic link at `path` whose target is `target`, stored as given (it may point
   * anywhere; host-side access never follows it). An existing `path` is `AlreadyExists`.
   */
  readonly symlink: (target: string, path: string) => Effect.Effect<void, VolumeFsFailure>
  /** The target of the link at `path`; reading a link never follows it. */
  readonly readlink: (path: string) => Effect.Effect<string, VolumeFsReadFailure>
  /** Sets the permission bits (`0..0o7777`) of `path` itself; a symlink is never followed. */
  readonly chmod: (path: string, mode: number) => Effect.Effect<void, VolumeFsReadFailure | InvalidConfig>
  /**
   * Changes below `path` (default the root) as they happen, from any writer: this process,
   * other processes, sandboxes. Scoped: interrupting the stream releases everything. A watch
   * on a volume that is removed ends with `VolumeNotFound`.
   */
  readonly watch: (path?: string, options?: WatchOptions) => Stream.Stream<WatchEvent, VolumeFsReadFailure>
  /** Immediate children, sorted by name. */
  readonly list: (path?: string) => Effect.Effect<ReadonlyArray<FsEntry>, VolumeFsReadFailure>
  /** `mkdir -p`; idempotent. */
  readonly mkdir: (path: string) => Effect.Effect<void, VolumeFsReadFailure>
  /** Removes one file or symlink (the link itself, never its target). */
  readonly remove: (path: string) => Effect.Effect<void, VolumeFsReadFailure>
  /** Removes a directory and everything below it; the root is refused. */
  readonly removeDir: (path: string) => Effect.Effect<void, VolumeFsReadFailure>
  /** Copies a file (replacing the target) or a directory tree (to a new path); creates parents. */
  readonly copy: (from: string, to: string) => Effect.Effect<void, VolumeFsFailure>
  /** Moves a file or directory; creates parents. */
  readonly rename: (from: string, to: string) => Effect.Effect<void, VolumeFsReadFailure>
  /** Metadata of the path itself (symlinks are not followed). */
  readonly stat: (path: string) => Effect.Effect<FsMetadata, VolumeFsReadFailure>
  /** Whether the path exists; false only when it is absent. */
  readonly exists: (path: string) => Effect.Effect<boolean, VolumeFsReadFailure>
}

/**
 * An `@effect/platform` `FileSystem` over the volume: existing Effect code
 * (`readFileString`, `writeFile`, `readDirectory`, `stream`, `sink`, ...) runs against the
 * volume with volume paths and the containment of `VolumeFs`. Failures are the platform's
 * `SystemError`/`BadArgument`, carrying the volume's typed error as `cause`; what a volume
 * cannot do (`chown`, hard `link`, `utimes`) fails with a `SystemError`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const toFileSystem: (fs: VolumeFs) => FileSystem.FileSystem = internalFileSystem.toFileSystem

/**
 * A layer providing `FileSystem.FileSystem` over `volume.fs()`.
 *
 * ```ts
 * program.pipe(Effect.provide(VolumeFs.layerFileSystem(vol)))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFileSystem = (volume: { readonly fs: () => VolumeFs }): Layer.Layer<FileSystem.FileSystem> =>
  Layer.sync(FileSystem.FileSystem, () => toFileSystem(volume.fs()))
