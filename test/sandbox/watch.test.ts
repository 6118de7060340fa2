/**
 * SPEC §11: a host-side `watch` sees what a sandbox writes into the volume.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { startWatch } from "../conformance/watch.js"
import { withHome } from "./support.js"

describe("watch and sandboxes", () => {
  it.scopedLive("a watch on the host sees files a sandbox writes into the volume", () =>
    withHome(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("shared").create()
        const watch = yield* startWatch(vol.fs(), "/", { recursive: true })
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("writer").image("host").volume("/data", (m) => m.named("shared")).create()
          const out = yield* sb.exec("sh", ["-c", "mkdir -p /data/out && echo hi > /data/out/from-sandbox.txt"])
          assert.strictEqual(out.exitCode, 0, out.stderr)
        }))
        const event = yield* watch.next((e) => e.path === "/out/from-sandbox.txt", "the sandbox's write")
        assert.include(["Created", "Modified"], event._tag)
      })
    ))
})
