/**
 * The local backend's `FsDriver` for disk volumes: the directory driver, run on the
 * inside of the volume's ext4 image while it is loop-mounted for the operation (see
 * `diskMount.ts`). The image file itself is never reachable: the driver's root is the
 * mounted file system's root.
 *
 * Two mounts of one ext4 image at once corrupt it, so a backend has at most one mount of
 * each image ({@link DiskSessions}), shared by the operations that run while it exists (a
 * stream being read or a writer being filled keeps it, and other operations on the volume
 * meanwhile use the same mount instead of waiting for it, which would deadlock a fiber
 * that holds a writer and reads). The first operation takes the backend's exclusive
 * attachment, so no sandbox attaches the image meanwhile; when the mount is released the
 * attachment goes with it.
 */
import { Effect, RcMap, Stream } from "effect"
import type { Duration, Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StorageError, VolumeNotFound } from "../../VolumeError.js"
import type { Unsupported, VolumeFsFailure, VolumeInUse } from "../../VolumeError.js"
import type { FsDriver } from "../fsDriver.js"
import type * as Paths from "../paths.js"
import { makeDirectoryDriver } from "./directoryDriver.js"
import type { DirectoryDriver } from "./directoryDriver.js"
import { errnoCode } from "./errno.js"
import { mountImage } from "./diskMount.js"

/**
 * The mounts of disk images, one per image at a time: an `RcMap` keyed by the image's
 * absolute path, created in the backend layer's scope (so no mount outlives the backend
 * that made it). The first operation on an image takes the backend's exclusive attachment
 * and mounts it; operations that overlap share that mount (two mounts of one ext4 image at
 * once corrupt it); the mount is released `idleTimeToLive` after the last one ends, so a
 * burst of operations pays for one mount. Waiting for a mount being set up is
 * interruptible.
 */
export type DiskSessions = RcMap.RcMap<string, string, StorageError | Unsupported | VolumeInUse | VolumeNotFound>

/**
 * Options of {@link makeDiskSessions}.
 */
export interface DiskSessionsOptions {
  /** Where mount points are made. */
  readonly runDir: string
  /** The backend's exclusive attachment of the image at this path, held while it is mounted. */
  readonly acquireExclusive: (
    image: string
  ) => Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope>
  /** How long an unused mount is kept for the next operation (default: released at once). */
  readonly idleTimeToLive?: Duration.DurationInput | undefined
  /** Mount the images read-only (snapshots): nothing, not even ext4's bookkeeping, writes to them. */
  readonly readOnly?: boolean
}

/** The mount sessions of a backend instance, closed with the current scope. */
export const makeDiskSessions = (options: DiskSessionsOptions): Effect.Effect<DiskSessions, never, Scope.Scope> =>
  Effect.suspend(() => {
    // An image's next session must not mount before the previous one has unmounted (two
    // mounts of one image corrupt it): a session holds its image's permit from before it
    // mounts until after it unmounted. Waiting for the permit is interruptible.
    const permits = new Map<string, Effect.Semaphore>()
    const permitOf = (image: string) => {
      let permit = permits.get(image)
      if (permit === undefined) {
        permit = Effect.unsafeMakeSemaphore(1)
        permits.set(image, permit)
      }
      return permit
    }
    const holdPermit = (image: string) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(permitOf(image).take(1)), () => Effect.addFinalizer(() => permitOf(image).release(1)))
      )
    return RcMap.make({
      lookup: (image: string) =>
        holdPermit(image).pipe(
          Effect.zipRight(options.acquireExclusive(image)),
          Effect.zipRight(mountImage({ image, runDir: options.runDir, readOnly: options.readOnly === true }))
        ),
      ...(options.idleTimeToLive === undefined ? {} : { idleTimeToLive: options.idleTimeToLive })
    })
  })

/**
 * Options of {@link makeDiskDriver}.
 */
export interface DiskDriverOptions {
  /** The volume's raw ext4 image. */
  readonly image: string
  /** Display name of the volume, for errors. */
  readonly volume: string
  /** The backend's mount sessions. */
  readonly sessions: DiskSessions
}

/**
 * An `FsDriver` over the files inside a disk volume's image.
 */
export const makeDiskDriver = (options: DiskDriverOptions): FsDriver => {
  const { sessions, volume } = options
  const image = NodePath.resolve(options.image)

  const imagePresent = Effect.try({
    try: () => void NodeFs.statSync(image),
    catch: (error) =>
      errnoCode(error) === "ENOENT"
        ? new VolumeNotFound({ volume: volume })
        : new StorageError({ message: `cannot open the disk image of volume "${volume}": ${String(error)}`, cause: error })
  })

  /** The directory driver over the mounted image, for the current scope. */
  const mounted: Effect.Effect<DirectoryDriver, VolumeFsFailure, Scope.Scope> = imagePresent.pipe(
    // A failed mount (e.g. a sandbox holds the image) must not be remembered for the idle time.
    Effect.zipRight(RcMap.get(sessions, image).pipe(Effect.tapError(() => RcMap.invalidate(sessions, image)))),
    Effect.map((root) => makeDirectoryDriver({ root, volume }))
  )

  const within = <A>(use: (driver: DirectoryDriver) => Effect.Effect<A, VolumeFsFailure>) =>
    Effect.scoped(Effect.flatMap(mounted, use))

  return {
    stat: (path) => within((driver) => driver.stat(path)),
    list: (path) => within((driver) => driver.list(path)),
    read: (path) => within((driver) => driver.read(path)),
    readStream: (path: Paths.NonRootSegments, chunkSize: number) =>
      Stream.unwrapScoped(Effect.map(mounted, (driver) => driver.readStream(path, chunkSize))),
    // The mount lives as long as the writer's scope.
    openWriter: (path, mode) => Effect.flatMap(mounted, (driver) => driver.openWriter(path, mode)),
    write: (path, data, mode) => within((driver) => driver.write(path, data, mode)),
    mkdir: (path) => within((driver) => driver.mkdir(path)),
    remove: (path) => within((driver) => driver.remove(path)),
    removeDir: (path) => within((driver) => driver.removeDir(path)),
    rename: (from, to) => within((driver) => driver.rename(from, to)),
    copy: (from, to) => within((driver) => driver.copy(from, to)),
    measure: (path) => within((driver) => driver.measure(path)),
    symlink: (target, path) => within((driver) => driver.symlink(target, path)),
    readlink: (path) => within((driver) => driver.readlink(path)),
    chmod: (path, mode) => within((driver) => driver.chmod(path, mode)),
    setModified: (path, mtime) => within((driver) => driver.setModified(path, mtime)),
    // The watch keeps the image mounted (and the volume attached) for as long as it runs.
    watch: (path, recursive) => Stream.unwrapScoped(Effect.map(mounted, (driver) => driver.watch(path, recursive)))
  }
}
