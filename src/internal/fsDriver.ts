/**
 * The contract between the backend-independent `VolumeFs` (path rules, quota, streams,
 * UTF-8) and one backend's storage. Every path a driver sees is already normalised by
 * `paths.ts`; every driver must keep its operations inside the volume and make file
 * replacement atomic.
 */
import type { Effect, Scope, Stream } from "effect"
import type { VolumeFsFailure } from "../VolumeError.js"
import type { FsEntry, FsMetadata, WatchEvent } from "../VolumeFs.js"
import type { NonRootSegments, Segments } from "./paths.js"

/** An open atomic write: chunks go to a temporary object; `commit` makes it visible. */
export interface FsWriter {
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, VolumeFsFailure>
  /** Publishes the written bytes at the target path atomically. */
  readonly commit: Effect.Effect<void, VolumeFsFailure>
}

export interface FsDriver {
  /** Metadata of the path itself; `PathNotFound` when absent. */
  readonly stat: (path: Segments) => Effect.Effect<FsMetadata, VolumeFsFailure>
  /** Immediate children sorted by name, temporary names hidden. */
  readonly list: (path: Segments) => Effect.Effect<ReadonlyArray<FsEntry>, VolumeFsFailure>
  /** A regular file's bytes; directories fail `IsADirectory`, symlinks `InvalidPath`. */
  readonly read: (path: NonRootSegments) => Effect.Effect<Uint8Array, VolumeFsFailure>
  /** A regular file in chunks of at most `chunkSize` bytes. */
  readonly readStream: (path: NonRootSegments, chunkSize: number) => Stream.Stream<Uint8Array, VolumeFsFailure>
  /**
   * Starts an atomic write at `path`, creating parents. If the scope closes before
   * `commit`, nothing changes at `path` and no temporary file remains.
   */
  readonly openWriter: (path: NonRootSegments, mode?: number) => Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope>
  /**
   * Whole-buffer atomic write (the common case, kept on a fast path). The new file gets
   * `mode` (already validated) or, without it, the default file mode.
   */
  readonly write: (path: NonRootSegments, data: Uint8Array, mode?: number) => Effect.Effect<void, VolumeFsFailure>
  readonly mkdir: (path: Segments) => Effect.Effect<void, VolumeFsFailure>
  /** Removes a file or symlink; directories fail `IsADirectory`. */
  readonly remove: (path: NonRootSegments) => Effect.Effect<void, VolumeFsFailure>
  /** Removes a directory tree; non-directories fail `NotADirectory`. */
  readonly removeDir: (path: NonRootSegments) => Effect.Effect<void, VolumeFsFailure>
  /** Moves a file or directory, creating the target's parents; replaces a file target. */
  readonly rename: (from: NonRootSegments, to: NonRootSegments) => Effect.Effect<void, VolumeFsFailure>
  /**
   * Copies a file (atomically replacing a file target) or a directory tree to a path that
   * must not exist yet; creates parents.
   */
  readonly copy: (from: NonRootSegments, to: NonRootSegments) => Effect.Effect<void, VolumeFsFailure>
  /**
   * Creates a symlink at `path` (parents created) holding `target` verbatim; an existing
   * entry at `path` is `AlreadyExists`. Nothing is ever resolved through the target.
   */
  readonly symlink: (target: string, path: NonRootSegments) => Effect.Effect<void, VolumeFsFailure>
  /** The stored target of the symlink `path`; any other kind is `VolumeFsError` `InvalidData`. */
  readonly readlink: (path: NonRootSegments) => Effect.Effect<string, VolumeFsFailure>
  /** Sets the permission bits of `path` itself (never through a symlink); `mode` is validated. */
  readonly chmod: (path: Segments, mode: number) => Effect.Effect<void, VolumeFsFailure>
  /**
   * Sets the modification (and access) time of `path` itself, never through a symlink (a
   * link gets its own time). Only drivers whose store keeps times a caller may set have it
   * (the local drivers); elsewhere times stay the store's.
   */
  readonly setModified?: (path: Segments, mtime: Date) => Effect.Effect<void, VolumeFsFailure>
  /**
   * Changes at (and with `recursive`, below) the directory `path`, from every writer. Ends
   * with `VolumeNotFound` once the volume is removed; releases everything when interrupted.
   */
  readonly watch: (path: Segments, recursive: boolean) => Stream.Stream<WatchEvent, VolumeFsFailure>
  /** Sum of apparent sizes of regular files and symlinks at or below `path`; 0 when absent. */
  readonly measure: (path: Segments) => Effect.Effect<number, VolumeFsFailure>
}
