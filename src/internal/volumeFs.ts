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
 * backend instance must share it, so quota-checked writes are serialised.
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

export interface VolumeFsOptions {
  /** Display name of the volume, used in errors. */
  readonly volume: string
  readonly driver: FsDriver
  /** The quota in bytes, if the volume has one. */
  readonly quotaBytes: Option.Option<number>
  /** Serialises quota-checked writes to one volume (shared by every `fs()` of it). */
  readonly writeLock: Effect.Semaphore
}

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

export const make = (options: VolumeFsOptions): VolumeFs => {
  const { driver, quotaBytes, volume, writeLock } = options

  /** Fails with `QuotaExceeded` if `growth` more bytes would not fit. */
  const checkQuota = (growth: number, usedBytes: number) =>
    Option.match(quotaBytes, {
      onNone: () => Effect.void,
      onSome: (quota) =>
        growth > 0 && usedBytes + growth > quota
          ? Effect.fail(new QuotaExceeded({ volume: volume, quotaBytes: quota, usedBytes, requestedBytes: growth }))
          : Effect.void
    })

  /** Runs a mutation that adds `growth` bytes under the volume's quota. */
  const withQuota = <A, E>(
    growth: Effect.Effect<number, VolumeFsFailure>,
    mutation: Effect.Effect<A, E>
  ): Effect.Effect<A, E | VolumeFsFailure> =>
    Option.isNone(quotaBytes)
      ? mutation
      : writeLock.withPermits(1)(
        Effect.gen(function*() {
          const bytes = yield* growth
          if (bytes > 0) yield* checkQuota(bytes, yield* driver.measure([]))
          return yield* mutation
        })
      )

  const read = Effect.fn("VolumeFs.read")(function*(path: string) {
    return yield* driver.read(yield* Paths.parseNonRoot(path, "read"))
  })

  const readToString = Effect.fn("VolumeFs.readToString")(function*(path: string) {
    const segments = yield* Paths.parseNonRoot(path, "read")
    const bytes = yield* driver.read(segments)
    return yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => new VolumeFsError({ path: Paths.format(segments), reason: "InvalidData", detail: "not valid UTF-8" })
    })
  })

  const readStream = (path: string, streamOptions?: { readonly chunkSize?: number }) => {
    const chunkSize = Math.max(1, Math.min(MAX_CHUNK_BYTES, Math.floor(streamOptions?.chunkSize ?? MAX_CHUNK_BYTES)))
    return Stream.unwrap(
      Effect.map(Paths.parseNonRoot(path, "readStream"), (segments) => driver.readStream(segments, chunkSize))
    )
  }

  const write = Effect.fn("VolumeFs.write")(function*(path: string, data: string | Uint8Array, options?: WriteOptions) {
    const segments = yield* Paths.parseNonRoot(path, "write")
    const mode = yield* writeMode(options)
    const bytes = toBytes(data)
    yield* withQuota(
      Effect.map(replacedBytes(driver, segments), (replaced) => bytes.byteLength - replaced),
      driver.write(segments, bytes, mode)
    )
  })

  const writeStream = Effect.fn("VolumeFs.writeStream")(function*(path: string, options?: WriteOptions) {
    const segments = yield* Paths.parseNonRoot(path, "writeStream")
    const mode = yield* writeMode(options)
    // With a quota, the stream holds the volume's write lock until it is closed (or its
    // scope ends), so the usage measured at open stays true while bytes arrive.
    let holdsLock = false
    const releaseLock = Effect.suspend(() => {
      if (!holdsLock) return Effect.void
      holdsLock = false
      return writeLock.release(1)
    })
    const budget = yield* Option.match(quotaBytes, {
      onNone: () => Effect.succeed(Option.none<{ readonly quota: number; readonly base: number; readonly used: number }>()),
      onSome: (quota) =>
        Effect.gen(function*() {
          yield* Effect.acquireRelease(
            Effect.tap(writeLock.take(1), () => {
              holdsLock = true
            }),
            () => releaseLock
          )
          const used = yield* driver.measure([])
          const replaced = yield* replacedBytes(driver, segments)
          return Option.some({ quota, base: replaced, used })
        })
    })
    const writer = yield* driver.openWriter(segments, mode)
    let written = 0
    let closed = false
    const sink: VolumeFsWriteSink = {
      write: (chunk) =>
        Effect.suspend(() => {
          if (closed) {
            return Effect.fail(new VolumeFsError({ path: Paths.format(segments), reason: "Io", detail: "write after close" }))
          }
          const bytes = toBytes(chunk)
          written += bytes.byteLength
          return Option.match(budget, {
            onNone: () => writer.write(bytes),
            onSome: ({ base, used }) => Effect.zipRight(checkQuota(written - base, used), writer.write(bytes))
          })
        }),
      close: () =>
        Effect.suspend(() => {
          if (closed) return Effect.void
          closed = true
          return Effect.ensuring(writer.commit, releaseLock)
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
    return yield* driver.list(yield* Paths.parse(path))
  })

  const mkdir = Effect.fn("VolumeFs.mkdir")(function*(path: string) {
    yield* driver.mkdir(yield* Paths.parse(path))
  })

  const remove = Effect.fn("VolumeFs.remove")(function*(path: string) {
    yield* driver.remove(yield* Paths.parseNonRoot(path, "remove"))
  })

  const removeDir = Effect.fn("VolumeFs.removeDir")(function*(path: string) {
    yield* driver.removeDir(yield* Paths.parseNonRoot(path, "removeDir"))
  })

  /** Both paths of a copy or rename, refusing a target inside the source. */
  const fromTo = (operation: string, from: string, to: string) =>
    Effect.gen(function*() {
      const source = yield* Paths.parseNonRoot(from, operation)
      const target = yield* Paths.parseNonRoot(to, operation)
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
    yield* driver.rename(source, target)
  })

  const symlink = Effect.fn("VolumeFs.symlink")(function*(target: string, path: string) {
    const segments = yield* Paths.parseNonRoot(path, "symlink")
    const stored = yield* validateTarget(target, path)
    // A link's size is its target's length, and it counts towards the quota like a file.
    yield* withQuota(Effect.succeed(Buffer.byteLength(stored)), driver.symlink(stored, segments))
  })

  const readlink = Effect.fn("VolumeFs.readlink")(function*(path: string) {
    return yield* driver.readlink(yield* Paths.parseNonRoot(path, "readlink"))
  })

  const chmod = Effect.fn("VolumeFs.chmod")(function*(path: string, mode: number) {
    const segments = yield* Paths.parse(path)
    yield* driver.chmod(segments, yield* validateMode(mode))
  })

  const watch = (path: string = "/", options?: WatchOptions) =>
    Stream.unwrap(Effect.map(Paths.parse(path), (segments) => driver.watch(segments, options?.recursive === true)))

  const stat = Effect.fn("VolumeFs.stat")(function*(path: string) {
    return yield* driver.stat(yield* Paths.parse(path))
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

  return {
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
}

/** `PathNotFound` for a normalised path (drivers share this spelling). */
export const notFound = (path: Paths.Segments) => new PathNotFound({ path: Paths.format(path) })
