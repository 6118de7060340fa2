/**
 * Data generations: a volume's files live below `data/<name-key>/<dir>/`, where `<dir>` is
 * named by the volume's record (`Records.dataDirOf`). A restore builds the snapshot's tree
 * in a fresh generation and then points the record at it with one compare-and-swap, so for
 * readers on every machine the volume switches from the old tree to the restored one in a
 * single step (snapshots.ts).
 *
 * A handle therefore checks its volume's current generation (one GET of the small record)
 * with every file operation and runs the operation on a driver bound to it (`make` says
 * how reads keep this to one round trip). An operation that started before the switch
 * finishes on the old generation: a write lands in it and is replaced by the restore, as
 * if it had happened just before (its usage delta is dropped, see usage.ts). A streamed
 * read that straddles the switch and the deletion of the old generation fails with `Io`
 * ("removed while it was read") rather than mixing trees.
 */
import { Effect, Either, Option, Stream } from "effect"
import type { StorageError, VolumeFsFailure } from "../../VolumeError.js"
import { VolumeNotFound } from "../../VolumeError.js"
import type { FsDriver } from "../fsDriver.js"
import { pollWatch } from "../watchPoll.js"
import { POLL_INTERVAL } from "./links.js"
import * as Records from "./records.js"
import type { S3 } from "./client.js"

/** A driver found anew (by `resolve`) for every operation. */
export const lazyDriver = <E>(resolve: Effect.Effect<FsDriver, E>): FsDriver => {
  const driver = resolve as Effect.Effect<FsDriver, VolumeFsFailure>
  const use = <A>(f: (driver: FsDriver) => Effect.Effect<A, VolumeFsFailure>) => Effect.flatMap(driver, f)
  return {
    stat: (path) => use((d) => d.stat(path)),
    list: (path) => use((d) => d.list(path)),
    read: (path) => use((d) => d.read(path)),
    readStream: (path, chunkSize) => Stream.unwrap(Effect.map(driver, (d) => d.readStream(path, chunkSize))),
    openWriter: (path, mode) => Effect.flatMap(driver, (d) => d.openWriter(path, mode)),
    write: (path, data, mode) => use((d) => d.write(path, data, mode)),
    symlink: (target, path) => use((d) => d.symlink(target, path)),
    readlink: (path) => use((d) => d.readlink(path)),
    chmod: (path, mode) => use((d) => d.chmod(path, mode)),
    watch: (path, recursive) => Stream.unwrap(Effect.map(driver, (d) => d.watch(path, recursive))),
    mkdir: (path) => use((d) => d.mkdir(path)),
    remove: (path) => use((d) => d.remove(path)),
    removeDir: (path) => use((d) => d.removeDir(path)),
    rename: (from, to) => use((d) => d.rename(from, to)),
    copy: (from, to) => use((d) => d.copy(from, to)),
    measure: (path) => use((d) => d.measure(path))
  }
}

export interface GenerationalOptions {
  readonly s3: S3
  readonly recordKey: string
  /** Display name, for `VolumeNotFound`. */
  readonly volume: string
  /** The incarnation the handle is bound to. */
  readonly id: string
  /** The data prefix of data directory `dir`. */
  readonly prefixOf: (dir: string) => string
  /** A driver over the files below `dataPrefix`. */
  readonly driverOf: (dataPrefix: string) => FsDriver
  /** The data prefix the handle was made with (its volume's generation then). */
  readonly initialPrefix: string
}

/**
 * A driver that follows the volume's current generation: `VolumeNotFound` once the
 * incarnation is removed (even if the name is created again).
 *
 * - A read (`stat`, `read`, `readlink`) runs on the generation used last **in parallel**
 *   with the GET of the record, so it costs one round trip. If the record names that
 *   generation, the read is valid: the generation was current when the record was read,
 *   and a restore never changes a generation's files, it only deletes a replaced one
 *   (a read that found them deleted fails, and is then run again). Otherwise it runs again
 *   on the current generation.
 * - A listing (`list`, `measure`) could see a replaced generation half deleted, so the
 *   record is read after it: still the same generation means it was whole meanwhile.
 * - A write resolves the generation first and writes there.
 */
export const make = (options: GenerationalOptions): FsDriver => {
  const { id, recordKey, s3, volume } = options
  // The generation used last, with its driver (drivers are cheap, but keep their caches).
  let last: Current = { prefix: options.initialPrefix, driver: options.driverOf(options.initialPrefix) }
  const current: Effect.Effect<Current, VolumeNotFound | StorageError> = Effect.flatMap(
    Records.read(s3, recordKey),
    (found) => {
      if (Option.isNone(found) || found.value.record.id !== id) return Effect.fail(new VolumeNotFound({ volume }))
      const prefix = options.prefixOf(Records.dataDirOf(found.value.record))
      if (last.prefix !== prefix) last = { prefix, driver: options.driverOf(prefix) }
      return Effect.succeed(last)
    }
  )
  /** `result` of `op` on generation `guess`, if the record `now` still names it; else `op` on `now`. */
  const settle = <A>(
    op: (driver: FsDriver) => Effect.Effect<A, VolumeFsFailure>,
    guess: Current,
    result: Either.Either<A, VolumeFsFailure>,
    now: Current
  ): Effect.Effect<A, VolumeFsFailure> => now.prefix === guess.prefix ? result : op(now.driver)
  const parallel = <A>(op: (driver: FsDriver) => Effect.Effect<A, VolumeFsFailure>) =>
    Effect.suspend(() => {
      const guess = last
      return Effect.flatMap(
        Effect.all([Effect.either(op(guess.driver)), current], { concurrency: 2 }),
        ([result, now]) => settle(op, guess, result, now)
      )
    })
  const validated = <A>(op: (driver: FsDriver) => Effect.Effect<A, VolumeFsFailure>) =>
    Effect.suspend(() => {
      const guess = last
      return Effect.flatMap(Effect.either(op(guess.driver)), (result) =>
        Effect.flatMap(current, (now) => settle(op, guess, result, now)))
    })
  const driver = lazyDriver(Effect.map(current, (c) => c.driver))
  const stat: FsDriver["stat"] = (path) => parallel((d) => d.stat(path))
  const list: FsDriver["list"] = (path) => validated((d) => d.list(path))
  return {
    ...driver,
    stat,
    read: (path) => parallel((d) => d.read(path)),
    readlink: (path) => parallel((d) => d.readlink(path)),
    list,
    measure: (path) => validated((d) => d.measure(path)),
    // Polls through this driver, so a watch follows a restore to the new tree.
    watch: (path, recursive) => pollWatch({ list, stat, path, recursive, interval: POLL_INTERVAL })
  }
}

interface Current {
  readonly prefix: string
  readonly driver: FsDriver
}
