/**
 * The local backend's `FsDriver` for disk volumes: the directory driver, run on the
 * inside of the volume's ext4 image while it is loop-mounted for the operation (see
 * `diskMount.ts`). The image file itself is never reachable: the driver's root is the
 * mounted file system's root.
 *
 * Two mounts of one ext4 image at once corrupt it, so in this process each image has at
 * most one mount, shared by the operations that run while it exists (a stream being read
 * or a writer being filled keeps it, and other operations on the volume meanwhile use the
 * same mount instead of waiting for it, which would deadlock a fiber that holds a writer
 * and reads). The first operation takes the backend's exclusive attachment, so no sandbox
 * attaches the image meanwhile; the last one unmounts it and lets the attachment go.
 */
import { Effect, Exit, Scope, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StorageError, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsFailure, VolumeInUse } from "../../VolumeError.js"
import type { FsDriver } from "../fsDriver.js"
import type * as Paths from "../paths.js"
import { makeDirectoryDriver } from "./directoryDriver.js"
import { errnoCode } from "./errno.js"
import { mountImage } from "./diskMount.js"

interface MountSession {
  /** Host path of the mounted file system's root. */
  readonly root: string
  /** Holds the mount and the exclusive attachment. */
  readonly scope: Scope.CloseableScope
  users: number
}

interface ImageState {
  /** Serialises setting up and tearing down the image's one mount. */
  readonly lock: Effect.Semaphore
  session: MountSession | undefined
  /** Operations between the start of their acquisition and the end of their release. */
  references: number
}

/** Process-wide, keyed by the image's absolute path. */
const images = new Map<string, ImageState>()

const stateOf = (key: string): ImageState => {
  let state = images.get(key)
  if (state === undefined) {
    state = { lock: Effect.unsafeMakeSemaphore(1), session: undefined, references: 0 }
    images.set(key, state)
  }
  return state
}

const unreference = (key: string, state: ImageState) =>
  Effect.sync(() => {
    state.references--
    if (state.references === 0 && images.get(key) === state) images.delete(key)
  })

/**
 * The root of the image's mount for the current scope: joins the running session or
 * starts one with `open` (run in the session's own scope).
 */
const joinSession = <E>(
  key: string,
  open: Effect.Effect<string, E, Scope.Scope>
): Effect.Effect<string, E, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const state = stateOf(key)
      state.references++
      return state.lock.withPermits(1)(Effect.gen(function*() {
        if (state.session === undefined) {
          const scope = yield* Scope.make()
          const root = yield* Scope.extend(open, scope).pipe(
            Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit))
          )
          state.session = { root, scope, users: 0 }
        }
        state.session.users++
        return { state, session: state.session }
      })).pipe(Effect.onError(() => unreference(key, state)))
    }),
    ({ session, state }) =>
      state.lock.withPermits(1)(Effect.suspend(() => {
        session.users--
        if (session.users > 0) return Effect.void
        state.session = undefined
        return Scope.close(session.scope, Exit.void)
      })).pipe(Effect.zipRight(unreference(key, state)))
  ).pipe(Effect.map(({ session }) => session.root))

/**
 * Options of {@link makeDiskDriver}.
 */
export interface DiskDriverOptions {
  /** The volume's raw ext4 image. */
  readonly image: string
  /** Display name of the volume, for errors. */
  readonly volume: string
  /** Where mount points are made. */
  readonly runDir: string
  /** The backend's exclusive attachment of the image, held while it is mounted. */
  readonly acquireExclusive: Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope>
}

/**
 * An `FsDriver` over the files inside a disk volume's image.
 */
export const makeDiskDriver = (options: DiskDriverOptions): FsDriver => {
  const { acquireExclusive, runDir, volume } = options
  const image = NodePath.resolve(options.image)

  const imagePresent = Effect.try({
    try: () => void NodeFs.statSync(image),
    catch: (error) =>
      errnoCode(error) === "ENOENT"
        ? new VolumeNotFound({ volume: volume })
        : new StorageError({ message: `cannot open the disk image of volume "${volume}": ${String(error)}`, cause: error })
  })

  const open = acquireExclusive.pipe(
    Effect.zipRight(imagePresent),
    Effect.zipRight(mountImage({ image, runDir }))
  )

  /** The directory driver over the mounted image, for the current scope. */
  const mounted: Effect.Effect<FsDriver, VolumeFsFailure, Scope.Scope> = Effect.map(
    joinSession(image, open),
    (root) => makeDirectoryDriver({ root, volume })
  )

  const within = <A>(use: (driver: FsDriver) => Effect.Effect<A, VolumeFsFailure>) =>
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
    // The watch keeps the image mounted (and the volume attached) for as long as it runs.
    watch: (path, recursive) => Stream.unwrapScoped(Effect.map(mounted, (driver) => driver.watch(path, recursive)))
  }
}
