/**
 * Progress bars of `volumes snapshot create`, `fork` and `restore` on a terminal (util-linux
 * `script`): drawn on stderr, cleared before the result is printed, and absent with --json.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { session } from "./harness.js"

const MiB = 1024 * 1024
const TERMINAL = { env: { VOLUMES_PROGRESS_DELAY_MS: "0", TERM: "xterm" } }

/** The bar's last drawing with everything copied, its line cleared, then `result` on a clean line. */
const drawnThenCleared = (label: string, result: string) =>
  new RegExp(`\\r\\x1b\\[2K${label}\\s+\\[#{24}\\]\\s+100%\\s+6\\.0 MiB / 6\\.0 MiB[^\\r\\n]*\\r\\x1b\\[2K${result}\\r?\\n`)

describe("volumes snapshot create | fork | restore on a terminal", () => {
  it.scopedLive("show a progress bar that is cleared when done, and nothing but JSON with --json", () =>
    Effect.gen(function*() {
      const { dir, ok, onTerminal } = yield* session
      yield* ok(["create", "src"])
      // Three top-level files: a local copy runs in shares and reports after each.
      for (const [name, size] of [["a.bin", 3 * MiB], ["b.bin", 2 * MiB], ["c.bin", MiB]] as const) {
        const host = NodePath.join(dir, name)
        NodeFs.writeFileSync(host, Buffer.alloc(size, name.charCodeAt(0)))
        yield* ok(["fs", "src", "put", host, "/"])
      }

      const forked = yield* onTerminal(["fork", "src", "copy"], TERMINAL)
      assert.strictEqual(forked.code, 0, forked.stdout)
      assert.match(forked.stdout, drawnThenCleared("fork src", "copy"))

      const snapshot = yield* onTerminal(["snapshot", "create", "src", "--name", "s"], TERMINAL)
      assert.strictEqual(snapshot.code, 0, snapshot.stdout)
      assert.match(snapshot.stdout, drawnThenCleared("snapshot src", "s"))

      const restored = yield* onTerminal(["restore", "src", "s"], TERMINAL)
      assert.strictEqual(restored.code, 0, restored.stdout)
      assert.match(restored.stdout, drawnThenCleared("restore src", "src"))

      // --json: the record alone, on a terminal too.
      for (const args of [["fork", "src", "copy2", "--json"], ["snapshot", "create", "src", "--name", "t", "--json"], ["restore", "src", "t", "--json"]]) {
        const result = yield* onTerminal(args, TERMINAL)
        assert.strictEqual(result.code, 0, result.stdout)
        assert.notInclude(result.stdout, "\x1b", `volumes ${args.join(" ")}: no bar`)
        assert.isObject(JSON.parse(result.stdout.replace(/\r/g, "")), `volumes ${args.join(" ")}: JSON only`)
      }
    }), 300_000)
})
