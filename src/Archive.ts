/**
 * Whole volumes as tar streams: `exportTar` for backups and moves, `importTar` to load
 * them back (atomically: a failed import leaves the volume as it was). The CLI's
 * `volumes export` / `volumes import` are thin wrappers over these.
 *
 * What is kept: file contents, directories, symlinks and permission bits on every backend
 * (set-user-ID, set-group-ID and sticky bits only with `keepSpecialModes`); mtimes where
 * the backend keeps settable times (the local backend). An import is the volume's only
 * holder while it runs. See `docs/cli.md` for the full rules.
 *
 * @since 0.1.0
 */
import { Effect, Stream } from "effect"
import * as internal from "./internal/archive/archive.js"
import { ArchiveError } from "./internal/archive/archiveError.js"
import * as Volume from "./Volume.js"
import { VolumeBackend } from "./VolumeBackend.js"
import type {
  InvalidConfig,
  StorageError,
  Unsupported,
  VolumeAlreadyExists,
  VolumeFsFailure,
  VolumeInUse,
  VolumeNotFound
} from "./VolumeError.js"

export {
  /**
   * @since 0.1.0
   * @category errors
   */
  ArchiveError
}

/**
 * What an import did: entries written and bytes of file data.
 *
 * @since 0.1.0
 * @category models
 */
export type ImportSummary = internal.ImportSummary

/**
 * Options of {@link importTar}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ImportOptions {
  /**
   * Create the volume (a directory volume with no quota) first; it must not exist yet.
   * If the import then fails, the volume is removed again.
   */
  readonly create?: boolean | undefined
  /**
   * Keep set-user-ID, set-group-ID and sticky bits of archive entries. Off by default: an
   * archive cannot plant a set-user-ID file unless the caller asks for it.
   */
  readonly keepSpecialModes?: boolean | undefined
}

/**
 * The whole volume as a tar stream (ustar + PAX): directories before their contents,
 * entries sorted by name, modes, owners, mtimes and symlink targets kept.
 *
 * @since 0.1.0
 * @category combinators
 */
export const exportTar = (
  volume: string | Volume.Volume
): Stream.Stream<Uint8Array, VolumeFsFailure | ArchiveError, VolumeBackend> =>
  typeof volume === "string"
    ? Stream.unwrap(Effect.map(Volume.get(volume), internal.exportVolume))
    : internal.exportVolume(volume)

/**
 * Imports a tar stream into the volume `name`, merging it into what is there (archive
 * files replace files at the same path). Entries that would escape the volume, entries
 * that are neither files, directories, symlinks nor hard links, a file where the volume has
 * a directory (or the reverse) and quota overflows fail the import, and the volume is left
 * as it was.
 *
 * @since 0.1.0
 * @category combinators
 */
export const importTar = <E, R>(
  name: string,
  input: Stream.Stream<Uint8Array, E, R>,
  options: ImportOptions = {}
): Effect.Effect<
  ImportSummary,
  | E
  | VolumeFsFailure
  | ArchiveError
  | VolumeAlreadyExists
  | InvalidConfig
  | Unsupported
  | StorageError
  | VolumeNotFound
  | VolumeInUse,
  R | VolumeBackend
> =>
  Effect.gen(function*() {
    const importInto = (volume: Volume.Volume) =>
      // The volume is held for the import (no sandbox may run on it meanwhile and race it).
      Effect.scoped(Effect.zipRight(holdForImport(volume), internal.importIntoVolume(volume, input, options)))
    if (options.create === true) {
      const volume = yield* Volume.builder(name).create()
      return yield* internal.removeOnFailure(importInto(volume), Volume.remove(name))
    }
    return yield* importInto(yield* Volume.get(name))
  })

/**
 * Holds the volume exclusively for the current scope, on every backend: refused
 * (`VolumeInUse`) while a sandbox holds it, and no sandbox attaches it until the import is
 * done (a running sandbox could swap what the import stages, or commit over it).
 */
const holdForImport = (volume: Volume.Volume) =>
  Effect.flatMap(VolumeBackend, ({ holders }) => holders.acquire(volume.name, "archive import", "exclusive"))
