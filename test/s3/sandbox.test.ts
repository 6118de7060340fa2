/**
 * A cloud volume mounted into a local namespace sandbox: materialised at start, the
 * sandbox's changes committed back to the object store at stop, three-way against what was
 * materialised (issue 16 item 3, issue 17 items 11 and 12). The other machine is a second
 * backend layer on the same bucket and prefix.
 */
import { assert, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import * as NodeHttp from "node:http"
import * as NodePath from "node:path"
import * as NamespaceRuntime from "../../src/NamespaceRuntime.js"
import * as S3Backend from "../../src/S3Backend.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { snapshotMountTests, twoMachines } from "../sandbox/snapshotMount.js"
import { tempDir } from "../sandbox/support.js"
import { bucketFor, describeS3, options, uniquePrefix } from "./support.js"

describeS3("snapshot mounts (S3Backend)", () => {
  snapshotMountTests(() =>
    Effect.suspend(() => {
      const settings = options(bucketFor("sandbox"), uniquePrefix())
      return twoMachines(() => S3Backend.layer(settings), "outside-the-layer")
    })
  )
})

/**
 * A loopback HTTP proxy in front of the S3 server that holds every request `hold` picks
 * until `release()`: a commit's upload can be caught in flight without any timing. A held
 * request whose client disconnected meanwhile is dropped, as a server would never see it.
 */
const holdingProxy = (upstream: URL, hold: (request: NodeHttp.IncomingMessage) => boolean) =>
  Effect.gen(function*() {
    const held = yield* Deferred.make<void>()
    const waiting: Array<() => void> = []
    let holding = true
    const forward = (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
      const out = NodeHttp.request(
        { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(response)
        }
      )
      out.on("error", () => response.destroy())
      request.pipe(out)
    }
    const server = NodeHttp.createServer((request, response) => {
      if (!holding || !hold(request)) return forward(request, response)
      Deferred.unsafeDone(held, Exit.void)
      // A request whose client gave up while held never reaches the store.
      waiting.push(() => request.socket.destroyed ? undefined : forward(request, response))
    })
    const url = yield* Effect.acquireRelease(
      Effect.async<string>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address() as { readonly port: number }
          resume(Effect.succeed(`http://127.0.0.1:${address.port}`))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const release = Effect.sync(() => {
      holding = false
      for (const go of waiting.splice(0)) go()
    })
    return { url, held: Deferred.await(held), release }
  })

describeS3("snapshot mounts (S3Backend): interruption", () => {
  it.scopedLive("an upload of stop()'s commit can be interrupted; stop() again commits the rest", () =>
    Effect.gen(function*() {
      const cache = yield* tempDir
      process.env["EFFECT_VOLUMES_CLOUD_CACHE"] = NodePath.join(cache, "cache")
      const settings = options(bucketFor("sandbox"), uniquePrefix())
      const proxy = yield* holdingProxy(
        new URL(settings.endpoint),
        (request) => request.method === "PUT" && (request.url ?? "").includes("big.bin")
      )
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("slow").create()
        const sb = yield* Sandbox.builder("slow").volume("/data", (m) => m.named("slow")).create()
        const out = yield* sb.exec("sh", ["-c", "head -c 1048576 /dev/zero > /data/big.bin"])
        assert.strictEqual(out.exitCode, 0, out.stderr)
        const stopping = yield* Effect.fork(sb.stop())
        yield* proxy.held
        // The upload is in flight and held: interrupting stop() must not wait for it.
        yield* Fiber.interrupt(stopping)
        assert.isFalse(yield* vol.fs().exists("big.bin"), "an interrupted upload publishes nothing")
        yield* proxy.release
        // The client may have sent the whole body before it gave up, so the held PUT can still
        // land; either way the repeated stop() ends in sync, without a conflict.
        const stop = yield* sb.stop()
        assert.deepStrictEqual(stop.conflicts, [])
        assert.strictEqual((yield* vol.fs().stat("big.bin")).size, 1048576)
      }).pipe(
        Effect.provide(Layer.merge(S3Backend.layer({ ...settings, endpoint: proxy.url }), NamespaceRuntime.layer))
      )
    }).pipe(Effect.ensuring(Effect.sync(() => delete process.env["EFFECT_VOLUMES_CLOUD_CACHE"]))))
})
