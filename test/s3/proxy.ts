/**
 * A small fault-injecting HTTP proxy for the S3 tests, the project's own: it listens on
 * 127.0.0.1 only (an ephemeral port), forwards each request unchanged to the store (the
 * Host header is passed on as signed, so SigV4 signatures stay valid) and lets a test force
 * interleavings by applying the first matching rule to a request:
 *
 * - `hold`: keep the request (not forwarded) until the test calls `release` (or `drop`, which
 *   discards it, as if its sender died first); `held` waits until one is being held. This is
 *   how a test makes one machine's request arrive late.
 * - `delay`: forward after `millis`.
 * - `fail`: answer `status` with an S3 error `code` without forwarding.
 * - `freeze` (or `freezeAll()`): accept and never answer, like a stopped gateway.
 * - `stall`: forward, pass the answer's headers and its first `afterBytes` body bytes, then
 *   send nothing more (a gateway frozen in the middle of a response).
 *
 * Rules match on the method and a regular expression over the decoded path and query
 * (`/bucket/key?query`), and apply `times` times (default: always). Bounded: at most
 * `MAX_HELD` requests are held or frozen at once (more fail with 503), and closing the scope
 * destroys every held socket and the server.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

/** Most requests held or frozen at once; beyond that the proxy answers 503. */
export const MAX_HELD = 256

export type Action =
  | { readonly _tag: "hold" }
  | { readonly _tag: "delay"; readonly millis: number }
  | { readonly _tag: "fail"; readonly status: number; readonly code: string }
  | { readonly _tag: "freeze" }
  | { readonly _tag: "stall"; readonly afterBytes: number }

export interface RuleSpec {
  /** HTTP method(s) to match (any when omitted). */
  readonly method?: string | ReadonlyArray<string>
  /** Tested against the decoded `/bucket/key?query`. */
  readonly path: RegExp
  readonly action: Action
  /** How many requests the rule applies to (unlimited when omitted). */
  readonly times?: number
}

export interface Rule {
  /** Waits until the rule holds at least one request. */
  readonly held: Effect.Effect<void>
  /** Forwards every request the rule holds now or later (the rule stops holding). */
  readonly release: Effect.Effect<void>
  /** Stops applying the rule (held requests stay held until released). */
  readonly remove: Effect.Effect<void>
  /** Destroys the requests held now without forwarding them (their sender died). */
  readonly drop: Effect.Effect<void>
  /** Requests the rule matched so far. */
  readonly matched: () => number
}

export interface Proxy {
  /** `http://127.0.0.1:<port>`: point a client here instead of at the store. */
  readonly endpoint: string
  readonly rule: (spec: RuleSpec) => Rule
  /** Every request from now on is accepted and never answered; `thaw` undoes it. */
  readonly freezeAll: () => void
  readonly thaw: () => void
  /** `METHOD /bucket/key?query` of every request seen. */
  readonly log: ReadonlyArray<string>
}

interface LiveRule {
  readonly spec: RuleSpec
  remaining: number
  matched: number
  released: boolean
  removed: boolean
  readonly holding: Array<(forward: boolean) => void>
  readonly heldWaiters: Array<() => void>
}

const methodMatches = (wanted: RuleSpec["method"], method: string) =>
  wanted === undefined || (typeof wanted === "string" ? wanted === method : wanted.includes(method))

const errorBody = (code: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message></Error>`

/** A proxy in front of `upstream` (an `http://host:port` URL), closed with the scope. */
export const make = (upstream: string): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly proxy: Proxy; readonly close: () => void }>((resume) => {
      const target = new URL(upstream)
      const rules: Array<LiveRule> = []
      const log: Array<string> = []
      const parked = new Set<Http.ServerResponse>()
      let frozen = false

      const forward = (req: Http.IncomingMessage, res: Http.ServerResponse, stallAfter?: number) => {
        const out = Http.request({
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers
        }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          if (stallAfter === undefined) return answer.pipe(res)
          parked.add(res)
          let sent = 0
          answer.on("data", (chunk: Buffer) => {
            const room = Math.max(0, stallAfter - sent)
            if (room > 0) res.write(chunk.subarray(0, room))
            sent += chunk.byteLength
          })
        })
        out.on("error", () => res.destroy())
        req.pipe(out)
      }

      const park = (res: Http.ServerResponse): boolean => {
        if (parked.size >= MAX_HELD) {
          res.writeHead(503, { "content-type": "application/xml" }).end(errorBody("SlowDown"))
          return false
        }
        parked.add(res)
        res.on("close", () => parked.delete(res))
        return true
      }

      const server = Http.createServer((req, res) => {
        const path = decodeURIComponent(req.url ?? "")
        log.push(`${req.method} ${path}`)
        if (frozen) {
          park(res)
          return
        }
        const rule = rules.find((r) =>
          !r.removed && r.remaining > 0 && methodMatches(r.spec.method, req.method ?? "") &&
          r.spec.path.test(path)
        )
        if (rule === undefined) return forward(req, res)
        rule.remaining--
        rule.matched++
        const action = rule.spec.action
        switch (action._tag) {
          case "fail":
            req.resume()
            res.writeHead(action.status, { "content-type": "application/xml" }).end(errorBody(action.code))
            return
          case "delay":
            setTimeout(() => forward(req, res), action.millis)
            return
          case "freeze":
            park(res)
            return
          case "stall":
            forward(req, res, action.afterBytes)
            return
          case "hold":
            if (rule.released) return forward(req, res)
            if (!park(res)) return
            rule.holding.push((go) => {
              parked.delete(res)
              if (go) forward(req, res)
              else res.destroy()
            })
            for (const wake of rule.heldWaiters.splice(0)) wake()
        }
      })

      const rule = (spec: RuleSpec): Rule => {
        const live: LiveRule = {
          spec,
          remaining: spec.times ?? Number.POSITIVE_INFINITY,
          matched: 0,
          released: false,
          removed: false,
          holding: [],
          heldWaiters: []
        }
        rules.push(live)
        return {
          held: Effect.async<void>((wake) => {
            if (live.holding.length > 0) return wake(Effect.void)
            live.heldWaiters.push(() => wake(Effect.void))
          }),
          release: Effect.sync(() => {
            live.released = true
            for (const go of live.holding.splice(0)) go(true)
          }),
          drop: Effect.sync(() => {
            for (const go of live.holding.splice(0)) go(false)
          }),
          remove: Effect.sync(() => {
            live.removed = true
          }),
          matched: () => live.matched
        }
      }

      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          proxy: {
            endpoint: `http://127.0.0.1:${port}`,
            rule,
            freezeAll: () => {
              frozen = true
            },
            thaw: () => {
              frozen = false
            },
            log
          },
          close: () => {
            for (const res of parked) res.destroy()
            server.closeAllConnections()
            server.close()
          }
        }))
      })
    }),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ proxy }) => proxy))
