/**
 * The local backend's `watch` runs `inotifywait`: interrupting the watch ends it, and so
 * does the death of the watching process, even by SIGKILL (no watcher outlives its owner).
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schedule, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as Volume from "../../src/Volume.js"
import { spawnWorker } from "./fixtures/child.js"
import { makeHome, withHome } from "./fixtures/home.js"

/** Pids of `inotifywait` processes watching a descriptor of process `owner`. */
const watchersOf = (owner: number): Array<number> =>
  NodeFs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((pid) => {
    try {
      const argv = NodeFs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      return argv[0]?.endsWith("inotifywait") === true && argv.some((arg) => arg.startsWith(`/proc/${owner}/fd/`))
        ? [Number(pid)]
        : []
    } catch {
      return [] // exited meanwhile
    }
  })

/** Waits until `owner` has no watcher left (bounded, not timed), then lists what is left. */
const noWatchersLeft = (owner: number) =>
  Effect.sync(() => watchersOf(owner)).pipe(
    Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (pids) => pids.length === 0 }),
    Effect.timeoutOption(Duration.seconds(20)),
    Effect.map(() => watchersOf(owner))
  )

describe("local watch lifetime", () => {
  it.scopedLive("a watch inside a disk volume sees writes and holds the image while it runs", () =>
    Effect.flatMap(makeHome, (home) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("img").disk().size(64).create()
        const fs = vol.fs()
        const seen = yield* fs.watch("/", { recursive: true }).pipe(
          Stream.filter((event) => event.path === "/inside.txt"),
          Stream.runHead,
          Effect.fork
        )
        // Writes until the watch (which mounts the image first) reports one.
        const writer = yield* Effect.fork(fs.write("/inside.txt", "x").pipe(Effect.repeat(Schedule.spaced("200 millis"))))
        const event = yield* Fiber.join(seen)
        yield* Fiber.interrupt(writer)
        assert.strictEqual(event._tag === "Some" ? event.value.path : undefined, "/inside.txt")
      }).pipe(withHome(home))
    ))


  it.scopedLive("interrupting a watch ends its inotifywait", () =>
    Effect.flatMap(makeHome, (home) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("w").create()
        const fiber = yield* vol.fs().watch("/", { recursive: true }).pipe(Stream.runDrain, Effect.fork)
        yield* Effect.sync(() => watchersOf(process.pid)).pipe(
          Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (pids) => pids.length > 0 })
        )
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(yield* noWatchersLeft(process.pid), [])
      }).pipe(withHome(home))
    ))

  it.scopedLive("a watching process killed with SIGKILL leaves no inotifywait behind", () =>
    Effect.flatMap(makeHome, (home) =>
      Effect.gen(function*() {
        yield* Volume.builder("w").create().pipe(withHome(home))
        const worker = yield* spawnWorker(["watch", home, "w"])
        // The watch is up once it reports a change.
        const data = `${home}/volumes/w/data`
        const probe = yield* Effect.fork(
          Effect.sync(() => NodeFs.writeFileSync(`${data}/probe`, "x")).pipe(Effect.repeat(Schedule.spaced("100 millis")))
        )
        yield* worker.line((line) => line.startsWith("event "))
        yield* Fiber.interrupt(probe)
        assert.isAbove(watchersOf(worker.pid).length, 0, "the worker's watcher runs")
        yield* worker.kill
        assert.deepStrictEqual(yield* noWatchersLeft(worker.pid), [])
      })
    ))
})
