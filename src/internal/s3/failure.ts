/**
 * What a failed request to the object store means. The driver and the backend decide on
 * typed `S3Failure`s (missing object, lost race, store busy); only what they do not handle
 * leaves the S3 modules, as a `StorageError` whose `reason` says what kind of failure it is.
 */
import { Data } from "effect"
import type { StorageErrorReason } from "../../VolumeError.js"
import { StorageError } from "../../VolumeError.js"

/** A failed request, before the caller decides what it means. */
export class S3Failure extends Data.TaggedError("S3Failure")<{
  readonly operation: string
  readonly key: string
  /** HTTP status, or undefined when no response arrived (network error, timeout). */
  readonly status: number | undefined
  readonly code: string
  readonly detail: string
  readonly cause: unknown
}> {}

interface SdkError {
  readonly name?: string
  readonly message?: string
  readonly Code?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
}

export const toFailure = (operation: string, key: string, cause: unknown): S3Failure => {
  const error = (cause ?? {}) as SdkError
  return new S3Failure({
    operation,
    key,
    status: error.$metadata?.httpStatusCode,
    code: error.Code ?? error.name ?? "Unknown",
    detail: error.message ?? String(cause),
    cause
  })
}

/** The failure of an attempt that got no answer within the per-attempt timeout. */
export const timedOut = (operation: string, key: string, millis: number): S3Failure =>
  new S3Failure({
    operation,
    key,
    status: undefined,
    code: "AttemptTimeout",
    detail: `no answer within ${millis} ms`,
    cause: undefined
  })

/** No answer, a server error or throttling: the same request may succeed later. */
export const isTransient = (failure: S3Failure): boolean =>
  failure.status === undefined ||
  failure.status >= 500 ||
  failure.status === 429 ||
  failure.code === "SlowDown" ||
  failure.code === "RequestTimeout" ||
  failure.code === "ThrottlingException"

/** The bucket itself is gone: never "the object is missing". */
export const isNoBucket = (failure: S3Failure): boolean => failure.code === "NoSuchBucket"

export const isNotFound = (failure: S3Failure): boolean =>
  !isNoBucket(failure) && (failure.status === 404 || failure.code === "NoSuchKey" || failure.code === "NotFound")

export const isPreconditionFailed = (failure: S3Failure): boolean =>
  failure.status === 412 || failure.code === "PreconditionFailed"

/** The key is longer than the store accepts (S3: 1024 bytes of UTF-8). */
export const isKeyTooLong = (failure: S3Failure): boolean => failure.code === "KeyTooLongError"

/**
 * The `StorageError` reason of a failure: a lost race is `Conflict`, throttling and 503 are
 * `Busy`, no answer (refused, reset, timed out) or a missing bucket is `Unavailable`.
 */
export const reasonOf = (failure: S3Failure): StorageErrorReason => {
  if (isPreconditionFailed(failure) || failure.status === 409) return "Conflict"
  if (
    failure.status === 503 || failure.status === 429 || failure.code === "SlowDown" ||
    failure.code === "ThrottlingException"
  ) return "Busy"
  if (failure.status === undefined || isNoBucket(failure) || failure.code === "RequestTimeout") return "Unavailable"
  return "Unknown"
}

/** The `StorageError` a caller reports for a failure it does not handle itself. */
export const toStorageError = (failure: S3Failure): StorageError =>
  new StorageError({
    message: `the object store refused ${failure.operation} of "${failure.key}": ${
      failure.status === undefined ? "no response" : `HTTP ${failure.status}`
    } ${failure.code}: ${failure.detail}`,
    reason: reasonOf(failure),
    operation: failure.operation,
    cause: failure.cause
  })

/** A stored object the library wrote cannot be read back (`reason: "Corrupt"`). */
export const corrupt = (operation: string, key: string, detail: string, cause?: unknown): StorageError =>
  new StorageError({ message: `the object "${key}" is not valid: ${detail}`, reason: "Corrupt", operation, cause })

/** A compare-and-swap loop that kept losing (`reason: "Conflict"`). */
export const unsettled = (operation: string, key: string, attempts: number): StorageError =>
  new StorageError({
    message: `${operation} of "${key}" did not settle after ${attempts} attempts (too many concurrent changes)`,
    reason: "Conflict",
    operation
  })
