/**
 * Child-process output is a backpressured stream (issue 16 item 10): a command that writes
 * faster than its consumer reads waits on a full pipe instead of being read into memory.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { run } from "../../src/internal/namespace/process.js"

describe("child processes", () => {
  it.scopedLive("output is pulled, not pushed: a command writing 8 MiB waits while nobody reads", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-process-"))),
        (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
      )
      const marker = NodePath.join(dir, "finished")
      const events = run("sh", ["-c", `head -c 8388608 /dev/zero; touch ${marker}`], {
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
        stdin: undefined,
        sandbox: "test"
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const pull = yield* Stream.toPull(events)
        const first = yield* pull
        assert.isAbove(Chunk.size(first), 0)
        // Without backpressure the whole output would be read into memory meanwhile and
        // the command would finish; with it, the command blocks on the full pipe.
        yield* Effect.sleep("2 seconds")
        assert.isFalse(NodeFs.existsSync(marker), "the command is still waiting for its reader")
      }))
      // Reading everything lets it finish.
      const all = yield* Stream.runFold(events, 0, (n, e) => e._tag === "Stdout" ? n + e.data.length : n)
      assert.strictEqual(all, 8388608)
      assert.isTrue(NodeFs.existsSync(marker))
    }), 60_000)
})
