/**
 * How the S3 tests find their server: the `EFFECT_VOLUMES_S3_*` variables that
 * `scripts/ceph-s3-up.sh` prints (and `.ci/run` exports). In CI (`CI` set) a missing
 * endpoint is an error, so the cloud suite can never be skipped silently there; on a
 * developer machine without a server the S3 tests are skipped with one line saying so.
 */
import { describe } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as S3Backend from "../../src/S3Backend.js"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import type { StorageError } from "../../src/VolumeError.js"

const env = process.env

/** The server's options without a bucket, or undefined when no server is configured. */
const server = ((): Omit<S3Backend.S3BackendOptions, "bucket"> | undefined => {
  const endpoint = env["EFFECT_VOLUMES_S3_ENDPOINT"]
  if (endpoint === undefined || endpoint === "") {
    const required = env["EFFECT_VOLUMES_S3_REQUIRED"] === "1" ||
      (env["CI"] !== undefined && env["CI"] !== "" && env["CI"] !== "false")
    if (required) {
      throw new Error(
        "CI is set but EFFECT_VOLUMES_S3_ENDPOINT is not: the S3 suite must run in CI. " +
          "Start the server with scripts/ceph-s3-up.sh and export what it prints."
      )
    }
    return undefined
  }
  return {
    endpoint,
    region: env["EFFECT_VOLUMES_S3_REGION"] ?? "us-east-1",
    credentials: {
      accessKeyId: env["EFFECT_VOLUMES_S3_ACCESS_KEY_ID"] ?? "",
      secretAccessKey: env["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"] ?? ""
    },
    forcePathStyle: (env["EFFECT_VOLUMES_S3_FORCE_PATH_STYLE"] ?? "true") !== "false"
  }
})()

let skipAnnounced = false

/** Registers `tests` when a server is configured, else one skipped block and one printed line. */
export const describeS3 = (name: string, tests: () => void): void => {
  if (server === undefined) {
    if (!skipAnnounced) {
      skipAnnounced = true
      console.log("S3 tests skipped: EFFECT_VOLUMES_S3_ENDPOINT is not set (run scripts/ceph-s3-up.sh and export what it prints)")
    }
    describe.skip(name, tests)
    return
  }
  describe(name, tests)
}

/** A bucket of its own for one test file (`EFFECT_VOLUMES_S3_BUCKET` overrides the base name). */
export const bucketFor = (file: string): string =>
  `${env["EFFECT_VOLUMES_S3_BUCKET"] ?? "ev-test"}-${file}-${process.pid}`.toLowerCase()

/** The backend options for `bucket` and `prefix` (only valid when a server is configured). */
export const options = (bucket: string, prefix: string): S3Backend.S3BackendOptions => ({
  ...server!,
  bucket,
  prefix
})

/** The client settings for `bucket` (internal modules take these). */
export const settings = (
  bucket: string,
  extra: { readonly maxAttempts?: number; readonly endpoint?: string; readonly requestTimeoutMillis?: number } = {}
) => ({
  endpoint: extra.endpoint ?? server!.endpoint,
  region: server!.region,
  bucket,
  credentials: {
    accessKeyId: server!.credentials.accessKeyId,
    secretAccessKey: String(server!.credentials.secretAccessKey)
  },
  forcePathStyle: server!.forcePathStyle ?? true,
  ...(extra.maxAttempts === undefined ? {} : { maxAttempts: extra.maxAttempts }),
  ...(extra.requestTimeoutMillis === undefined ? {} : { requestTimeoutMillis: extra.requestTimeoutMillis })
})

/** A prefix no other test uses. */
export const uniquePrefix = (): string =>
  `t-${Date.now().toString(36)}-${process.pid}-${counter++}-${Math.random().toString(36).slice(2, 8)}`

let counter = 0

/** A fresh, empty store on every build: a new prefix in the file's bucket. */
export const freshLayer = (bucket: string): Layer.Layer<VolumeBackend, StorageError> =>
  Layer.unwrapEffect(
    Effect.sync(() =>
      S3Backend.layer(options(bucket, uniquePrefix()))
    )
  )
