/**
 * Shared by the memory and S3 runs: directory volumes without a host directory (memory, cloud) are mounted into namespace
 * sandboxes as snapshots: materialised into a local cache at start, committed back at stop, three-way against the
 * state materialised at start (docs/sandboxes.md, "Committing snapshot mounts"). "Another machine" is a second backend
 * layer on the same store (on the memory backend: the same store).
 */
import { assert, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, Logger, Option } from "effect"
import type { Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import { CommitFailed } from "../../src/VolumeError.js"
import { tempDir } from "./support.js"

/** Two machines sharing one store: `a` runs the sandbox, `b` writes meanwhile. */
export interface Machines {
  readonly a: Context.Context<VolumeBackend>
  readonly b: Context.Context<VolumeBackend>
}

/** Two machines from `make`: two builds of it, or one build seen twice when the store lives in the layer (memory). */
export const twoMachines = (
  make: () => Layer.Layer<VolumeBackend, unknown>,
  store: "shared-by-one-layer" | "outside-the-layer"
): Effect.Effect<Machines, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const a = yield* Layer.build(make())
    return { a, b: store === "shared-by-one-layer" ? a : yield* Layer.build(make()) }
  })

/** Runs `effect` as machine `b`. */
export const onB = <A, E>(machines: Machines, effect: Effect.Effect<A, E, VolumeBackend>) => Effect.provide(effect, machines.b)

const sh = (sb: Sandbox.Sandbox, script: string) =>
  Effect.flatMap(sb.exec("sh", ["-c", script]), (out) => {
    assert.strictEqual(out.exitCode, 0, out.stderr)
    return Effect.succeed(out.stdout)
  })

