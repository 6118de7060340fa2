/**
 * The backend-independent half of `VolumeFs`: path rules, quota enforcement, UTF-8,
 * sinks. Storage work is delegated to a backend's `FsDriver`.
 */
import { Effect, Option, Sink, Stream } from "effect"
import { InvalidConfig, InvalidPath, PathNotFound, QuotaExceeded, VolumeFsError } from "../VolumeError.js"
import type { VolumeFsFailure, VolumeFsReadFailure } from "../VolumeError.js"
import type { VolumeFs, VolumeFsWriteSink, WatchOptions, WriteOptions } from "../VolumeFs.js"
import { MAX_CHUNK_BYTES, MAX_MODE } from "../VolumeFs.js"
import type { FsDriver } from "./fsDriver.js"
import * as Paths from "./paths.js"

/**
 * One write lock per volume, created on first use: every `fs()` of a volume from one
 * backend instance must share it. It is held only to check and commit a quota-checked
 * change (never while user code runs); the bytes open writers have reserved belong to it.
 */
export const makeWriteLocks = () => {
  const locks = new Map<string, Effect.Semaphore>()
  return {
    lockOf: (key: string): Effect.Semaphore => {
      let lock = locks.get(key)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(key, lock)
      }
      return lock
    },
    /** Drops the lock of a volume that is gone for good. */
    forget: (key: string): void => void locks.delete(key)
  }
}

/** Bytes reserved by the open writers of each volume (keyed by the volume's write lock). */
const reservations = new WeakMap<Effect.Semaphore, { bytes: number }>()

const reservationOf = (lock: Effect.Semaphore): { bytes: number } => {
  let reserved = reservations.get(lock)
  if (reserved === undefined) {
    reserved = { bytes: 0 }
    reservations.set(lock, reserved)
  }
  return reserved
}

/**
 * How a backend keeps a volume's usage for quota checks, where it keeps an account (the
 * local backend: SQLite, shared by every process). Without one, quota checks measure the
 * volume through the driver (`measure([])`, O(1) on the memory and S3 backends).
 */
export interface UsageAccount {
  /**
   * Runs before every change of the volume's files (e.g. to persist the marker that makes
   * a crash in the middle of a change detectable). Cheap after the first call.
   */
  readonly prepare: Effect.Effect<void, VolumeFsFailure>
  /** Bytes the volume uses now, as far as the quota is concerned (O(1)). */
  readonly used: Effect.Effect<number, VolumeFsFailure>
  /**
   * Checks that `growth` more bytes fit under `quota` besides `alsoReserved` bytes held by
   * open writers, and holds them in the account (atomically across every process sharing
   * it); otherwise fails with `QuotaExceeded`.
   */
  readonly reserve: (
    growth: number,
    quota: number,
    alsoReserved: number
  ) => Effect.Effect<void, VolumeFsFailure | QuotaExceeded>
  /** After the change: gives back `growth` bytes; the account now holds what the change really did. */
  readonly settle: (growth: number) => Effect.Effect<void>
}

export interface VolumeFsOptions {
  /** Display name of the volume, used in errors. */
  readonly volume: string
  readonly driver: FsDriver
  /** The quota in bytes, if the volume has one. */
  readonly quotaBytes: Option.Option<number>
  /**
   * Serialises the check-and-commit step of quota-checked changes of one volume (shared
   * by every `fs()` of it). Never held while user code runs.
   */
  readonly writeLock: Effect.Semaphore
  /** The backend's usage account of the volume, if it keeps one. */
  readonly account?: UsageAccount | undefined
  /**
   * A temporary name (see `paths.ts`) this view may address as the top-level directory
   * `/<reserved>`: the staging area of an operation of the library's own (archive import).
   */
  readonly reserved?: string | undefined
  /**
   * Runs after every change the host makes (write, stream close, mkdir, remove, copy,
   * rename, symlink, chmod): the backend's coalesced `lastUsedAt` stamp (`useStamps.ts`).
   * Must be cheap and never fail.
   */
  readonly used?: Effect.Effect<void> | undefined
}

