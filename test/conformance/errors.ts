/**
 * SPEC §4: errors are Schema.TaggedError instances that survive serialisation and carry
 * messages a person can act on.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Volume from "../../src/Volume.js"
import {
  InvalidConfig,
  InvalidPath,
  PathNotFound,
  QuotaExceeded,
  SandboxError,
  StorageError,
  Unsupported,
  SnapshotAlreadyExists,
  SnapshotNotFound,
  VolumeAlreadyExists,
  VolumeFsError,
  VolumeInUse,
  VolumeNotFound
} from "../../src/VolumeError.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, expectFsError } from "./support.js"

/** An error class with its schema (every class of VolumeError.ts is one). */
type ErrorSchema<A> = Schema.Schema<A, any, never> & (new(...args: any) => A)

/** Encodes to JSON text and decodes back; returns the decoded instance. */
const roundTrip = <A extends { readonly _tag: string }>(schema: ErrorSchema<A>, error: A): A => {
  const json = JSON.stringify(Schema.encodeSync(schema)(error))
  const decoded = Schema.decodeUnknownSync(schema)(JSON.parse(json))
  assert.instanceOf(decoded, schema)
  assert.strictEqual(decoded._tag, error._tag)
  return decoded
}

/** A message a person can read: a sentence that mentions `subject`. */
const assertMessage = (error: { readonly message: string }, subject: string) => {
  assert.isAbove(error.message.length, subject.length + 8, `message too short: ${error.message}`)
  assert.include(error.message, " ", `not a sentence: ${error.message}`)
  assert.include(error.message, subject)
}

