/**
 * "Machines" for the fault tests: independent clients and backend layers on one bucket and
 * prefix, each either talking to the store directly or through a fault proxy (`proxy.ts`).
 */
import { Effect, Layer } from "effect"
import * as Client from "../../src/internal/s3/client.js"
import { makeService } from "../../src/internal/s3/backend.js"
import * as Layout from "../../src/internal/s3/layout.js"
import { VolumeBackend } from "../../src/VolumeBackend.js"
import * as Proxy from "./proxy.js"
import { settings } from "./support.js"

export interface MachineOptions {
  readonly endpoint?: string
  readonly maxAttempts?: number
  readonly requestTimeoutMillis?: number
}

/** One machine: its own client and backend service on `bucket` / `prefix`. */
export const machine = (bucket: string, prefix: string, options: MachineOptions = {}) =>
  Effect.gen(function*() {
    const s3 = yield* Client.make(settings(bucket, options))
    if (options.endpoint === undefined) yield* s3.ensureBucket
    const layout = Layout.make(prefix)
    const service = makeService(s3, layout)
    const layer = Layer.succeed(VolumeBackend, service)
    return {
      s3,
      layout,
      service,
      layer,
      /** Runs `self` on this machine. */
      run: <A, E>(self: Effect.Effect<A, E, VolumeBackend>) => Effect.provide(self, layer)
    } as const
  })

export type Machine = Effect.Effect.Success<ReturnType<typeof machine>>

/** Two machines on one fresh prefix: `a` talks through a fault proxy, `b` directly. */
export const pair = (bucket: string, prefix: string, a: Omit<MachineOptions, "endpoint"> = {}) =>
  Effect.gen(function*() {
    const b = yield* machine(bucket, prefix)
    const proxy = yield* Proxy.make(b.s3.endpoint)
    const viaProxy = yield* machine(bucket, prefix, { ...a, endpoint: proxy.endpoint })
    return { a: viaProxy, b, proxy } as const
  })

/** Escapes `text` for use inside a RegExp. */
export const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Matches requests for the object `key` exactly (query string allowed). */
export const objectPath = (key: string): RegExp => new RegExp(`/${literal(key)}(\\?|$)`)
