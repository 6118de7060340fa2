/**
 * The quota channel between a served mount's `evfs` and this process (docs/sandboxes.md,
 * "Quota"; the evfs side is native/evfs/account.c). evfs connects to a unix socket in the
 * sandbox's staging directory (`--account=SOCKET`) and asks for grants of quota in chunks;
 * each request is answered from the volume's usage account (`QuotaGrants`, the one host-side
 * writes and other sandboxes use), one line per request:
 *
 *   evfs: `grant WANT MIN BALANCE`   we: `GRANTED USED`
 *   evfs: `return BYTES BALANCE`     we: `0 USED`
 *   evfs: `bye BALANCE`              (at unmount: the balance goes back; no answer)
 *
 * A request the account cannot answer (the database failed) grants nothing, so evfs fails
 * the write with ENOSPC rather than pass the quota.
 */
import { Deferred, Effect, Runtime } from "effect"
import type { Scope } from "effect"
import { createServer } from "node:net"
import type { Socket } from "node:net"
import type { ResolvedMount } from "../../../Sandbox.js"
import type { QuotaGrants } from "../../../VolumeBackend.js"
import { SandboxError } from "../../../VolumeError.js"
import type { Staging } from "./fileServer.js"

/** How long the end of the sandbox waits for a server's last words (`bye`) after it is gone. */
const LAST_WORDS = "2 seconds"

/** The answer to one request line; `undefined`: no answer (`bye`, or a line we do not know). */
const answer = (account: QuotaGrants, line: string): Effect.Effect<string | undefined> => {
  const [verb, ...rest] = line.trim().split(" ")
  const [a, b, c] = rest.map(Number)
  const valid = (n: number | undefined): n is number => n !== undefined && Number.isSafeInteger(n) && n >= 0
  const refused = (error: { readonly message: string }) =>
    Effect.as(Effect.logWarning(`the quota account did not answer a file server: ${error.message}`), "0 0\n")
  switch (verb) {
    case "grant":
      return valid(a) && valid(b) && valid(c)
        ? account.grant(a, b, c).pipe(
          Effect.map(({ granted, usedBytes }) => `${granted} ${usedBytes}\n`),
          Effect.catchAll(refused)
        )
        : Effect.succeed("0 0\n")
    case "return":
      return valid(a) && valid(b)
        ? account.giveBack(a, b).pipe(Effect.map((used) => `0 ${used}\n`), Effect.catchAll(refused))
        : Effect.succeed("0 0\n")
    case "bye":
      return valid(a)
        ? account.giveBack(a, 0).pipe(Effect.catchAll(refused), Effect.as(undefined))
        : Effect.succeed(undefined)
    default:
      return Effect.succeed(undefined)
  }
}

/**
 * Serves the account on `path` for the scope's lifetime. Closing waits (briefly) until every
 * connected server has hung up and its requests are answered, so a `bye` sent at unmount is
 * counted before the account is forgotten.
 */
export const serve = (path: string, account: QuotaGrants): Effect.Effect<void, SandboxError, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const done: Array<Promise<void>> = []
    const connection = (socket: Socket) => {
      let buffered = ""
      // Requests of one server are answered in order.
      let chain: Promise<unknown> = Promise.resolve()
      const finished = new Promise<void>((resolve) => socket.on("close", () => resolve()))
      done.push(finished.then(() => chain).then(() => undefined))
      socket.on("error", () => socket.destroy())
      socket.on("data", (data: Buffer) => {
        buffered += data.toString("latin1")
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          chain = chain.then(() => Runtime.runPromise(runtime)(answer(account, line))).then((reply) => {
            if (reply !== undefined && !socket.destroyed) socket.write(reply)
          })
        }
      })
    }
    yield* Effect.acquireRelease(
      Effect.async<ReturnType<typeof createServer>, SandboxError>((resume) => {
        const server = createServer(connection)
        server.once("error", (error) =>
          resume(Effect.fail(
            new SandboxError({ sandbox: "", reason: "Start", message: `cannot serve the quota account: ${error.message}` })
          )))
        server.listen(path, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.gen(function*() {
          const closed = yield* Deferred.make<void>()
          server.close(() => Deferred.unsafeDone(closed, Effect.void))
          yield* Effect.promise(() => Promise.all(done)).pipe(Effect.timeout(LAST_WORDS), Effect.ignore)
          yield* Deferred.await(closed).pipe(Effect.timeout(LAST_WORDS), Effect.ignore)
        })
    )
  })

/**
 * The staging of a served mount with a quota account: its channel served on
 * `<stage>.sock` for the scope's lifetime, and evfs told to use it.
 */
export const withAccount = (
  staging: Staging | undefined,
  resolved: ResolvedMount,
  stage: string
): Effect.Effect<Staging | undefined, SandboxError, Scope.Scope> => {
  const account = resolved.source._tag === "HostPath" ? resolved.source.quota?.account : undefined
  if (staging === undefined || !staging.serve || account === undefined) return Effect.succeed(staging)
  const path = `${stage}.sock`
  return Effect.as(serve(path, account), { ...staging, argv: [...staging.argv, `--account=${path}`] })
}
