/**
 * Holders of cloud volumes: lease objects in the bucket, so every machine sharing the
 * store sees who holds a volume (SPEC §10 "Holders", docs/volumes.md "Holders").
 *
 * ```
 * <prefix>holders/<name-key>/lease-<token>   {"holder","mode","expiresAt"}  one per holder
 * <prefix>holders/<name-key>/guard-<token>   {"expiresAt"}                  a remove/rename in progress
 * ```
 *
 * A holder writes its lease and renews it every third of the lease time from a fiber in
 * its scope; the scope's end deletes it. A holder that crashes stops renewing, and its
 * lease counts for nobody once `expiresAt` has passed (it is deleted by whoever sees it).
 *
 * Remove and rename race with a new holder without a lock: each side first writes its
 * own object, then looks for the other's (`guard` writes a guard and then reads the
 * leases; `acquire` writes a lease and then reads the guards). The store reads its own
 * writes, so at least one side sees the other: either the remove refuses with
 * `VolumeInUse`, or the holder withdraws its lease and waits for the remove to finish.
 * Expiry times are compared with this machine's clock, so machines' clocks must agree to
 * well within the lease time.
 */
import { Clock, Duration, Effect, Option, Schema } from "effect"
import type { Scope } from "effect"
import type { HoldMode, VolumeHolders } from "../../VolumeBackend.js"
import type { StorageError } from "../../VolumeError.js"
import { VolumeInUse, VolumeNotFound } from "../../VolumeError.js"
import { nameKey } from "../../VolumeSpec.js"
import type { S3 } from "./client.js"
import * as Records from "./records.js"

/** Default lease time: a crashed holder blocks remove/rename for at most this long. */
export const DEFAULT_LEASE_TTL: Duration.Duration = Duration.seconds(30)

/** Attempts of `acquire` while a remove or rename of the volume is in progress. */
const ACQUIRE_ATTEMPTS = 50
const GUARD_PAUSE = "50 millis"

const Lease = Schema.Struct({
  holder: Schema.String,
  mode: Schema.Literal("rw", "ro", "exclusive"),
  expiresAt: Schema.Number
})
const LeaseJson = Schema.parseJson(Lease)
const decodeLease = Schema.decodeUnknownOption(LeaseJson)
const encodeLease = Schema.encodeSync(LeaseJson)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

export interface Leases {
  readonly service: VolumeHolders
  /**
   * Runs `effect` (a remove or rename of `name`) unless a live lease holds the volume:
   * then it fails with `VolumeInUse`. Holders arriving meanwhile wait until it is done.
   */
  readonly guard: <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | VolumeInUse | StorageError, R>
}

export interface LeaseSettings {
  /** `<prefix>` of the store, `""` or ending in `/`. */
  readonly base: string
  /** Whether volume `name` exists (a half-renamed record counts as its resolution says). */
  readonly exists: (name: string) => Effect.Effect<boolean, StorageError>
  readonly ttl: Duration.Duration
}

export const make = (s3: S3, settings: LeaseSettings): Leases => {
  const ttlMillis = Duration.toMillis(settings.ttl)
  const prefixOf = (name: string) => `${settings.base}holders/${nameKey(name)}/`
  const body = (lease: typeof Lease.Type) => encoder.encode(encodeLease(lease))

  /** The live objects of one kind below a volume's holder prefix; lapsed ones are deleted. */
  const live = (name: string, kind: "lease" | "guard") =>
    Effect.gen(function*() {
      const prefix = prefixOf(name) + kind + "-"
      const listing = yield* s3.list(prefix)
      const now = yield* Clock.currentTimeMillis
      const found = yield* Effect.forEach(listing.objects, (object) =>
        Effect.map(s3.get(object.key), (got) =>
          Option.flatMap(got, (value) => decodeLease(decoder.decode(value.bytes))).pipe(
            Option.map((lease) => ({ key: object.key, lease }))
          )), { concurrency: 8 })
      const present = found.flatMap((entry) => Option.isSome(entry) ? [entry.value] : [])
      const lapsed = present.filter((entry) => entry.lease.expiresAt <= now)
      // A holder that stopped renewing crashed (or lost the store for a whole lease time).
      if (lapsed.length > 0) yield* Effect.ignore(s3.deleteMany(lapsed.map((entry) => entry.key)))
      return present.filter((entry) => entry.lease.expiresAt > now)
    })

  const exists = settings.exists

  const writeLease = (key: string, holder: string, mode: HoldMode) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => s3.put(key, body({ holder, mode, expiresAt: now + ttlMillis })))

  const take = (name: string, holder: string, mode: HoldMode) =>
    Effect.gen(function*() {
      for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
        if (!(yield* exists(name))) return yield* new VolumeNotFound({ volume: name })
        const key = `${prefixOf(name)}lease-${Records.token()}`
        yield* writeLease(key, holder, mode)
        const guards = yield* live(name, "guard")
        // Re-read after the lease is visible: a remove that finished before it is seen here.
        const stillThere = guards.length === 0 && (yield* exists(name))
        if (stillThere) {
          // An exclusive holder coexists with nobody. Both sides look after writing their own
          // lease, so of two racing holders at least one sees the other (both may back off).
          const others = (yield* live(name, "lease")).filter((entry) => entry.key !== key)
          const conflict = others.some((entry) => entry.lease.mode === "exclusive" || mode === "exclusive")
          if (!conflict) return key
          yield* s3.delete(key)
          return yield* new VolumeInUse({ volume: name, holders: others.map((entry) => entry.lease.holder) })
        }
        yield* s3.delete(key)
        if (guards.length === 0) return yield* new VolumeNotFound({ volume: name })
        yield* Effect.sleep(GUARD_PAUSE)
      }
      return yield* new VolumeInUse({ volume: name, holders: ["a remove or rename in progress"] })
    })

  const renew = (key: string, holder: string, mode: HoldMode) =>
    writeLease(key, holder, mode).pipe(
      Effect.catchAll((error) => Effect.logWarning(`could not renew the lease ${key}`, error)),
      Effect.delay(Duration.millis(ttlMillis / 3)),
      Effect.forever
    )

  const acquire = (
    name: string,
    holder: string,
    mode: HoldMode
  ): Effect.Effect<void, VolumeInUse | VolumeNotFound | StorageError, Scope.Scope> =>
    Effect.gen(function*() {
      const key = yield* Effect.acquireRelease(
        take(name, holder, mode),
        (key) => s3.delete(key).pipe(Effect.catchAll((error) => Effect.logWarning(`could not delete the lease ${key}`, error)))
      )
      // Forked after the release is registered, so it stops before the lease is deleted.
      yield* Effect.forkScoped(renew(key, holder, mode))
    })

  const guard = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function*() {
      const key = `${prefixOf(name)}guard-${Records.token()}`
      const now = yield* Clock.currentTimeMillis
      yield* s3.put(key, body({ holder: "guard", mode: "rw", expiresAt: now + ttlMillis }))
      return yield* Effect.gen(function*() {
        const holders = yield* live(name, "lease")
        if (holders.length > 0) {
          return yield* new VolumeInUse({ volume: name, holders: holders.map((entry) => entry.lease.holder) })
        }
        return yield* effect
      }).pipe(Effect.ensuring(Effect.ignore(s3.delete(key))))
    })

  return {
    service: {
      acquire,
      list: (name) => Effect.map(live(name, "lease"), (leases) => leases.map((entry) => entry.lease.holder))
    },
    guard
  }
}

/** The store's prefix from its records prefix (`<prefix>volumes/`). */
export const baseOf = (recordsPrefix: string): string => recordsPrefix.slice(0, -"volumes/".length)