export const errorsTests = ({ test }: Context) => {
  describe("errors", () => {
    test("every error class round-trips through its Schema and JSON", () =>
      Effect.sync(() => {
        const notFound = roundTrip(VolumeNotFound, new VolumeNotFound({ volume: "cache" }))
        assert.strictEqual(notFound.volume, "cache")
        assert.strictEqual(roundTrip(VolumeAlreadyExists, new VolumeAlreadyExists({ volume: "cache" })).volume, "cache")
        assert.deepStrictEqual(
          roundTrip(VolumeInUse, new VolumeInUse({ volume: "cache", holders: ["sandbox api"] })).holders,
          ["sandbox api"]
        )
        assert.strictEqual(roundTrip(InvalidConfig, new InvalidConfig({ message: "bad name" })).message, "bad name")
        const unsupported = roundTrip(Unsupported, new Unsupported({ operation: "path()", backend: "cloud" }))
        assert.deepStrictEqual([unsupported.operation, unsupported.backend], ["path()", "cloud"])
        const invalidPath = roundTrip(InvalidPath, new InvalidPath({ path: "../x", reason: "climbs above the root" }))
        assert.deepStrictEqual([invalidPath.path, invalidPath.reason], ["../x", "climbs above the root"])
        assert.strictEqual(roundTrip(PathNotFound, new PathNotFound({ path: "/a" })).path, "/a")
        const quota = roundTrip(
          QuotaExceeded,
          new QuotaExceeded({ volume: "q", quotaBytes: 1024, usedBytes: 1000, requestedBytes: 100 })
        )
        assert.deepStrictEqual([quota.volume, quota.quotaBytes, quota.usedBytes, quota.requestedBytes], ["q", 1024, 1000, 100])
        const fsError = roundTrip(VolumeFsError, new VolumeFsError({ path: "/f", reason: "NoSpace" }))
        assert.deepStrictEqual([fsError.path, fsError.reason], ["/f", "NoSpace"])
        assert.strictEqual(
          roundTrip(StorageError, new StorageError({ message: "db locked", cause: new Error("SQLITE_BUSY") })).message,
          "db locked"
        )
        const sandbox = roundTrip(SandboxError, new SandboxError({ sandbox: "api", reason: "Start", message: "no image" }))
        assert.deepStrictEqual([sandbox.sandbox, sandbox.reason], ["api", "Start"])
      }))

    test("every error prints as its class name (no field shadows Error.name)", () =>
      Effect.sync(() => {
        const errors = [
          new VolumeNotFound({ volume: "cache" }),
          new VolumeAlreadyExists({ volume: "cache" }),
          new VolumeInUse({ volume: "cache", holders: [] }),
          new QuotaExceeded({ volume: "q", quotaBytes: 1, usedBytes: 1, requestedBytes: 1 }),
          new SnapshotNotFound({ volume: "cache", snapshot: "s1" }),
          new SnapshotAlreadyExists({ volume: "cache", snapshot: "s1" })
        ]
        for (const error of errors) {
          assert.strictEqual(error.name, error._tag)
          assert.match(String(error), new RegExp(`^${error._tag}: `))
        }
        const snapshot = roundTrip(SnapshotNotFound, new SnapshotNotFound({ volume: "cache", snapshot: "s1" }))
        assert.deepStrictEqual([snapshot.volume, snapshot.snapshot], ["cache", "s1"])
        const storage = roundTrip(StorageError, new StorageError({ message: "locked", reason: "Busy", operation: "sqlite" }))
        assert.deepStrictEqual([storage.reason, storage.operation], ["Busy", "sqlite"])
        assert.strictEqual(new StorageError({ message: "x" }).reason, "Unknown")
      }))

    test("errors raised by the backend are the Schema classes and serialise", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("errs", (b) => b.quota(1))
        const fs = vol.fs()
        yield* fs.mkdir("dir")

        const notFound = yield* Volume.get("missing-vol").pipe(expectFailure("VolumeNotFound"))
        assert.instanceOf(notFound, VolumeNotFound)
        assert.strictEqual(roundTrip(VolumeNotFound, notFound).volume, "missing-vol")

        const exists = yield* createVolume("errs").pipe(expectFailure("VolumeAlreadyExists"))
        assert.instanceOf(exists, VolumeAlreadyExists)
        assert.strictEqual(roundTrip(VolumeAlreadyExists, exists).volume, "errs")

        const invalid = yield* Volume.builder("bad/name").create().pipe(expectFailure("InvalidConfig"))
        assert.instanceOf(invalid, InvalidConfig)
        assert.strictEqual(roundTrip(InvalidConfig, invalid).message, invalid.message)

        const missing = yield* fs.read("dir/missing.txt").pipe(expectFailure("PathNotFound"))
        assert.instanceOf(missing, PathNotFound)
        assert.strictEqual(roundTrip(PathNotFound, missing).path, "/dir/missing.txt")

        const badPath = yield* fs.write("../x", "x").pipe(expectFailure("InvalidPath"))
        assert.instanceOf(badPath, InvalidPath)
        assert.strictEqual(roundTrip(InvalidPath, badPath).path, "../x")

        const quota = yield* fs.write("big", new Uint8Array(2 * 1024 * 1024)).pipe(expectFailure("QuotaExceeded"))
        assert.instanceOf(quota, QuotaExceeded)
        assert.strictEqual(roundTrip(QuotaExceeded, quota).requestedBytes, 2 * 1024 * 1024)

        const isDir = yield* fs.read("dir").pipe(expectFsError("IsADirectory"))
        assert.instanceOf(isDir, VolumeFsError)
        assert.strictEqual(roundTrip(VolumeFsError, isDir).reason, "IsADirectory")
      }))

    test("messages are sentences naming the volume or path", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("errs", (b) => b.quota(1))).fs()
        yield* fs.mkdir("dir")
        assertMessage(yield* Volume.get("missing-vol").pipe(expectFailure("VolumeNotFound")), "missing-vol")
        assertMessage(yield* Volume.remove("missing-vol").pipe(expectFailure("VolumeNotFound")), "missing-vol")
        assertMessage(yield* createVolume("errs").pipe(expectFailure("VolumeAlreadyExists")), "errs")
        assertMessage(yield* Volume.builder("bad/name").create().pipe(expectFailure("InvalidConfig")), "bad/name")
        assertMessage(yield* fs.read("dir/missing.txt").pipe(expectFailure("PathNotFound")), "/dir/missing.txt")
        assertMessage(yield* fs.write("../x", "x").pipe(expectFailure("InvalidPath")), "../x")
        assertMessage(yield* fs.write("big", new Uint8Array(2 * 1024 * 1024)).pipe(expectFailure("QuotaExceeded")), "errs")
        assertMessage(yield* fs.read("dir").pipe(expectFsError("IsADirectory")), "/dir")
        const unsupported = yield* Volume.getDefault().pipe(Effect.flip, Effect.orElseSucceed(() => undefined))
        if (unsupported !== undefined && unsupported._tag === "Unsupported") {
          assert.isAbove(unsupported.message.length, 10)
        }
      }))
  })
}