/** Key of {@link InternalVolumeFs}'s staging view (a symbol: not part of the public `VolumeFs`). */
export const Staging: unique symbol = Symbol.for("effect-volumes/VolumeFs/staging")

/**
 * What the library's own `VolumeFs` objects offer besides the public interface: a staging
 * view and times.
 */
export interface InternalVolumeFs extends VolumeFs {
  /**
   * The same volume (driver, quota, usage account and write lock) with the temporary name
   * `name` addressable as `/<name>`: a staging directory that `list` never shows to anyone,
   * no user path can name, and the sweep of dead writers' temporary files reclaims (its name
   * carries the pid). Atomic writes inside it work as everywhere else.
   */
  readonly [Staging]: (name: string) => InternalVolumeFs
  /** Sets the modification time of `path` itself where the store keeps settable times; a no-op elsewhere. */
  readonly setModified: (path: string, mtime: Date) => Effect.Effect<void, VolumeFsReadFailure>
}

/** The staging view of `fs` named `name` (a fresh `Paths.tempName()`), when `fs` is the library's own. */
export const stagingView = (fs: VolumeFs, name: string): Option.Option<InternalVolumeFs> =>
  Staging in fs ? Option.some((fs as InternalVolumeFs)[Staging](name)) : Option.none()

const encoder = new TextEncoder()

/** Permission bits as given, or `InvalidConfig` for anything outside `0..0o7777`. */
export const validateMode = (mode: number): Effect.Effect<number, InvalidConfig> =>
  Number.isInteger(mode) && mode >= 0 && mode <= MAX_MODE
    ? Effect.succeed(mode)
    : Effect.fail(
      new InvalidConfig({
        message: `mode ${typeof mode === "number" ? `0o${mode.toString(8)} (${mode})` : String(mode)} is not permission bits; use an integer from 0 to 0o7777, e.g. 0o644`
      })
    )

/** The validated mode of a write, or `undefined` for the default. */
const writeMode = (options: WriteOptions | undefined) =>
  options?.mode === undefined ? Effect.succeed(undefined) : validateMode(options.mode)

/** Longest symlink target Linux stores (`PATH_MAX` minus the NUL). */
const MAX_TARGET_BYTES = 4095

/** A link target is data, but the kernel refuses empty targets and NUL bytes. */
const validateTarget = (target: string, path: string) =>
  typeof target === "string" && target.length > 0 && !target.includes("\0") &&
    Buffer.byteLength(target) <= MAX_TARGET_BYTES
    ? Effect.succeed(target)
    : Effect.fail(
      new InvalidPath({
        path,
        reason: `a symlink target must be 1 to ${MAX_TARGET_BYTES} bytes without NUL, got ${JSON.stringify(String(target))}`
      })
    )

/**
 * Drivers raise `QuotaExceeded` never (quota is enforced here only), so an operation that
 * adds no bytes can promise the narrower union.
 */
const noQuota = <A, R>(effect: Effect.Effect<A, VolumeFsFailure, R>): Effect.Effect<A, VolumeFsReadFailure, R> =>
  effect as Effect.Effect<A, VolumeFsReadFailure, R>

const toBytes = (data: string | Uint8Array): Uint8Array => typeof data === "string" ? encoder.encode(data) : data

/** Size a write to `path` would replace: the current file's bytes, or 0. */
const replacedBytes = (driver: FsDriver, path: Paths.NonRootSegments) =>
  driver.stat(path).pipe(
    Effect.map((meta) => (meta.kind === "directory" ? 0 : meta.size)),
    Effect.catchTag("PathNotFound", () => Effect.succeed(0)),
    Effect.catchIf(
      (e): e is VolumeFsError => e._tag === "VolumeFsError" && e.reason === "NotADirectory",
      () => Effect.succeed(0)
    )
  )

