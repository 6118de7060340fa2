/**
 * SPEC §11: `fs.watch` — a scoped stream of changes from every writer, with volume paths,
 * that ends with `VolumeNotFound` when the volume is removed.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Option, Queue, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as NodePath from "node:path"
import * as Volume from "../../src/Volume.js"
import type { VolumeFs, WatchEvent, WatchOptions } from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, expectFsError } from "./support.js"

/** Upper bound for one expected event (a bound on a hang, not a timing assertion). */
const EVENT_WAIT = Duration.seconds(20)

const isProbe = (event: WatchEvent) => event.path.includes(".probe-")

export interface RunningWatch {
  /** The next event matching `predicate` (others are skipped); fails the test after a long wait. */
  readonly next: (predicate: (event: WatchEvent) => boolean, what: string) => Effect.Effect<WatchEvent>
  /** How the stream ended. */
  readonly ended: Deferred.Deferred<Exit.Exit<void, unknown>>
}

/**
 * Runs `fs.watch` in the test's scope and returns once it demonstrably sees changes: probe
 * files are written (in `probeDir`) until one is reported, so no test depends on how long a
 * backend takes to set up its watch.
 */
export const startWatch = (fs: VolumeFs, path: string, options: WatchOptions, probeDir = path) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<WatchEvent>()
    const ended = yield* Deferred.make<Exit.Exit<void, unknown>>()
    yield* fs.watch(path, options).pipe(
      Stream.runForEach((event) => Queue.offer(queue, event)),
      Effect.exit,
      Effect.flatMap((exit) => Deferred.succeed(ended, exit)),
      Effect.forkScoped
    )
    const take = (predicate: (event: WatchEvent) => boolean, wait: Duration.DurationInput) =>
      Effect.gen(function*() {
        for (;;) {
          const event = yield* Queue.take(queue)
          if (predicate(event)) return event
        }
      }).pipe(Effect.timeoutOption(wait))
    yield* Effect.yieldNow()
    for (let i = 0;; i++) {
      const probe = `${probeDir === "/" ? "" : probeDir}/.probe-${i}`
      yield* fs.write(probe, "p").pipe(Effect.orDie)
      // Any probe counts: a slow poll may report an earlier probe after its own wait ran out.
      if (Option.isSome(yield* take((event) => isProbe(event) && event._tag !== "Removed", Duration.seconds(1)))) break
      if (i >= 30) assert.fail("the watch never reported a probe write")
    }
    const next = (predicate: (event: WatchEvent) => boolean, what: string) =>
      Effect.flatMap(
        take((event) => !isProbe(event) && predicate(event), EVENT_WAIT),
        (found) => Option.isSome(found) ? Effect.succeed(found.value) : Effect.sync(() => assert.fail(`no event: ${what}`))
      )
    return { next, ended } satisfies RunningWatch
  })

const at = (path: string, ...tags: ReadonlyArray<WatchEvent["_tag"]>) => (event: WatchEvent) =>
  event.path === path && tags.includes(event._tag)

export const watchTests = ({ options, test }: Context) => {
  describe("watch", () => {
    test("reports writes, new directories, mode changes, renames and removals with volume paths", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("watched")).fs()
        const watch = yield* startWatch(fs, "/", { recursive: true })
        yield* fs.write("/a.txt", "one")
        yield* watch.next(at("/a.txt", "Created", "Modified"), "write /a.txt")
        yield* fs.mkdir("/d")
        yield* watch.next(at("/d", "Created"), "mkdir /d")
        yield* fs.write("/d/x.txt", "deep")
        yield* watch.next(at("/d/x.txt", "Created", "Modified"), "write /d/x.txt")
        yield* fs.chmod("/a.txt", 0o755)
        yield* watch.next(at("/a.txt", "Modified"), "chmod /a.txt")
        yield* fs.rename("/a.txt", "/b.txt")
        // Polling backends see a rename as the old path going and the new one appearing.
        const seen = new Set<string>()
        while (!seen.has("Renamed") && !(seen.has("Removed") && seen.has("Created"))) {
          const event = yield* watch.next(
            (e) => (e._tag === "Renamed" && e.from === "/a.txt" && e.path === "/b.txt") || at("/b.txt", "Created")(e) ||
              at("/a.txt", "Removed")(e),
            "rename /a.txt -> /b.txt"
          )
          seen.add(event._tag)
        }
        yield* fs.symlink("b.txt", "/link")
        yield* watch.next(at("/link", "Created"), "symlink /link")
        yield* fs.remove("/b.txt")
        yield* watch.next(at("/b.txt", "Removed"), "remove /b.txt")
      }))

    test("without recursive only the watched directory's own entries are reported", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("shallow")).fs()
        yield* fs.mkdir("/sub")
        const watch = yield* startWatch(fs, "/", {})
        yield* fs.write("/sub/deep.txt", "not reported")
        yield* fs.write("/top.txt", "reported")
        const first = yield* watch.next(() => true, "write /top.txt")
        assert.strictEqual(first.path, "/top.txt")
      }))

    test("a watch of a subdirectory reports full volume paths", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("subwatch")).fs()
        yield* fs.mkdir("/app/logs")
        const watch = yield* startWatch(fs, "/app", { recursive: true })
        yield* fs.write("/app/logs/today.log", "line")
        yield* watch.next(at("/app/logs/today.log", "Created", "Modified"), "write below the watched directory")
      }))

    test("watching a missing path or a file fails", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("badwatch")).fs()
        yield* expectFailure("PathNotFound")(Stream.runDrain(fs.watch("/missing")))
        yield* fs.write("/file", "x")
        yield* expectFsError("NotADirectory")(Stream.runDrain(fs.watch("/file")))
      }))

    test("a watch on a removed volume ends with VolumeNotFound", () =>
      Effect.gen(function*() {
        const fs = (yield* createVolume("doomed")).fs()
        const watch = yield* startWatch(fs, "/", { recursive: true })
        yield* Volume.remove("doomed")
        const exit = yield* Deferred.await(watch.ended).pipe(
          Effect.timeoutFail({ duration: EVENT_WAIT, onTimeout: () => "the watch did not end" })
        )
        yield* expectFailure("VolumeNotFound")(exit)
        // A new watch of the stale handle fails the same way.
        yield* expectFailure("VolumeNotFound")(Stream.runDrain(fs.watch("/")))
      }))

    if (options.supportsPath) {
      test("sees writes made by another process", () =>
        Effect.gen(function*() {
          const vol = yield* createVolume("shared")
          const watch = yield* startWatch(vol.fs(), "/", { recursive: true })
          const host = yield* vol.path()
          execFileSync("sh", ["-c", "mkdir -p \"$1/from\" && echo hi > \"$1/from/shell.txt\"", "sh", host])
          yield* watch.next(at("/from/shell.txt", "Created", "Modified"), "a write by a shell")
          assert.strictEqual(yield* vol.fs().readToString("/from/shell.txt"), "hi\n")
          assert.isTrue(NodePath.isAbsolute(host))
        }))
    }
  })
}
