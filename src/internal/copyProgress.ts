/**
 * The progress reports of one snapshot, fork or restore copy, as `OnCopyProgress`
 * promises them: one at a time, never backwards, and a last report with everything
 * copied. Backends say what they know; this module keeps the promise.
 */
import { Effect } from "effect"
import type { CopyProgress, OnCopyProgress } from "../VolumeBackend.js"

/** Bytes and files (regular files and symlinks). */
export interface Figures {
  readonly bytes: number
  readonly files: number
}

/** Reports of one copy. */
export interface Reporter {
  /** Whether anyone listens (backends skip measuring work when not). */
  readonly active: boolean
  /** How far the copy has got: copied so far, of `total`. */
  readonly report: (copied: Figures, total: Figures) => Effect.Effect<void>
  /** The copy is done and held `total`: the last report. */
  readonly done: (total: Figures) => Effect.Effect<void>
}

/** A reporter that tells `onProgress` (nothing when it is undefined). */
export const make = (onProgress: OnCopyProgress | undefined): Reporter => {
  if (onProgress === undefined) {
    return { active: false, report: () => Effect.void, done: () => Effect.void }
  }
  const lock = Effect.unsafeMakeSemaphore(1)
  let last: CopyProgress = { copiedBytes: 0, totalBytes: 0, copiedFiles: 0, totalFiles: 0 }
  const report = (copied: Figures, total: Figures) =>
    lock.withPermits(1)(Effect.suspend(() => {
      // A total measured low (the usage account lags, a live source shrank) never pulls
      // the copied figures back; what was copied is at least what was reported.
      const copiedBytes = Math.max(last.copiedBytes, Math.min(copied.bytes, total.bytes))
      const copiedFiles = Math.max(last.copiedFiles, Math.min(copied.files, total.files))
      last = {
        copiedBytes,
        totalBytes: Math.max(total.bytes, copiedBytes),
        copiedFiles,
        totalFiles: Math.max(total.files, copiedFiles)
      }
      return onProgress(last)
    }))
  return { active: true, report, done: (total) => report(total, total) }
}
