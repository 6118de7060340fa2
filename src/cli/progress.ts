/**
 * Progress bars for transfers: bytes, rate and ETA on stderr, only when stderr is a
 * terminal, and only once a transfer has run for about a second (so quick commands stay
 * quiet). `VOLUMES_PROGRESS_DELAY_MS` overrides the delay (tests use 0);
 * `VOLUMES_NO_PROGRESS=1` turns bars off.
 */
import type { Scope } from "effect"
import { Effect, Stream } from "effect"
import { formatBytes } from "../Size.js"
import type { CopyProgress, OnCopyProgress } from "../VolumeBackend.js"

/** Counts bytes of one transfer. */
export interface Progress {
  readonly add: (bytes: number) => void
  /** Sets the figures outright (a transfer that counts for itself). */
  readonly set: (done: number, total: number) => void
  /** Passes a byte stream through, counting it. */
  readonly track: <E, R>(stream: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<Uint8Array, E, R>
}

const DEFAULT_DELAY_MS = 1000
const REDRAW_MS = 200

const duration = (seconds: number): string => {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--"
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const mmss = `${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
  return h > 0 ? `${h}:${mmss}` : mmss
}

/** The text of one progress line. */
export const render = (label: string, done: number, total: number | undefined, elapsedMs: number): string => {
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0
  const rateText = `${formatBytes(Math.round(rate))}/s`
  if (total === undefined || total <= 0) return `${label}  ${formatBytes(done)}  ${rateText}`
  const fraction = Math.min(1, done / total)
  const width = 24
  const filled = Math.round(fraction * width)
  const bar = "#".repeat(filled) + "-".repeat(width - filled)
  const eta = done >= total ? 0 : rate > 0 ? (total - done) / rate : Number.NaN
  return `${label}  [${bar}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(done)} / ${formatBytes(total)}  ${rateText}  ETA ${duration(eta)}`
}

const enabled = (): boolean => process.stderr.isTTY === true && (process.env.VOLUMES_NO_PROGRESS ?? "") === ""

const delayMs = (): number => {
  const raw = Number(process.env.VOLUMES_PROGRESS_DELAY_MS)
  return Number.isFinite(raw) && raw >= 0 ? raw : DEFAULT_DELAY_MS
}

/**
 * A progress bar for the lifetime of the scope; when the scope closes the final state is
 * drawn (if the bar was due by then) and the line is cleared.
 */
export const make = (label: string, initialTotal: number | undefined): Effect.Effect<Progress, never, Scope.Scope> =>
  Effect.gen(function*() {
    let done = 0
    let total = initialTotal
    const add = (bytes: number) => {
      done += bytes
    }
    const progress: Progress = {
      add,
      set: (copied, all) => {
        done = copied
        total = all
      },
      track: (stream) => Stream.tap(stream, (chunk) => Effect.sync(() => add(chunk.length)))
    }
    if (!enabled()) return progress
    const start = Date.now()
    const delay = delayMs()
    const draw = () => {
      const line = render(label, done, total, Date.now() - start)
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`)
    }
    const timer = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const handle = setInterval(() => {
          if (Date.now() - start >= delay) draw()
        }, REDRAW_MS)
        handle.unref()
        return handle
      }),
      (handle) =>
        Effect.sync(() => {
          clearInterval(handle)
          if (Date.now() - start >= delay) {
            // The final state, then the line is cleared: what follows (a summary, an
            // error, the prompt) starts on a clean line.
            draw()
            process.stderr.write("\r\x1b[2K")
          }
        })
    )
    void timer
    return progress
  })

/**
 * A bar for a snapshot, fork or restore copy, fed by the copy's own reports: the
 * `onProgress` to hand to `Volume.snapshot`, `fork` or `restore`. None with `json` (the
 * output is for programs), so nothing but the record reaches the terminal.
 */
export const forCopy = (label: string, json: boolean): Effect.Effect<OnCopyProgress | undefined, never, Scope.Scope> =>
  json
    ? Effect.succeed(undefined)
    : Effect.map(make(label, undefined), (progress) => (report: CopyProgress) =>
      Effect.sync(() => progress.set(report.copiedBytes, report.totalBytes)))
