/**
 * SPEC §10: holders as a backend capability, get-or-create, prune.
 */
import { assert, describe } from "@effect/vitest"
import { DateTime, Effect, Exit, Option, Scope, TestClock, TestContext } from "effect"
import * as Volume from "../../src/Volume.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import type { HoldMode } from "../../src/VolumeBackend.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, KiB, MiB, some, utf8 } from "./support.js"

/** Holds `name` in a scope of its own; closing the returned scope lets go. */
const hold = (name: string, holder: string, mode: HoldMode = "rw") =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const backend = yield* VolumeBackend
    yield* backend.holders.acquire(name, holder, mode).pipe(Scope.extend(scope))
    return scope
  })

export const lifecycle2Tests = ({ options, test }: Context) => {
  describe("holders", () => {
    test("a held volume cannot be removed; once let go it can", () =>
      Effect.gen(function*() {
        yield* createVolume("held")
        const scope = yield* hold("Held", "sandbox one")
        const backend = yield* VolumeBackend
        assert.deepStrictEqual(yield* backend.holders.list("HELD"), ["sandbox one"])
        const refused = yield* expectFailure("VolumeInUse")(Volume.remove("held"))
        assert.deepStrictEqual(refused.holders, ["sandbox one"])
        assert.strictEqual((yield* Volume.get("held")).name, "held", "nothing was removed")
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(yield* backend.holders.list("held"), [])
        yield* Volume.remove("held")
      }))

    test("a directory volume may have several holders; each one blocks removal", () =>
      Effect.gen(function*() {
        yield* createVolume("shared")
        const a = yield* hold("shared", "sandbox a")
        const b = yield* hold("shared", "sandbox b", "ro")
        const backend = yield* VolumeBackend
        assert.deepStrictEqual([...(yield* backend.holders.list("shared"))].sort(), ["sandbox a", "sandbox b"])
        yield* Scope.close(a, Exit.void)
        yield* expectFailure("VolumeInUse")(Volume.remove("shared"))
        yield* Scope.close(b, Exit.void)
        yield* Volume.remove("shared")
      }))

    test("an exclusive holder (an archive import) is the only holder, both ways", () =>
      Effect.gen(function*() {
        yield* createVolume("solo")
        const importing = yield* hold("solo", "archive import", "exclusive")
        const refused = yield* expectFailure("VolumeInUse")(hold("solo", "sandbox a"))
        assert.deepStrictEqual(refused.holders, ["archive import"])
        yield* expectFailure("VolumeInUse")(hold("solo", "sandbox b", "ro"))
        yield* expectFailure("VolumeInUse")(hold("solo", "another import", "exclusive"))
        yield* Scope.close(importing, Exit.void)
        const sandbox = yield* hold("solo", "sandbox a", "ro")
        yield* expectFailure("VolumeInUse")(hold("solo", "archive import", "exclusive"))
        yield* Scope.close(sandbox, Exit.void)
        yield* Scope.close(yield* hold("solo", "archive import", "exclusive"), Exit.void)
        const backend = yield* VolumeBackend
        assert.deepStrictEqual(yield* backend.holders.list("solo"), [])
      }))

    test("holding a missing volume fails with VolumeNotFound", () =>
      Effect.gen(function*() {
        const backend = yield* VolumeBackend
        yield* expectFailure("VolumeNotFound")(Effect.scoped(backend.holders.acquire("ghost", "sandbox", "rw")))
        assert.deepStrictEqual(yield* backend.holders.list("ghost"), [])
      }))

    if (options.supportsDisk) {
      test("a disk volume has one read-write holder or several read-only ones", () =>
        Effect.gen(function*() {
          yield* Volume.builder("img").disk().size(64).create()
          const writer = yield* hold("img", "writer")
          const second = yield* expectFailure("VolumeInUse")(Effect.scoped(hold("img", "reader", "ro")))
          assert.deepStrictEqual(second.holders, ["writer"])
          yield* Scope.close(writer, Exit.void)
          const r1 = yield* hold("img", "reader 1", "ro")
          const r2 = yield* hold("img", "reader 2", "ro")
          yield* expectFailure("VolumeInUse")(Effect.scoped(hold("img", "writer", "rw")))
          yield* Scope.close(r1, Exit.void)
          yield* Scope.close(r2, Exit.void)
        }))
    }
  })

  describe("getOrCreate", () => {
    test("creates a missing volume, then returns the same one with its data", () =>
      Effect.gen(function*() {
        const first = yield* Volume.builder("cache").quota(10).label("team", "ml").getOrCreate()
        yield* first.fs().write("a.txt", utf8("kept"))
        const again = yield* Volume.getOrCreate(Volume.builder("CACHE").quota(10).label("team", "ml"))
        assert.strictEqual(again.name, "cache")
        assert.isTrue(again.createdAt.epochMillis === first.createdAt.epochMillis, "the same volume")
        assert.strictEqual(yield* again.fs().readToString("a.txt"), "kept")
        // A spec that says less than the volume has is compatible too.
        yield* Volume.builder("cache").getOrCreate()
        assert.strictEqual((yield* Volume.list()).length, 1)
      }))

    test("an incompatible existing volume fails with InvalidConfig naming every mismatch, and is not changed", () =>
      Effect.gen(function*() {
        yield* Volume.builder("cache").quota(10).label("team", "ml").create()
        const error = yield* expectFailure("InvalidConfig")(
          Volume.builder("cache").quota(20).label("team", "web").label("tier", "hot").getOrCreate()
        )
        assert.include(error.message, "quota is 10 MiB, but quota(20)")
        assert.include(error.message, `label "team" is "ml"`)
        assert.include(error.message, `label "tier" is absent`)
        const after = yield* Volume.get("cache")
        assert.deepStrictEqual([after.quotaMib, after.labels], [Option.some(10), [["team", "ml"]]])
      }))

    test("an invalid spec fails with InvalidConfig and creates nothing", () =>
      Effect.gen(function*() {
        yield* expectFailure("InvalidConfig")(Volume.builder("bad name").getOrCreate())
        assert.strictEqual((yield* Volume.list()).length, 0)
      }))

    test("concurrent callers all succeed with one volume", () =>
      Effect.gen(function*() {
        const handles = yield* Effect.all(
          Array.from({ length: 8 }, () => Volume.builder("race").label("k", "v").getOrCreate()),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(new Set(handles.map((h) => h.createdAt.epochMillis)).size, 1)
        assert.strictEqual((yield* Volume.list()).length, 1)
      }))
  })
  describe("prune", () => {
    test("removes the volumes matching every label that nobody holds, and says why it skipped the others", () =>
      Effect.gen(function*() {
        yield* createVolume("a", (b) => b.label("team", "ml"))
        yield* createVolume("b", (b) => b.label("team", "ml").label("tier", "hot"))
        yield* createVolume("c", (b) => b.label("team", "web"))
        yield* createVolume("d")
        const scope = yield* hold("b", "sandbox busy")
        const result = yield* Volume.prune({ labels: { team: "ml" } })
        assert.deepStrictEqual(result.removed, ["a"])
        assert.deepStrictEqual(result.skipped.map((s) => s.name), ["b"])
        assert.include(result.skipped[0]!.reason, "sandbox busy")
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name).sort(), ["b", "c", "d"])
        yield* Scope.close(scope, Exit.void)
      }))

    test("a dry run removes nothing and reports what it would remove and skip", () =>
      Effect.gen(function*() {
        yield* createVolume("a")
        yield* createVolume("b")
        const scope = yield* hold("a", "sandbox busy", "ro")
        const result = yield* Volume.prune({ dryRun: true })
        assert.deepStrictEqual(result.removed, ["b"])
        assert.deepStrictEqual(result.skipped.map((s) => s.name), ["a"])
        assert.strictEqual((yield* Volume.list()).length, 2)
        yield* Scope.close(scope, Exit.void)
        const real = yield* Volume.prune()
        assert.deepStrictEqual([...real.removed].sort(), ["a", "b"])
        assert.strictEqual((yield* Volume.list()).length, 0)
      }))
  })
  describe("update", () => {
    test("labels are set and removed in place; the data stays", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("cache", (b) => b.label("team", "ml").label("keep", "yes"))
        yield* vol.fs().write("a.txt", utf8("data"))
        const updated = yield* Volume.update("CACHE", { labels: { set: { tier: "hot", keep: "still" }, remove: ["team"] } })
        assert.deepStrictEqual(updated.labels, [["keep", "still"], ["tier", "hot"]])
        const again = yield* Volume.get("cache")
        assert.deepStrictEqual(again.labels, [["keep", "still"], ["tier", "hot"]])
        assert.strictEqual(yield* again.fs().readToString("a.txt"), "data")
        assert.deepStrictEqual((yield* Volume.list({ labels: { tier: "hot" } })).map((v) => v.name), ["cache"])
      }))

    test("labels over the limits and a quota on a disk volume fail with InvalidConfig and change nothing", () =>
      Effect.gen(function*() {
        yield* createVolume("cache", (b) => b.label("team", "ml"))
        yield* expectFailure("InvalidConfig")(Volume.update("cache", { labels: { set: { ["k".repeat(64)]: "v" } } }))
        yield* expectFailure("InvalidConfig")(Volume.update("cache", { labels: { set: { team: "v".repeat(256) } } }))
        yield* expectFailure("InvalidConfig")(Volume.update("cache", { quota: Option.some(0) }))
        assert.deepStrictEqual((yield* Volume.get("cache")).labels, [["team", "ml"]])
        if (options.supportsDisk) {
          yield* Volume.builder("img").disk().size(64).create()
          yield* expectFailure("InvalidConfig")(Volume.update("img", { quota: Option.some(10) }))
        }
      }))

    test("a missing volume fails with VolumeNotFound", () =>
      Effect.gen(function*() {
        yield* expectFailure("VolumeNotFound")(Volume.update("ghost", { labels: { set: { a: "b" } } }))
      }))

    test("the quota may rise, go away, and fall below usage (then the volume is over quota)", () =>
      Effect.gen(function*() {
        yield* createVolume("q", (b) => b.quota(1))
        yield* expectFailure("QuotaExceeded")((yield* Volume.get("q")).fs().write("big", new Uint8Array(2 * MiB)))
        const raised = yield* Volume.update("q", { quota: Option.some(4) })
        assert.deepStrictEqual(raised.quotaMib, Option.some(4))
        yield* (yield* Volume.get("q")).fs().write("big", new Uint8Array(2 * MiB))
        const lowered = yield* Volume.update("q", { quota: Option.some(1) })
        assert.deepStrictEqual(lowered.quotaMib, Option.some(1))
        const over = yield* Volume.get("q")
        assert.isTrue(over.usedBytes > MiB, "over quota after lowering it")
        assert.strictEqual((yield* over.fs().read("big")).byteLength, 2 * MiB, "nothing is deleted")
        yield* expectFailure("QuotaExceeded")(over.fs().write("more", new Uint8Array(KiB)))
        const unlimited = yield* Volume.update("q", { quota: Option.none() })
        assert.isTrue(Option.isNone(unlimited.quotaMib))
        yield* (yield* Volume.get("q")).fs().write("more", new Uint8Array(2 * MiB))
      }))

    test("concurrent label updates are all kept", () =>
      Effect.gen(function*() {
        yield* createVolume("busy")
        yield* Effect.all(
          Array.from({ length: 6 }, (_, i) => Volume.update("busy", { labels: { set: { [`k${i}`]: "v" } } })),
          { concurrency: "unbounded" }
        )
        assert.strictEqual((yield* Volume.get("busy")).labels.length, 6)
      }))
  })
  describe("expiry", () => {
    test("expiresIn sets expiresAt at create; update changes or clears it; it survives a get", () =>
      Effect.gen(function*() {
        const before = yield* DateTime.now
        const vol = yield* Volume.builder("tmp").expiresIn("1 hour").create()
        const at = some(vol.expiresAt, "expiresAt")
        const ahead = DateTime.distance(before, at)
        assert.isTrue(ahead >= 3_600_000 && ahead < 3_600_000 + 60_000, `an hour ahead (got ${ahead} ms)`)
        assert.deepStrictEqual((yield* Volume.get("tmp")).expiresAt, vol.expiresAt)
        assert.isTrue(Option.isNone((yield* createVolume("keep")).expiresAt))
        const cleared = yield* Volume.update("tmp", { expiresAt: Option.none() })
        assert.isTrue(Option.isNone(cleared.expiresAt))
        assert.isTrue(Option.isNone((yield* Volume.get("tmp")).expiresAt))
        const got = yield* Volume.builder("made").expiresIn("2 hours").getOrCreate()
        assert.isTrue(Option.isSome(got.expiresAt))
      }))

    test("prune({ expired: true }) removes only expired volumes nobody holds", () =>
      Effect.gen(function*() {
        const past = DateTime.subtract(yield* DateTime.now, { minutes: 1 })
        const future = DateTime.add(yield* DateTime.now, { hours: 1 })
        yield* createVolume("old")
        yield* createVolume("busy")
        yield* createVolume("later")
        yield* createVolume("never")
        yield* Volume.update("old", { expiresAt: Option.some(past) })
        yield* Volume.update("busy", { expiresAt: Option.some(past) })
        yield* Volume.update("later", { expiresAt: Option.some(future) })
        const scope = yield* hold("busy", "sandbox busy")
        const result = yield* Volume.prune({ expired: true })
        assert.deepStrictEqual(result.removed, ["old"])
        assert.deepStrictEqual(result.skipped.map((s) => s.name), ["busy"])
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name).sort(), ["busy", "later", "never"])
        yield* Scope.close(scope, Exit.void)
      }))
  })
  describe("lastUsedAt", () => {
    test("a holder acquiring and letting go moves lastUsedAt; prune({ unusedFor }) keeps recently used volumes", () =>
      Effect.gen(function*() {
        yield* createVolume("used")
        yield* createVolume("idle")
        assert.isTrue(Option.isNone((yield* Volume.get("used")).lastUsedAt), "never used yet")
        const before = yield* DateTime.now
        const scope = yield* hold("used", "sandbox")
        const attached = some((yield* Volume.get("used")).lastUsedAt, "lastUsedAt after attach")
        assert.isTrue(DateTime.greaterThanOrEqualTo(attached, before))
        yield* Effect.sleep("5 millis")
        yield* Scope.close(scope, Exit.void)
        const detached = some((yield* Volume.get("used")).lastUsedAt, "lastUsedAt after detach")
        assert.isTrue(DateTime.greaterThan(detached, attached), "moved again at detach")
        assert.isTrue(Option.isNone((yield* Volume.get("idle")).lastUsedAt))
        // Nothing is old enough for an hour; everything is for 0 ms.
        assert.deepStrictEqual((yield* Volume.prune({ unusedFor: "1 hour", dryRun: true })).removed, [])
        const all = yield* Volume.prune({ unusedFor: 0, dryRun: true })
        assert.deepStrictEqual([...all.removed].sort(), ["idle", "used"])
      }))

    test("host-side changes move lastUsedAt, at most once a minute (TestClock); prune({ unusedFor }) sees them", () =>
      Effect.gen(function*() {
        const start = Date.UTC(2026, 0, 1)
        yield* TestClock.setTime(start)
        const vol = yield* createVolume("written")
        yield* createVolume("idle")
        const lastUsed = Effect.map(Volume.get("written"), (h) => DateTime.toEpochMillis(some(h.lastUsedAt, "lastUsedAt")))
        yield* vol.fs().write("a.txt", "one")
        assert.strictEqual(yield* lastUsed, start, "the first write stamps it")
        yield* TestClock.adjust("30 seconds")
        yield* vol.fs().write("a.txt", "two")
        assert.strictEqual(yield* lastUsed, start, "within the minute: coalesced")
        yield* TestClock.adjust("31 seconds")
        yield* vol.fs().mkdir("dir")
        assert.strictEqual(yield* lastUsed, start + 61_000, "a mkdir a minute later moves it")
        yield* TestClock.adjust("2 hours")
        // Streams, removals and the rest count too.
        const sink = yield* vol.fs().writeStream("s.txt")
        yield* sink.write(utf8("streamed"))
        yield* sink.close()
        assert.strictEqual(yield* lastUsed, start + 61_000 + 2 * 3_600_000, "a stream's close moves it")
        assert.isTrue(Option.isNone((yield* Volume.get("idle")).lastUsedAt), "a volume nobody wrote stays unused")
        const pruned = yield* Volume.prune({ unusedFor: "1 hour", dryRun: true })
        assert.deepStrictEqual(pruned.removed, ["idle"], "the written volume was used just now")
        yield* TestClock.adjust("61 minutes")
        yield* vol.fs().remove("s.txt")
        assert.deepStrictEqual((yield* Volume.prune({ unusedFor: "1 hour", dryRun: true })).removed, ["idle"])
      }).pipe(Effect.provide(TestContext.TestContext)))
  })
}