/** The snapshot round trip every backend without host directories must pass. */
export const snapshotMountTests = (machines: () => Effect.Effect<Machines, unknown, Scope.Scope>) => {
  /** Runs `body` as machine `a` with the namespace runtime and a cache directory of its own. */
  const run = <A, E>(body: (m: Machines) => Effect.Effect<A, E, VolumeBackend | Sandbox.SandboxRuntime | Scope.Scope>) =>
    Effect.gen(function*() {
      const cache = yield* tempDir
      process.env["EFFECT_VOLUMES_CLOUD_CACHE"] = NodePath.join(cache, "cache")
      const m = yield* machines()
      return yield* body(m).pipe(Effect.provide(Layer.merge(Layer.succeedContext(m.a), NamespaceRuntime.layer)))
    }).pipe(Effect.ensuring(Effect.sync(() => delete process.env["EFFECT_VOLUMES_CLOUD_CACHE"])))

  it.scopedLive("a sandbox reads the volume's files and its writes and deletions are committed at stop", () =>
    run(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("snap").create()
        yield* vol.fs().write("/in.txt", "from the host")
        yield* vol.fs().write("/gone.txt", "delete me")
        const stop = yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("snapper").volume("/data", (m) => m.named("snap")).create()
          const out = yield* sh(sb, "cat /data/in.txt; echo written > /data/out.txt; rm /data/gone.txt")
          assert.strictEqual(out, "from the host")
          // Nothing is committed while the sandbox runs.
          assert.isFalse(yield* vol.fs().exists("/out.txt"))
          return yield* sb.stop()
        }))
        assert.deepStrictEqual(stop.overQuota, [])
        assert.deepStrictEqual(
          stop.committed.map((c) => [c.volume, c.uploaded, c.deleted, c.conflicts]),
          [["snap", ["/out.txt"], ["/gone.txt"], []]]
        )
        assert.deepStrictEqual(stop.conflicts, [])
        assert.strictEqual(yield* vol.fs().readToString("/out.txt"), "written\n")
        assert.isFalse(yield* vol.fs().exists("/gone.txt"))
        assert.strictEqual(yield* vol.fs().readToString("/in.txt"), "from the host")
        // A read-only mount never commits anything.
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("reader").volume("/data", (m) => m.named("snap").readonly()).create()
          const out = yield* sb.exec("sh", ["-c", "echo x > /data/nope.txt"])
          assert.notStrictEqual(out.exitCode, 0)
        }))
        assert.isFalse(yield* vol.fs().exists("/nope.txt"))
      })
    ))

  it.scopedLive("a scope that fails or is interrupted discards the sandbox's changes; one that succeeds commits them", () =>
    run(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("snap").create()
        yield* vol.fs().write("/kept.txt", "base")
        const session = (name: string, end: Effect.Effect<void, string>) =>
          Effect.exit(Effect.scoped(Effect.gen(function*() {
            const sb = yield* Sandbox.builder(name).volume("/data", (m) => m.named("snap")).create()
            yield* sh(sb, `echo ${name} > /data/${name}.txt; rm /data/kept.txt`)
            yield* end
          })))
        assert.isTrue(Exit.isFailure(yield* session("failed", Effect.fail("the use failed"))))
        assert.isTrue(Exit.isFailure(yield* session("interrupted", Effect.interrupt)))
        assert.isFalse(yield* vol.fs().exists("/failed.txt"))
        assert.isFalse(yield* vol.fs().exists("/interrupted.txt"))
        assert.strictEqual(yield* vol.fs().readToString("/kept.txt"), "base", "nothing of a failed use reaches the store")
        assert.isTrue(Exit.isSuccess(yield* session("succeeded", Effect.void)))
        assert.strictEqual(yield* vol.fs().readToString("/succeeded.txt"), "succeeded\n")
        assert.isFalse(yield* vol.fs().exists("/kept.txt"))
      })
    ))

  it.scopedLive("a commit over the quota is CommitFailed from stop() and use(), and a defect of a scope closed without stop()", () =>
    run(() =>
      Effect.gen(function*() {
        yield* Volume.builder("small").quota(1).create()
        const sandbox = (name: string) => Sandbox.builder(name).volume("/data", (m) => m.named("small"))
        const overfill = (sb: Sandbox.Sandbox) =>
          sh(sb, "head -c 2097152 /dev/zero > /data/big.bin && echo fits > /data/small.txt")
        const checkFailure = (error: CommitFailed, name: string) => {
          assert.strictEqual(error.sandbox, name)
          assert.deepStrictEqual(error.volumes, ["small"])
          assert.deepStrictEqual(error.failures.map((f) => [f.path, f.error]), [["/big.bin", "QuotaExceeded"]])
          const kept = Option.getOrThrow(error.failures[0]!.keptAt)
          assert.strictEqual(NodeFs.statSync(kept).size, 2 * 1024 * 1024, "the sandbox's file is kept on the host")
        }

        // The scope succeeds without stop(): the failure has no caller, so the scope dies with it.
        const exit = yield* Effect.exit(Effect.scoped(Effect.flatMap(sandbox("scoped").create(), overfill)))
        assert.isTrue(Exit.isFailure(exit), "a lost commit is never a success")
        const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(defect) && defect.value instanceof CommitFailed, String(exit))
        checkFailure(Option.getOrThrow(defect) as CommitFailed, "scoped")
        const vol = yield* Volume.get("small")
        assert.strictEqual(yield* vol.fs().readToString("small.txt"), "fits\n", "every other change is committed")
        yield* vol.fs().remove("small.txt")

        // stop(): a typed failure; the scope then closes normally.
        const viaStop = yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* sandbox("stopper").create()
          yield* overfill(sb)
          return yield* Effect.flip(sb.stop())
        }))
        assert.strictEqual(viaStop._tag, "CommitFailed")
        checkFailure(viaStop as CommitFailed, "stopper")
        assert.strictEqual(yield* vol.fs().readToString("small.txt"), "fits\n", "every other change is committed")
        assert.isFalse(yield* vol.fs().exists("big.bin"))
        yield* vol.fs().remove("small.txt")

        // use(): the same failure, typed.
        const viaUse = yield* Effect.flip(sandbox("user").use(overfill))
        assert.strictEqual(viaUse._tag, "CommitFailed")
        checkFailure(viaUse as CommitFailed, "user")
      })
    ))

  it.scopedLive("use() returns the value and the stop result", () =>
    run(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("snap").create()
        const { stop, value } = yield* Sandbox.builder("user").volume("/data", (m) => m.named("snap")).use((sb) =>
          sh(sb, "echo hi | tee /data/hi.txt")
        )
        assert.strictEqual(value, "hi\n")
        assert.deepStrictEqual(stop.committed.map((c) => c.uploaded), [["/hi.txt"]])
        assert.strictEqual(yield* vol.fs().readToString("hi.txt"), "hi\n")
      })
    ))

  it.scopedLive("a sandbox's rm -rf keeps what another machine added meanwhile; conflicts are in the stop result", () =>
    run((m) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("shared").create()
        yield* vol.fs().write("dir/a.txt", "seen by the sandbox")
        yield* vol.fs().write("both.txt", "base")
        const stop = yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("racer").volume("/data", (mb) => mb.named("shared")).create()
          yield* sh(sb, "rm -rf /data/dir && echo sandbox > /data/both.txt && echo sandbox > /data/mine.txt")
          // Machine B, while the sandbox runs.
          yield* onB(
            m,
            Effect.gen(function*() {
              const theirs = (yield* Volume.get("shared")).fs()
              yield* theirs.write("dir/new.txt", "added by machine B")
              yield* theirs.write("both.txt", "machine B")
            })
          )
          return yield* sb.stop()
        }))
        const fs = vol.fs()
        assert.strictEqual(yield* fs.readToString("dir/new.txt"), "added by machine B")
        assert.isFalse(yield* fs.exists("dir/a.txt"))
        assert.strictEqual(yield* fs.readToString("both.txt"), "machine B")
        assert.strictEqual(yield* fs.readToString("mine.txt"), "sandbox\n")
        assert.deepStrictEqual(
          stop.conflicts.map((c) => [c.volume, c.path, c.reason]),
          [["shared", "/both.txt", "ChangedInBoth"], ["shared", "/dir", "RemovedHereChangedThere"]]
        )
        const kept = stop.conflicts.find((c) => c.path === "/both.txt")!.keptAt
        assert.strictEqual(NodeFs.readFileSync(Option.getOrThrow(kept), "utf8"), "sandbox\n")
      })
    ))

  it.scopedLive("two sandboxes of one name at once each get their own cache: neither resets the other's changes", () =>
    run(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("twin").create()
        const twin = Sandbox.builder("twin").volume("/data", (m) => m.named("twin"))
        const [first, second] = yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* twin.create()
          yield* sh(first, "echo first > /data/first.txt")
          const second = yield* twin.create()
          yield* sh(second, "echo second > /data/second.txt")
          assert.strictEqual(yield* sh(first, "cat /data/first.txt"), "first\n", "the second start left the first cache alone")
          return [yield* first.stop(), yield* second.stop()] as const
        }))
        assert.deepStrictEqual([first.committed[0]!.uploaded, second.committed[0]!.uploaded], [["/first.txt"], ["/second.txt"]])
        assert.strictEqual(yield* vol.fs().readToString("first.txt"), "first\n")
        assert.strictEqual(yield* vol.fs().readToString("second.txt"), "second\n")
      })
    ))

  it.scopedLive("a scope closed without stop() logs the conflicts of its commit as a warning", () =>
    run((m) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("logged").create()
        yield* vol.fs().write("both.txt", "base")
        const warnings: Array<string> = []
        const capture = Logger.make(({ logLevel, message }) => {
          if (logLevel._tag === "Warning") warnings.push(String(message))
        })
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("logger").volume("/data", (mb) => mb.named("logged")).create()
          yield* sh(sb, "echo sandbox > /data/both.txt")
          yield* onB(m, Effect.flatMap(Volume.get("logged"), (v) => v.fs().write("both.txt", "machine B")))
        })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
        assert.strictEqual(yield* vol.fs().readToString("both.txt"), "machine B")
        assert.strictEqual(warnings.length, 1, warnings.join("\n"))
        assert.include(warnings[0], "logged:/both.txt ChangedInBoth")
        const kept = /kept at (\S+)\)/.exec(warnings[0]!)?.[1]
        assert.strictEqual(NodeFs.readFileSync(kept!, "utf8"), "sandbox\n")
      })
    ))
}