export const make = (options: VolumeFsOptions): InternalVolumeFs => {
  const { driver, quotaBytes, volume, writeLock } = options
  /** Path rules; the staging view may also address its own reserved name. */
  const parse = (path: string) => Paths.parse(path, options.reserved)
  const parseNonRoot = (path: string, operation: string) => Paths.parseNonRoot(path, operation, options.reserved)
  /** Bytes reserved by this volume's open writers (all of its `fs()` in this backend). */
  const reserved = reservationOf(writeLock)

  const exceeded = (quota: number, usedBytes: number, growth: number) =>
    new QuotaExceeded({ volume, quotaBytes: quota, usedBytes, requestedBytes: growth })

  /** The account of a backend that keeps none: measure, and rely on the write lock. */
  const measuredAccount: UsageAccount = {
    prepare: Effect.void,
    used: driver.measure([]),
    reserve: (growth, quota, alsoReserved) =>
      Effect.flatMap(driver.measure([]), (used) =>
        used + alsoReserved + growth > quota ? Effect.fail(exceeded(quota, used, growth)) : Effect.void),
    settle: () => Effect.void
  }
  const account = options.account ?? measuredAccount
  const used = options.used ?? Effect.void

  /** A change of the volume's files that moves `lastUsedAt` once it succeeded. */
  const stamped = <A, E>(change: Effect.Effect<A, E>): Effect.Effect<A, E> => Effect.tap(change, () => used)

  /** Runs a change of the volume's files, after the account's `prepare`. */
  const changing = <A, E>(mutation: Effect.Effect<A, E>): Effect.Effect<A, E | VolumeFsFailure> =>
    Effect.zipRight(account.prepare, stamped(mutation))

  /**
   * Runs a change that adds `growth` bytes under the volume's quota: the lock is held to
   * check, change and settle (no user code runs under it) and taken interruptibly; once
   * the bytes are reserved, the account is settled whatever happens to the change.
   */
  const commitUnderQuota = <A, E>(
    quota: number,
    growth: Effect.Effect<number, VolumeFsFailure>,
    mutation: Effect.Effect<A, E>
  ): Effect.Effect<A, E | VolumeFsFailure> =>
    writeLock.withPermits(1)(
      Effect.gen(function*() {
        const bytes = yield* growth
        if (bytes <= 0) return yield* mutation
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.zipRight(
            restore(account.reserve(bytes, quota, reserved.bytes)),
            Effect.ensuring(restore(mutation), account.settle(bytes))
          )
        )
      })
    )

  /** Runs a mutation that adds `growth` bytes under the volume's quota. */
  const withQuota = <A, E>(
    growth: Effect.Effect<number, VolumeFsFailure>,
    mutation: Effect.Effect<A, E>
  ): Effect.Effect<A, E | VolumeFsFailure> =>
    changing(Option.match(quotaBytes, {
      onNone: () => mutation,
      onSome: (quota) => commitUnderQuota(quota, growth, mutation)
    }))

  const read = Effect.fn("VolumeFs.read")(function*(path: string) {
    return yield* driver.read(yield* parseNonRoot(path, "read"))
  })

  const readToString = Effect.fn("VolumeFs.readToString")(function*(path: string) {
    const segments = yield* parseNonRoot(path, "read")
    const bytes = yield* driver.read(segments)
    return yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => new VolumeFsError({ path: Paths.format(segments), reason: "InvalidData", detail: "not valid UTF-8" })
    })
  })

  const readStream = (path: string, streamOptions?: { readonly chunkSize?: number }) => {
    const chunkSize = Math.max(1, Math.min(MAX_CHUNK_BYTES, Math.floor(streamOptions?.chunkSize ?? MAX_CHUNK_BYTES)))
    return Stream.unwrap(
      Effect.map(parseNonRoot(path, "readStream"), (segments) => driver.readStream(segments, chunkSize))
    )
  }

  const write = Effect.fn("VolumeFs.write")(function*(path: string, data: string | Uint8Array, options?: WriteOptions) {
    const segments = yield* parseNonRoot(path, "write")
    const mode = yield* writeMode(options)
    const bytes = toBytes(data)
    yield* withQuota(
      Effect.map(replacedBytes(driver, segments), (replaced) => bytes.byteLength - replaced),
      driver.write(segments, bytes, mode)
    )
  })

  const writeStream = Effect.fn("VolumeFs.writeStream")(function*(path: string, options?: WriteOptions) {
    const segments = yield* parseNonRoot(path, "writeStream")
    const mode = yield* writeMode(options)
    yield* account.prepare
    // With a quota, the stream reserves the bytes it writes (beyond the size of the file it
    // replaces) as they arrive, under the lock only for that check; `close()` checks and
    // commits under the lock. No lock is held between calls, so other writers, reads and
    // interruption are never blocked by an open stream.
    const replacedAtOpen = Option.isSome(quotaBytes) ? yield* replacedBytes(driver, segments) : 0
    let mine = 0
    const giveBack = Effect.sync(() => {
      reserved.bytes -= mine
      mine = 0
    })
    yield* Effect.addFinalizer(() => giveBack)
    const reserveUpTo = (quota: number, written: number) =>
      writeLock.withPermits(1)(Effect.gen(function*() {
        const extra = written - replacedAtOpen - mine
        if (extra <= 0) return
        const used = yield* account.used
        if (used + reserved.bytes + extra > quota) {
          return yield* exceeded(quota, used, written - replacedAtOpen)
        }
        reserved.bytes += extra
        mine += extra
      }))
    const writer = yield* driver.openWriter(segments, mode)
    let written = 0
    let closed = false
    const commit = stamped(Option.match(quotaBytes, {
      onNone: () => writer.commit,
      onSome: (quota) =>
        commitUnderQuota(
          quota,
          // The file may have changed since the stream was opened: charge against it as it is now.
          Effect.tap(Effect.map(replacedBytes(driver, segments), (replaced) => written - replaced), () => giveBack),
          writer.commit
        )
    }))
    const sink: VolumeFsWriteSink = {
      write: (chunk) =>
        Effect.suspend(() => {
          if (closed) {
            return Effect.fail(new VolumeFsError({ path: Paths.format(segments), reason: "Io", detail: "write after close" }))
          }
          const bytes = toBytes(chunk)
          written += bytes.byteLength
          return Option.match(quotaBytes, {
            onNone: () => writer.write(bytes),
            onSome: (quota) => Effect.zipRight(reserveUpTo(quota, written), writer.write(bytes))
          })
        }),
      close: () =>
        Effect.suspend(() => {
          if (closed) return Effect.void
          closed = true
          return commit
        })
    }
    return sink
  })

  const sink = (path: string, options?: WriteOptions): Sink.Sink<void, Uint8Array, never, VolumeFsFailure | InvalidConfig> =>
    Sink.unwrapScoped(
      Effect.map(writeStream(path, options), (writer) =>
        Sink.forEach((chunk: Uint8Array) => writer.write(chunk)).pipe(Sink.mapEffect(() => writer.close())))
    )

  const list = Effect.fn("VolumeFs.list")(function*(path: string = "/") {
    return yield* driver.list(yield* parse(path))
  })

  const mkdir = Effect.fn("VolumeFs.mkdir")(function*(path: string) {
    yield* stamped(driver.mkdir(yield* parse(path)))
  })

  const remove = Effect.fn("VolumeFs.remove")(function*(path: string) {
    yield* changing(driver.remove(yield* parseNonRoot(path, "remove")))
  })

  const removeDir = Effect.fn("VolumeFs.removeDir")(function*(path: string) {
    yield* changing(driver.removeDir(yield* parseNonRoot(path, "removeDir")))
  })

  /** Both paths of a copy or rename, refusing a target inside the source. */
  const fromTo = (operation: string, from: string, to: string) =>
    Effect.gen(function*() {
      const source = yield* parseNonRoot(from, operation)
      const target = yield* parseNonRoot(to, operation)
      if (Paths.isWithin(target, source) && !(operation === "rename" && target.length === source.length)) {
        return yield* new InvalidPath({
          path: to,
          reason: target.length === source.length
            ? `${operation} onto itself`
            : `${operation} target lies inside the source ${Paths.format(source)}`
        })
      }
      return { source, target } as const
    })

  const copy = Effect.fn("VolumeFs.copy")(function*(from: string, to: string) {
    const { source, target } = yield* fromTo("copy", from, to)
    yield* withQuota(
      Effect.gen(function*() {
        const added = yield* driver.measure(source)
        const replaced = yield* replacedBytes(driver, target)
        return added - replaced
      }),
      driver.copy(source, target)
    )
  })

  const rename = Effect.fn("VolumeFs.rename")(function*(from: string, to: string) {
    const { source, target } = yield* fromTo("rename", from, to)
    if (source.length === target.length && Paths.isWithin(target, source)) {
      // Renaming a path onto itself changes nothing, but the source must exist.
      yield* driver.stat(source)
      return
    }
    yield* changing(driver.rename(source, target))
  })

  const symlink = Effect.fn("VolumeFs.symlink")(function*(target: string, path: string) {
    const segments = yield* parseNonRoot(path, "symlink")
    const stored = yield* validateTarget(target, path)
    // A link's size is its target's length, and it counts towards the quota like a file.
    yield* withQuota(Effect.succeed(Buffer.byteLength(stored)), changing(driver.symlink(stored, segments)))
  })

  const readlink = Effect.fn("VolumeFs.readlink")(function*(path: string) {
    return yield* driver.readlink(yield* parseNonRoot(path, "readlink"))
  })

  const chmod = Effect.fn("VolumeFs.chmod")(function*(path: string, mode: number) {
    const segments = yield* parse(path)
    yield* stamped(driver.chmod(segments, yield* validateMode(mode)))
  })

  const watch = (path: string = "/", options?: WatchOptions) =>
    Stream.unwrap(Effect.map(parse(path), (segments) => driver.watch(segments, options?.recursive === true)))

  const stat = Effect.fn("VolumeFs.stat")(function*(path: string) {
    return yield* driver.stat(yield* parse(path))
  })

  const exists = Effect.fn("VolumeFs.exists")(function*(path: string) {
    return yield* stat(path).pipe(
      Effect.as(true),
      Effect.catchTag("PathNotFound", () => Effect.succeed(false)),
      Effect.catchIf(
        (e): e is VolumeFsError => e._tag === "VolumeFsError" && e.reason === "NotADirectory",
        () => Effect.succeed(false)
      )
    )
  })

  const setModified = Effect.fn("VolumeFs.setModified")(function*(path: string, mtime: Date) {
    const segments = yield* parse(path)
    if (driver.setModified !== undefined) yield* driver.setModified(segments, mtime)
  })

  const fs: InternalVolumeFs = {
    [Staging]: (name) => make({ ...options, reserved: name }),
    setModified: (path, mtime) => noQuota(setModified(path, mtime)),
    volume,
    read: (path) => noQuota(read(path)),
    readToString: (path) => noQuota(readToString(path)),
    readStream: (path, options) => Stream.mapError(readStream(path, options), (e) => e as VolumeFsReadFailure),
    // Without options no mode is validated, so the overloads without `InvalidConfig` hold.
    write: write as VolumeFs["write"],
    writeStream: writeStream as VolumeFs["writeStream"],
    sink: sink as VolumeFs["sink"],
    symlink,
    readlink: (path) => noQuota(readlink(path)),
    chmod: (path, mode) => chmod(path, mode) as Effect.Effect<void, VolumeFsReadFailure | InvalidConfig>,
    watch: (path, options) => Stream.mapError(watch(path, options), (e) => e as VolumeFsReadFailure),
    list: (path) => noQuota(list(path)),
    mkdir: (path) => noQuota(mkdir(path)),
    remove: (path) => noQuota(remove(path)),
    removeDir: (path) => noQuota(removeDir(path)),
    copy,
    rename: (from, to) => noQuota(rename(from, to)),
    stat: (path) => noQuota(stat(path)),
    exists: (path) => noQuota(exists(path))
  }
  return fs
}

/** `PathNotFound` for a normalised path (drivers share this spelling). */
export const notFound = (path: Paths.Segments) => new PathNotFound({ path: Paths.format(path) })
