/**
 * Host-side access to the files of a volume, with no sandbox involved.
 *
 * Paths are volume-relative and normalised (see `docs/files.md`); nothing outside the
 * volume can be reached, not even through symlinks a sandbox planted.
 *
 * @since 0.1.0
 */
import type { Effect, Scope, Sink, Stream } from "effect"
import { Schema } from "effect"
import type { VolumeFsFailure } from "./VolumeError.js"

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
  modified: Schema.OptionFromNullOr(Schema.DateTimeUtc)
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
  readonly read: (path: string) => Effect.Effect<Uint8Array, VolumeFsFailure>
  /** The whole file as UTF-8; invalid UTF-8 fails with `VolumeFsError` `InvalidData`. */
  readonly readToString: (path: string) => Effect.Effect<string, VolumeFsFailure>
  /** The file in chunks of at most 64 KiB (or `chunkSize`), in constant memory. */
  readonly readStream: (
    path: string,
    options?: { readonly chunkSize?: number }
  ) => Stream.Stream<Uint8Array, VolumeFsFailure>
  /** Creates parents, then replaces the file atomically. */
  readonly write: (path: string, data: string | Uint8Array) => Effect.Effect<void, VolumeFsFailure>
  /** An atomic streaming write tied to the current scope. */
  readonly writeStream: (path: string) => Effect.Effect<VolumeFsWriteSink, VolumeFsFailure, Scope.Scope>
  /** A `Sink` that writes the stream to `path` atomically when the stream ends. */
  readonly sink: (path: string) => Sink.Sink<void, Uint8Array, never, VolumeFsFailure>
  /** Immediate children, sorted by name. */
  readonly list: (path?: string) => Effect.Effect<ReadonlyArray<FsEntry>, VolumeFsFailure>
  /** `mkdir -p`; idempotent. */
  readonly mkdir: (path: string) => Effect.Effect<void, VolumeFsFailure>
  /** Removes one file or symlink (the link itself, never its target). */
  readonly remove: (path: string) => Effect.Effect<void, VolumeFsFailure>
  /** Removes a directory and everything below it; the root is refused. */
  readonly removeDir: (path: string) => Effect.Effect<void, VolumeFsFailure>
  /** Copies a file (replacing the target) or a directory tree (to a new path); creates parents. */
  readonly copy: (from: string, to: string) => Effect.Effect<void, VolumeFsFailure>
  /** Moves a file or directory; creates parents. */
  readonly rename: (from: string, to: string) => Effect.Effect<void, VolumeFsFailure>
  /** Metadata of the path itself (symlinks are not followed). */
  readonly stat: (path: string) => Effect.Effect<FsMetadata, VolumeFsFailure>
  /** Whether the path exists; false only when it is absent. */
  readonly exists: (path: string) => Effect.Effect<boolean, VolumeFsFailure>
}
