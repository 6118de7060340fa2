import { Effect, Stream, Layer } from "effect"
import * as LocalBackend from "../src/LocalBackend.js"
import * as NamespaceRuntime from "../src/NamespaceRuntime.js"
import * as Sandbox from "../src/Sandbox.js"
import * as NodeFs from "node:fs"
const home = NodeFs.mkdtempSync("/tmp/h-")
const prog = Effect.scoped(Effect.gen(function*() {
  const sb = yield* Sandbox.builder("t").create()
  const input = process.argv[2] === "never" ? Stream.never : Stream.make(new Uint8Array([1]))
  yield* Stream.runForEach(sb.execStream("sh", ["-c", "echo in; exit 5"], { stdin: input as any }), (e) => Effect.sync(() => console.log(e._tag)))
  console.log("done")
}))
Effect.runPromise(prog.pipe(Effect.provide(Layer.mergeAll(LocalBackend.layer({ home }), NamespaceRuntime.layer)))).then(() => console.log("ok"), (e) => console.log("err", e))
