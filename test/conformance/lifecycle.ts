/**
 * SPEC §2: building, validating, creating, getting, listing and removing volumes.
 */
import { assert, describe } from "@effect/vitest"
import { DateTime, Effect, Either, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Volume from "../../src/Volume.js"
import { VolumeNotFound } from "../../src/VolumeError.js"
import type { VolumeFsFailure } from "../../src/VolumeError.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, MiB } from "./support.js"

/** One row of the validation table: a builder that must be refused, and the field the message must name. */
interface InvalidCase {
  readonly title: string
  readonly builder: () => Volume.VolumeBuilder
  readonly field: string
}

const invalidCases: ReadonlyArray<InvalidCase> = [
  { title: "an empty name", builder: () => Volume.builder(""), field: "name" },
  { title: "a name of 129 characters", builder: () => Volume.builder("a".repeat(129)), field: "name" },
  { title: "a name starting with -", builder: () => Volume.builder("-cache"), field: "name" },
  { title: "a name starting with .", builder: () => Volume.builder(".cache"), field: "name" },
  { title: "a name containing /", builder: () => Volume.builder("a/b"), field: "name" },
  { title: "a name containing a space", builder: () => Volume.builder("a b"), field: "name" },
  { title: "a non-ASCII name", builder: () => Volume.builder("café"), field: "name" },
  { title: "a directory volume with a size", builder: () => Volume.builder("v").directory().size(64), field: "size" },
  { title: "a disk volume without a size", builder: () => Volume.builder("v").disk(), field: "size" },
  { title: "a disk volume of 63 MiB", builder: () => Volume.builder("v").disk().size(63), field: "size" },
  { title: "a disk volume of a fractional size", builder: () => Volume.builder("v").disk().size(64.5), field: "size" },
  { title: "a disk volume with a quota", builder: () => Volume.builder("v").disk().size(64).quota(10), field: "quota" },
  { title: "a quota of 0", builder: () => Volume.builder("v").quota(0), field: "quota" },
  { title: "a quota of -1", builder: () => Volume.builder("v").quota(-1), field: "quota" },
  { title: "a quota of 1.5", builder: () => Volume.builder("v").quota(1.5), field: "quota" },
  { title: "an empty label key", builder: () => Volume.builder("v").label("", "x"), field: "label" },
  { title: "a label key of 64 characters", builder: () => Volume.builder("v").label("k".repeat(64), "x"), field: "label" },
  { title: "a label key with a control character", builder: () => Volume.builder("v").label("a\nb", "x"), field: "label" },
  { title: "a label key with DEL", builder: () => Volume.builder("v").label("a\u007fb", "x"), field: "label" },
  { title: "a label value of 256 characters", builder: () => Volume.builder("v").label("k", "v".repeat(256)), field: "value" }
]

export const lifecycleTests = ({ options, test }: Context) => {
  describe("builder", () => {
    test("every setter returns a new builder and leaves the original unchanged", () =>
      Effect.sync(() => {
        const base = Volume.builder("base")
        const quota = base.quota(10)
        const labelled = quota.label("team", "a")
        const disk = base.disk().size(64)
        const baseSpec = base.build()
        assert.strictEqual(baseSpec.kind, "directory")
        assert.isTrue(Option.isNone(baseSpec.quotaMib))
        assert.isTrue(Option.isNone(baseSpec.capacityMib))
        assert.deepStrictEqual(baseSpec.labels, [])
        assert.deepStrictEqual(quota.build().quotaMib, Option.some(10))
        assert.deepStrictEqual(quota.build().labels, [])
        assert.deepStrictEqual(labelled.build().labels, [["team", "a"]])
        assert.strictEqual(disk.build().kind, "disk")
        assert.deepStrictEqual(disk.build().capacityMib, Option.some(64))
        assert.notStrictEqual(base, quota)
      }))

    test("build() does not validate", () =>
      Effect.sync(() => {
        const spec = Volume.builder("").disk().quota(0).label("", "x").build()
        assert.strictEqual(spec.name, "")
        assert.strictEqual(spec.kind, "disk")
        assert.deepStrictEqual(spec.quotaMib, Option.some(0))
        assert.deepStrictEqual(spec.labels, [["", "x"]])
      }))
  })

  describe("create validation", () => {
    for (const { builder, field, title } of invalidCases) {
      test(`refuses ${title} with InvalidConfig naming the ${field}`, () =>
        Effect.gen(function*() {
          const error = yield* builder().create().pipe(expectFailure("InvalidConfig"))
          assert.include(error.message.toLowerCase(), field)
          assert.lengthOf(yield* Volume.list(), 0, "nothing is created")
        }))
    }

    test("the limits are inclusive: 128-char name, 63-char key, 255-char value, quota 1, disk 64 MiB", () =>
      Effect.gen(function*() {
        const name = "n".repeat(128)
        const vol = yield* Volume.builder(name).quota(1).label("k".repeat(63), "v".repeat(255)).create()
        assert.strictEqual(vol.name, name)
        assert.deepStrictEqual(vol.labels, [["k".repeat(63), "v".repeat(255)]])
        assert.strictEqual((yield* Volume.get(name)).name, name)
        if (options.supportsDisk) {
          const disk = yield* Volume.builder("d").disk().size(64).create()
          assert.deepStrictEqual(disk.capacityBytes, Option.some(64 * MiB))
        }
      }))

    test("a repeated label key keeps the last value", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("v", (b) => b.label("env", "dev").label("team", "a").label("env", "prod"))
        assert.deepStrictEqual(new Map(vol.labels), new Map([["env", "prod"], ["team", "a"]]))
        assert.lengthOf(vol.labels, 2)
        const got = yield* Volume.get("v")
        assert.deepStrictEqual(new Map(got.labels), new Map([["env", "prod"], ["team", "a"]]))
        assert.lengthOf(yield* Volume.list({ labels: { env: "prod" } }), 1)
        assert.lengthOf(yield* Volume.list({ labels: { env: "dev" } }), 0)
      }))

    test("Volume.create(spec) creates the built spec", () =>
      Effect.gen(function*() {
        const vol = yield* Volume.create(Volume.builder("from-spec").quota(5).label("a", "b").build())
        assert.strictEqual(vol.name, "from-spec")
        assert.deepStrictEqual(vol.quotaMib, Option.some(5))
        const got = yield* Volume.get("from-spec")
        assert.deepStrictEqual(got.quotaMib, Option.some(5))
        assert.deepStrictEqual(got.labels, [["a", "b"]])
      }))

    if (!options.supportsDisk) {
      test("disk volumes are refused with Unsupported and leave nothing behind", () =>
        Effect.gen(function*() {
          yield* Volume.builder("d").disk().size(64).create().pipe(expectFailure("Unsupported"))
          yield* Volume.get("d").pipe(expectFailure("VolumeNotFound"))
        }))
    }
  })

  describe("create / get", () => {
    test("the created handle describes the volume", () =>
      Effect.gen(function*() {
        const before = DateTime.unsafeNow()
        const vol = yield* createVolume("cache", (b) => b.quota(20).label("team", "a"))
        const after = DateTime.unsafeNow()
        assert.strictEqual(vol.name, "cache")
        assert.strictEqual(vol.kind, "directory")
        assert.strictEqual(vol.backendKind, options.backendKind)
        assert.deepStrictEqual(vol.quotaMib, Option.some(20))
        assert.deepStrictEqual(vol.labels, [["team", "a"]])
        assert.strictEqual(vol.usedBytes, 0)
        assert.isTrue(Option.isNone(vol.capacityBytes))
        assert.isTrue(Option.isNone(vol.diskFormat))
        assert.isTrue(Option.isNone(vol.diskFstype))
        assert.isTrue(Option.isNone(vol.diskPath))
        const created = DateTime.toEpochMillis(vol.createdAt)
        // One second of slack for stores that keep coarser timestamps.
        assert.isAtLeast(created, DateTime.toEpochMillis(before) - 1000)
        assert.isAtMost(created, DateTime.toEpochMillis(after) + 1000)
        switch (options.backendKind) {
          case "local":
            assert.isTrue(Option.isSome(vol.local), "local state")
            assert.isTrue(Option.isNone(vol.cloud), "no cloud state")
            break
          case "cloud":
            assert.isTrue(Option.isSome(vol.cloud), "cloud state")
            assert.isTrue(Option.isNone(vol.local), "no local state")
            break
          case "memory":
            assert.isTrue(Option.isNone(vol.cloud), "no cloud state")
            break
        }
      }))

    test("get returns the same description with measured usage", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("cache", (b) => b.quota(20).label("team", "a"))
        const got = yield* Volume.get("cache")
        assert.strictEqual(got.name, vol.name)
        assert.strictEqual(got.kind, "directory")
        assert.strictEqual(got.backendKind, options.backendKind)
        assert.deepStrictEqual(got.quotaMib, Option.some(20))
        assert.deepStrictEqual(got.labels, [["team", "a"]])
        assert.strictEqual(got.usedBytes, 0)
        assert.strictEqual(DateTime.toEpochMillis(got.createdAt), DateTime.toEpochMillis(vol.createdAt))
        assert.isTrue(Option.isNone(got.capacityBytes))
      }))

    test("creating an existing name fails with VolumeAlreadyExists", () =>
      Effect.gen(function*() {
        yield* createVolume("cache")
        const error = yield* createVolume("cache", (b) => b.quota(3)).pipe(expectFailure("VolumeAlreadyExists"))
        assert.strictEqual(error.volume, "cache")
        const got = yield* Volume.get("cache")
        assert.isTrue(Option.isNone(got.quotaMib), "the existing volume is unchanged")
        assert.lengthOf(yield* Volume.list(), 1)
      }))

    test("names that differ only in case are the same volume", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("Cache")
        yield* createVolume("cache").pipe(expectFailure("VolumeAlreadyExists"))
        yield* createVolume("CACHE").pipe(expectFailure("VolumeAlreadyExists"))
        yield* vol.fs().write("shared.txt", "one volume")
        const lower = yield* Volume.get("cache")
        assert.strictEqual(lower.name, "Cache", "the display name keeps the case it was created with")
        assert.strictEqual(yield* lower.fs().readToString("shared.txt"), "one volume")
        assert.lengthOf(yield* Volume.list(), 1)
        yield* Volume.remove("CACHE")
        yield* Volume.get("Cache").pipe(expectFailure("VolumeNotFound"))
        assert.lengthOf(yield* Volume.list(), 0)
      }))

    test("of many concurrent creators of one name exactly one wins", () =>
      Effect.gen(function*() {
        const results = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => createVolume(i % 2 === 0 ? "race" : "RACE").pipe(Effect.either)),
          { concurrency: "unbounded" }
        )
        const winners = results.filter(Either.isRight)
        const losers = results.filter(Either.isLeft)
        assert.lengthOf(winners, 1)
        for (const loser of losers) assert.strictEqual(loser.left._tag, "VolumeAlreadyExists")
        assert.lengthOf(yield* Volume.list(), 1)
      }))

    test("get of a missing name fails with VolumeNotFound naming it", () =>
      Effect.gen(function*() {
        const error = yield* Volume.get("nope").pipe(expectFailure("VolumeNotFound"))
        assert.strictEqual(error.volume, "nope")
        assert.instanceOf(error, VolumeNotFound)
      }))

    test("get of an invalid name fails with VolumeNotFound, not InvalidConfig", () =>
      Effect.gen(function*() {
        for (const name of ["", "a/b", "../x", "-x", "café"]) {
          yield* Volume.get(name).pipe(expectFailure("VolumeNotFound"))
        }
      }))
  })

  describe("list", () => {
    test("lists every volume, newest first", () =>
      Effect.gen(function*() {
        assert.lengthOf(yield* Volume.list(), 0)
        // Created in the opposite of name order, so a name tie-break cannot pass this.
        for (const name of ["a-first", "b-second", "c-third"]) {
          yield* createVolume(name)
          // Distinct creation times (millisecond clocks).
          yield* Effect.sleep("5 millis")
        }
        const listed = yield* Volume.list()
        assert.deepStrictEqual(listed.map((v) => v.name), ["c-third", "b-second", "a-first"])
        for (const v of listed) assert.strictEqual(v.backendKind, options.backendKind)
      }))

    test("filters by labels: a value must match, undefined means the key is present, all must match", () =>
      Effect.gen(function*() {
        yield* createVolume("prod-a", (b) => b.label("env", "prod").label("team", "a"))
        yield* createVolume("dev-a", (b) => b.label("env", "dev").label("team", "a"))
        yield* createVolume("plain")
        const listNames = (labels: Record<string, string | undefined>) =>
          Effect.map(Volume.list({ labels }), (vs) => vs.map((v) => v.name).sort())
        assert.deepStrictEqual(yield* listNames({ env: "prod" }), ["prod-a"])
        assert.deepStrictEqual(yield* listNames({ team: undefined }), ["dev-a", "prod-a"])
        assert.deepStrictEqual(yield* listNames({ env: "prod", team: "a" }), ["prod-a"])
        assert.deepStrictEqual(yield* listNames({ env: "prod", team: "b" }), [])
        assert.deepStrictEqual(yield* listNames({ env: undefined, owner: undefined }), [])
        assert.deepStrictEqual(yield* listNames({ env: "PROD" }), [], "values compare exactly")
        assert.deepStrictEqual(yield* listNames({}), ["dev-a", "plain", "prod-a"])
        assert.lengthOf(yield* Volume.list(), 3)
      }))
  })

  describe("remove", () => {
    test("remove of a missing name fails with VolumeNotFound", () =>
      Effect.gen(function*() {
        const error = yield* Volume.remove("nope").pipe(expectFailure("VolumeNotFound"))
        assert.strictEqual(error.volume, "nope")
        yield* Volume.remove("a/b").pipe(expectFailure("VolumeNotFound"))
      }))

    test("after remove the volume is gone and the name can be re-created empty", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("cache", (b) => b.label("gen", "1"))
        yield* createVolume("other")
        yield* vol.fs().write("dir/file.txt", "old data")
        yield* Volume.remove("cache")
        yield* Volume.get("cache").pipe(expectFailure("VolumeNotFound"))
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["other"])
        yield* Volume.remove("cache").pipe(expectFailure("VolumeNotFound"))

        const again = yield* createVolume("cache")
        assert.deepStrictEqual(again.labels, [])
        assert.deepStrictEqual(yield* again.fs().list("/"), [])
        assert.isFalse(yield* again.fs().exists("dir/file.txt"))
        assert.strictEqual((yield* Volume.get("cache")).usedBytes, 0)
      }))

    test("handle.remove() removes the volume", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("cache")
        yield* vol.remove()
        yield* Volume.get("cache").pipe(expectFailure("VolumeNotFound"))
        yield* vol.remove().pipe(expectFailure("VolumeNotFound"))
      }))

    test("a VolumeFs obtained before remove fails with VolumeNotFound and does not resurrect the volume", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("cache")
        const fs = vol.fs()
        yield* fs.write("keep.txt", "data")
        yield* fs.mkdir("dir")
        const hostDir = options.supportsPath ? Option.some(yield* vol.path()) : Option.none<string>()
        yield* Volume.remove("cache")

        const notFound = <A>(self: Effect.Effect<A, VolumeFsFailure>) =>
          Effect.map(self.pipe(expectFailure("VolumeNotFound")), (e) => assert.strictEqual(e.volume, "cache"))
        yield* notFound(fs.read("keep.txt"))
        yield* notFound(fs.readToString("keep.txt"))
        yield* notFound(fs.list("/"))
        yield* notFound(fs.stat("/"))
        yield* notFound(fs.exists("keep.txt"))
        yield* notFound(fs.write("new.txt", "x"))
        yield* notFound(fs.write("keep.txt", "x"))
        yield* notFound(fs.mkdir("made"))
        yield* notFound(fs.remove("keep.txt"))
        yield* notFound(fs.removeDir("dir"))
        yield* notFound(fs.copy("keep.txt", "copy.txt"))
        yield* notFound(fs.rename("keep.txt", "moved.txt"))
        yield* notFound(Effect.scoped(Effect.flatMap(fs.writeStream("s.txt"), (s) => s.write("x"))))

        yield* Volume.get("cache").pipe(expectFailure("VolumeNotFound"))
        assert.lengthOf(yield* Volume.list(), 0)
        if (Option.isSome(hostDir)) {
          assert.isFalse(NodeFs.existsSync(hostDir.value), "the data directory is not re-created")
        }
        if (options.supportsPath) yield* vol.path().pipe(expectFailure("VolumeNotFound"))
      }))
  })

  describe("getDefault / path", () => {
    if (options.backendKind === "cloud") {
      test("getDefault returns the store's default volume", () =>
        Effect.gen(function*() {
          const vol = yield* Volume.getDefault()
          assert.strictEqual(vol.backendKind, "cloud")
        }))
    } else {
      test("getDefault fails with Unsupported", () =>
        Effect.gen(function*() {
          const error = yield* Volume.getDefault().pipe(expectFailure("Unsupported"))
          assert.isNotEmpty(error.operation)
          assert.isNotEmpty(error.backend)
        }))
    }

    if (options.supportsPath) {
      test("path() is the host directory holding the volume's files", () =>
        Effect.gen(function*() {
          const vol = yield* createVolume("cache")
          yield* vol.fs().write("dir/hello.txt", "hello")
          const dir = yield* vol.path()
          assert.isTrue(NodePath.isAbsolute(dir))
          assert.strictEqual(NodeFs.readFileSync(NodePath.join(dir, "dir", "hello.txt"), "utf8"), "hello")
          assert.deepStrictEqual(NodeFs.readdirSync(dir), ["dir"], "nothing but the volume's files")
          NodeFs.writeFileSync(NodePath.join(dir, "from-host.txt"), "host")
          assert.strictEqual(yield* vol.fs().readToString("from-host.txt"), "host")
          assert.strictEqual(yield* (yield* Volume.get("CACHE")).path(), dir)
          if (options.backendKind === "local") {
            const local = Option.getOrThrow(vol.local)
            assert.deepStrictEqual(local.dataPath, Option.some(dir))
          }
        }))
    } else {
      test("path() fails with Unsupported", () =>
        Effect.gen(function*() {
          const vol = yield* createVolume("cache")
          yield* vol.path().pipe(expectFailure("Unsupported"))
        }))
    }
  })

  describe("usedBytes", () => {
    const used = (name: string) => Effect.map(Volume.get(name), (v) => v.usedBytes)

    test("is 0 for a new volume", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("v")
        assert.strictEqual(vol.usedBytes, 0)
        assert.strictEqual(yield* used("v"), 0)
      }))

    test("is 12 after writing \"shared cache\"", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("v")
        yield* vol.fs().write("note.txt", "shared cache")
        assert.strictEqual(yield* used("v"), 12)
      }))

    test("counts nested files, not directories", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("v")
        yield* vol.fs().mkdir("empty/dirs/only")
        assert.strictEqual(yield* used("v"), 0)
        yield* vol.fs().write("a/b/c/d.bin", new Uint8Array(1000))
        yield* vol.fs().write("a/e.bin", new Uint8Array(24))
        assert.strictEqual(yield* used("v"), 1024)
      }))

    test("grows and shrinks with writes, overwrites, copies and removes", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("v")
        const fs = vol.fs()
        yield* fs.write("one.txt", "shared cache")
        yield* fs.write("dir/two.bin", new Uint8Array(100))
        assert.strictEqual(yield* used("v"), 112)
        yield* fs.write("one.txt", "tiny")
        assert.strictEqual(yield* used("v"), 104)
        yield* fs.copy("dir", "dir-copy")
        assert.strictEqual(yield* used("v"), 204)
        yield* fs.rename("dir-copy", "moved")
        assert.strictEqual(yield* used("v"), 204)
        yield* fs.remove("one.txt")
        assert.strictEqual(yield* used("v"), 200)
        yield* fs.removeDir("moved")
        assert.strictEqual(yield* used("v"), 100)
        yield* fs.removeDir("dir")
        assert.strictEqual(yield* used("v"), 0)
      }))
  })
}
