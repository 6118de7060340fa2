/**
 * SPEC §10 `rename`: data, settings and snapshots move with the name; every refusal
 * changes nothing.
 */
import { assert, describe } from "@effect/vitest"
import { DateTime, Effect, Exit, Option, Scope } from "effect"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, utf8 } from "./support.js"

/** Asserts `name` exists and holds `text` at `/a.txt`. */
const holds = (name: string, text: string) =>
  Effect.gen(function*() {
    const vol = yield* Volume.get(name)
    assert.strictEqual(yield* vol.fs().readToString("/a.txt"), text, `${name} keeps its data`)
    return vol
  })

export const renamesTests = ({ options, test }: Context) => {
  describe("rename", () => {
    test("data, labels, quota and expiry move to the new name; the old name is gone", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("pip-cache", (b) => b.quota(8).label("team", "ml"))
        yield* vol.fs().write("/a.txt", utf8("cached"))
        yield* vol.fs().write("/deep/dir/b.txt", utf8("bee"))
        const expiresAt = DateTime.unsafeMake("2031-01-01T00:00:00Z")
        yield* Volume.update("pip-cache", { expiresAt: Option.some(expiresAt) })
        const renamed = yield* Volume.rename("PIP-CACHE", "Pip-Cache-py312")
        assert.strictEqual(renamed.name, "Pip-Cache-py312")
        assert.strictEqual(yield* renamed.fs().readToString("/deep/dir/b.txt"), "bee")
        const got = yield* holds("pip-cache-PY312", "cached")
        assert.strictEqual(got.name, "Pip-Cache-py312", "the new spelling is kept")
        assert.deepStrictEqual(got.labels, [["team", "ml"]])
        assert.deepStrictEqual(got.quotaMib, Option.some(8))
        assert.deepStrictEqual(Option.map(got.expiresAt, DateTime.toEpochMillis), Option.some(DateTime.toEpochMillis(expiresAt)))
        assert.strictEqual(got.usedBytes, "cached".length + "bee".length)
        assert.strictEqual(DateTime.toEpochMillis(got.createdAt), DateTime.toEpochMillis(vol.createdAt))
        yield* expectFailure("VolumeNotFound")(Volume.get("pip-cache"))
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["Pip-Cache-py312"])
        // The renamed volume takes writes, and the old name is free for a new, empty volume.
        yield* got.fs().write("/c.txt", utf8("after"))
        const fresh = yield* createVolume("pip-cache")
        assert.deepStrictEqual(yield* fresh.fs().list("/"), [])
        assert.strictEqual(yield* (yield* Volume.get("pip-cache-py312")).fs().readToString("/c.txt"), "after")
      }))

    test("onto an existing name (in any case) fails with VolumeAlreadyExists and changes nothing", () =>
      Effect.gen(function*() {
        yield* (yield* createVolume("one")).fs().write("/a.txt", utf8("first"))
        yield* (yield* createVolume("Two")).fs().write("/a.txt", utf8("second"))
        const taken = yield* expectFailure("VolumeAlreadyExists")(Volume.rename("one", "TWO"))
        assert.strictEqual(taken.volume, "TWO")
        yield* expectFailure("VolumeAlreadyExists")(Volume.rename("one", "ONE"))
        yield* holds("one", "first")
        yield* holds("two", "second")
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name).sort(), ["Two", "one"])
      }))

    test("an invalid new name fails with InvalidConfig, a missing volume with VolumeNotFound", () =>
      Effect.gen(function*() {
        yield* (yield* createVolume("kept")).fs().write("/a.txt", utf8("data"))
        for (const bad of ["", "../escape", "has space", "a".repeat(300), "-dash"]) {
          yield* expectFailure("InvalidConfig")(Volume.rename("kept", bad))
        }
        const missing = yield* expectFailure("VolumeNotFound")(Volume.rename("ghost", "other"))
        assert.strictEqual(missing.volume, "ghost")
        yield* expectFailure("VolumeNotFound")(Volume.rename("../x", "other"))
        yield* expectFailure("VolumeNotFound")(Volume.get("other"))
        yield* holds("kept", "data")
      }))

    test("a held volume is refused with VolumeInUse until its holder lets go", () =>
      Effect.gen(function*() {
        yield* (yield* createVolume("busy")).fs().write("/a.txt", utf8("data"))
        const backend = yield* VolumeBackend
        const scope = yield* Scope.make()
        yield* backend.holders.acquire("busy", "sandbox one", "ro").pipe(Scope.extend(scope))
        const refused = yield* expectFailure("VolumeInUse")(Volume.rename("busy", "idle"))
        assert.deepStrictEqual(refused.holders, ["sandbox one"])
        yield* holds("busy", "data")
        yield* expectFailure("VolumeNotFound")(Volume.get("idle"))
        yield* Scope.close(scope, Exit.void)
        yield* Volume.rename("busy", "idle")
        yield* holds("idle", "data")
        assert.deepStrictEqual(yield* backend.holders.list("idle"), [])
      }))

    test("snapshots move with the volume: list, get, fork, restore under the new name", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("work")
        yield* vol.fs().write("/a.txt", utf8("v1"))
        yield* Volume.snapshot("work", { name: "known-good", labels: { ci: "green" } })
        yield* vol.fs().write("/a.txt", utf8("v2"))
        yield* Volume.rename("work", "work-renamed")
        const snaps = yield* Volume.snapshots("work-renamed")
        assert.deepStrictEqual(snaps.map((s) => [s.volume, s.name]), [["work-renamed", "known-good"]])
        const snap = yield* Volume.getSnapshot("WORK-RENAMED", "known-good")
        assert.deepStrictEqual(snap.labels, [["ci", "green"]])
        assert.strictEqual(yield* snap.fs().readToString("/a.txt"), "v1")
        const fork = yield* Volume.fork("work-renamed", "from-snap", { snapshot: "known-good" })
        assert.strictEqual(yield* fork.fs().readToString("/a.txt"), "v1")
        yield* Volume.restore("work-renamed", "known-good")
        yield* holds("work-renamed", "v1")
        // The old name has no snapshots, even once a new volume takes it.
        yield* expectFailure("VolumeNotFound")(Volume.snapshots("work"))
        yield* createVolume("work")
        assert.deepStrictEqual(yield* Volume.snapshots("work"), [])
        yield* expectFailure("SnapshotNotFound")(Volume.getSnapshot("work", "known-good"))
        // A snapshot of the same name on the new volume is its own.
        yield* Volume.snapshot("work", { name: "known-good" })
        assert.strictEqual(yield* (yield* Volume.getSnapshot("work-renamed", "known-good")).fs().readToString("/a.txt"), "v1")
        // Removing the renamed volume takes its snapshots along only when asked.
        yield* expectFailure("VolumeInUse")(Volume.remove("work-renamed"))
        yield* Volume.remove("work-renamed", { withSnapshots: true })
        assert.lengthOf(yield* Volume.snapshots("work"), 1)
      }))

    test("renamed there and back, the volume is the same one", () =>
      Effect.gen(function*() {
        yield* (yield* createVolume("a")).fs().write("/a.txt", utf8("data"))
        yield* Volume.rename("a", "b")
        yield* Volume.rename("b", "c")
        yield* Volume.rename("c", "A")
        const back = yield* holds("a", "data")
        assert.strictEqual(back.name, "A")
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["A"])
        yield* Volume.remove("a")
        assert.deepStrictEqual(yield* Volume.list(), [])
      }))

    if (options.supportsDisk) {
      test("a disk volume keeps its image and size", () =>
        Effect.gen(function*() {
          const img = yield* Volume.builder("img").disk().size(64).create()
          yield* img.fs().write("/a.txt", utf8("on disk"))
          const renamed = yield* Volume.rename("img", "img2")
          assert.strictEqual(renamed.kind, "disk")
          assert.deepStrictEqual(renamed.capacityBytes, Option.some(64 * 1024 * 1024))
          yield* holds("img2", "on disk")
          yield* expectFailure("VolumeNotFound")(Volume.get("img"))
        }))
    }
  })
}
