/**
 * The one place that talks to the object store: an `S3Client` configured for
 * S3-compatible servers (path-style, checksums only where required), every request wrapped
 * once, retried with backoff when that is safe, and failures turned into readable
 * `StorageError`s.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand
} from "@aws-sdk/client-s3"
import type { GetObjectCommandOutput } from "@aws-sdk/client-s3"
import { Duration, Effect, Option, Schedule } from "effect"
import type { Scope } from "effect"
import type { Readable } from "node:stream"
import { StorageError } from "../../VolumeError.js"
import type { S3Failure } from "./failure.js"
import { isNotFound, isPreconditionFailed, isTransient, timedOut, toFailure, toStorageError } from "./failure.js"

/**
 * How to reach the store.
 */
export interface S3Settings {
  readonly endpoint: string
  readonly region: string
  readonly bucket: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  readonly forcePathStyle: boolean
  /** Attempts of an idempotent request on network errors, 5xx and throttling (default 6). */
  readonly maxAttempts?: number
  /** Longest wait for the answer of one attempt, in milliseconds (default 30,000). */
  readonly requestTimeoutMillis?: number
  /** Bytes of one ranged GET of a file read (default {@link DEFAULT_READ_PART_BYTES}). */
  readonly readPartBytes?: number
  /** Ranged GETs of one file read in flight or held at once (default {@link DEFAULT_READ_WINDOW}). */
  readonly readWindow?: number
  /**
   * Bytes of one ranged GET of a whole-file `read` (default: `readPartBytes` when that is
   * set, else {@link DEFAULT_READ_WHOLE_PART_BYTES}).
   */
  readonly readWholePartBytes?: number
}

/** Default bytes of one ranged GET of a streamed file read (`readStream`). */
export const DEFAULT_READ_PART_BYTES = 8 * 1024 * 1024
/** Default ranged GETs of one file read in flight or held at once: memory is about (window + 1) parts. */
export const DEFAULT_READ_WINDOW = 4
/**
 * Default bytes of one ranged GET of a whole-file read (`read`), which holds the whole file
 * anyway: larger parts mean fewer requests. Against a store that shares the client's cores
 * (the test gateway on 2 cores) every extra request and parallel stream costs CPU that a
 * single GET does not spend (64 MiB, raw single GET = 1.00: 8 MiB parts × 4 ran 1.14–1.35x,
 * 32 MiB parts 0.96–1.13x).
 */
export const DEFAULT_READ_WHOLE_PART_BYTES = 32 * 1024 * 1024

/** Default per-attempt timeout: a 64 MiB PUT on a slow link still fits. */
export const DEFAULT_REQUEST_TIMEOUT_MILLIS = 30_000

/** RGW 16 answers a quoted ETag in `If-Match` with 412, so conditions carry it bare. */
export const bareEtag = (etag: string): string => etag.replace(/"/g, "")

/** What HEAD reports about an object. */
export interface ObjectHead {
  readonly size: number
  readonly etag: string
  readonly modified: Date
  /** User metadata (`x-amz-meta-*`, names lower-cased); HEAD and GET fill it. */
  readonly metadata?: Readonly<Record<string, string>>
}

/** User metadata of an object (`x-amz-meta-<name>: <value>`; values must be ASCII). */
export type ObjectMetadata = Readonly<Record<string, string>>

/** A whole small object. */
export interface ObjectBody extends ObjectHead {
  readonly bytes: Uint8Array
}

/** One object of a listing. */
export interface ListedObject {
  readonly key: string
  readonly size: number
  readonly modified: Date
}

/** One page (or all pages) of a delimited listing. */
export interface Listing {
  readonly objects: ReadonlyArray<ListedObject>
  /** Common prefixes ("subdirectories"), each ending in the delimiter. */
  readonly prefixes: ReadonlyArray<string>
}

/**
 * The outcome of a conditional PUT: written, lost the race (412), the `If-Match` object is
 * gone (404), or unknown (5xx / no answer).
 */
export type ConditionalPut =
  | { readonly _tag: "Written"; readonly etag: Option.Option<string> }
  | { readonly _tag: "PreconditionFailed" }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Unknown"; readonly failure: S3Failure }

/** The answer of a ranged GET (pinned to an ETag or not). */
export type RangeBody =
  | {
    readonly _tag: "Body"
    readonly body: Readable
    /** The whole object's size (from `Content-Range`). */
    readonly size: number
    readonly etag: string
    /** User metadata (a mode, a symlink's target: see `links.ts`). */
    readonly metadata: ObjectMetadata
  }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Changed" }
  /** The range starts at or past the end (416): at 0, the object is empty. */
  | { readonly _tag: "Unsatisfiable" }

/** A multipart upload that was started and neither completed nor aborted. */
export interface PendingUpload {
  readonly key: string
  readonly uploadId: string
  readonly initiated: Date
}

/** The whole object's size of a ranged answer: `Content-Range: bytes a-b/size`, or the length of a 200. */
const totalSize = (out: GetObjectCommandOutput): number => {
  const total = /\/(\d+)$/.exec(out.ContentRange ?? "")
  return total === null ? out.ContentLength ?? 0 : Number(total[1])
}

/** Most keys one DeleteObjects request may carry. */
const DELETE_BATCH = 1000

/** The store, one bucket of it. */
export interface S3 {
  readonly endpoint: string
  readonly bucket: string
  /** The raw SDK client (benchmarks compare against it). */
  readonly sdk: S3Client
  /** Longest wait for one attempt's answer (and for each piece of a streamed body). */
  readonly requestTimeoutMillis: number
  readonly head: (key: string) => Effect.Effect<Option.Option<ObjectHead>, StorageError>
  readonly get: (key: string) => Effect.Effect<Option.Option<ObjectBody>, StorageError>
  /** Bytes of one ranged GET of a streamed file read. */
  readonly readPartBytes: number
  /** Bytes of one ranged GET of a whole-file read. */
  readonly readWholePartBytes: number
  /** Ranged GETs of one file read in flight or held at once. */
  readonly readWindow: number
  /**
   * A ranged GET whose body is streamed (destroyed when the scope closes); `ifMatch` makes it
   * answer `Changed` if the object changed.
   */
  readonly getRange: (
    key: string,
    start: number,
    endInclusive: number,
    ifMatch: Option.Option<string>
  ) => Effect.Effect<RangeBody, StorageError, Scope.Scope>
  readonly put: (
    key: string,
    body: Uint8Array,
    contentType?: string,
    metadata?: ObjectMetadata
  ) => Effect.Effect<void, StorageError>
  /** Replaces an object's user metadata in place (a copy onto itself); `None` if it is gone. */
  readonly replaceMetadata: (key: string, metadata: ObjectMetadata) => Effect.Effect<Option.Option<void>, StorageError>
  /** A single, never retried, conditional PUT (`ifNoneMatch: "*"` or `ifMatch: <etag>`). */
  readonly putConditional: (
    key: string,
    body: Uint8Array,
    condition: { readonly ifNoneMatch: "*" } | { readonly ifMatch: string },
    contentType?: string,
    metadata?: ObjectMetadata
  ) => Effect.Effect<ConditionalPut, StorageError>
  readonly copy: (from: string, to: string) => Effect.Effect<Option.Option<void>, StorageError>
  readonly delete: (key: string) => Effect.Effect<void, StorageError>
  readonly deleteMany: (keys: ReadonlyArray<string>) => Effect.Effect<void, StorageError>
  /** Every object below `prefix`, with `delimiter` folding deeper keys into prefixes. */
  readonly list: (
    prefix: string,
    options?: { readonly delimiter?: string; readonly limit?: number }
  ) => Effect.Effect<Listing, StorageError>
  readonly createUpload: (key: string, metadata?: ObjectMetadata) => Effect.Effect<string, StorageError>
  readonly uploadPart: (
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array
  ) => Effect.Effect<string, StorageError>
  readonly completeUpload: (
    key: string,
    uploadId: string,
    parts: ReadonlyArray<{ readonly PartNumber: number; readonly ETag: string }>
  ) => Effect.Effect<void, StorageError>
  /** Never fails: it runs from scope finalizers. */
  readonly abortUpload: (key: string, uploadId: string) => Effect.Effect<void>
  /** Every unfinished multipart upload below `prefix`. */
  readonly listUploads: (prefix: string) => Effect.Effect<ReadonlyArray<PendingUpload>, StorageError>
  /** Bytes of the parts an unfinished upload holds (0 once it is gone). */
  readonly uploadedBytes: (upload: PendingUpload) => Effect.Effect<number, StorageError>
  /** Creates the bucket unless it exists. */
  readonly ensureBucket: Effect.Effect<void, StorageError>
}

/**
 * A client for `settings`, destroyed (sockets closed) when the scope closes.
 */
export const make = (settings: S3Settings): Effect.Effect<S3, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sdk = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new S3Client({
          endpoint: settings.endpoint,
          region: settings.region,
          credentials: { ...settings.credentials },
          forcePathStyle: settings.forcePathStyle,
          // Streamed bodies with the default checksums use aws-chunked trailers, which RGW 16
          // and others refuse (411); checksums go in headers only where an API requires them.
          requestChecksumCalculation: "WHEN_REQUIRED",
          responseChecksumValidation: "WHEN_REQUIRED",
          // Retries are ours: the SDK would also retry conditional PUTs, hiding their outcome.
          maxAttempts: 1
        })
      ),
      (client) => Effect.sync(() => client.destroy())
    )
    const { bucket } = settings
    const attempts = Math.max(1, settings.maxAttempts ?? 6)
    const timeoutMillis = Math.max(1, settings.requestTimeoutMillis ?? DEFAULT_REQUEST_TIMEOUT_MILLIS)
    /** Pauses after the second and later failed attempts (the first pause is 40 ms). */
    const laterAttempts = Schedule.exponential(Duration.millis(80), 2).pipe(
      Schedule.jittered,
      Schedule.intersect(Schedule.recurs(Math.max(0, attempts - 2)))
    )

    /**
     * One request; idempotent ones are retried while the failure is transient. Every attempt
     * is bounded by the per-attempt timeout (the request is aborted then), so a frozen store
     * costs at most `attempts × timeout` plus the backoff pauses.
     */
    const request = <A>(
      operation: string,
      key: string,
      run: (signal: AbortSignal) => Promise<A>,
      idempotent = true
    ): Effect.Effect<A, S3Failure> => {
      // The timeout is a timer that aborts the request (no fiber per request): this wrapper
      // runs around every request, so its cost is the library's per-request overhead.
      // Interruption aborts through the returned canceler: one AbortController per request, no
      // second signal and listener from Effect.
      const once = Effect.async<A, S3Failure>((resume) => {
        const controller = new AbortController()
        let late = false
        const timer = setTimeout(() => {
          late = true
          controller.abort()
        }, timeoutMillis)
        run(controller.signal).then(
          (value) => {
            clearTimeout(timer)
            resume(Effect.succeed(value))
          },
          (cause) => {
            clearTimeout(timer)
            resume(Effect.fail(late ? timedOut(operation, key, timeoutMillis) : toFailure(operation, key, cause)))
          }
        )
        return Effect.sync(() => {
          clearTimeout(timer)
          controller.abort()
        })
      })
      // The first attempt runs without the retry machinery; only a transient failure builds it.
      if (!idempotent || attempts === 1) return once
      return Effect.catchIf(once, isTransient, () =>
        Effect.retry(Effect.delay(once, Duration.millis(40)), { schedule: laterAttempts, while: isTransient }))
    }

    const orStorage = <A>(self: Effect.Effect<A, S3Failure>) => Effect.mapError(self, toStorageError)

    /** `None` for a missing object, `StorageError` for anything else that failed. */
    const optional = <A>(self: Effect.Effect<A, S3Failure>): Effect.Effect<Option.Option<A>, StorageError> =>
      self.pipe(
        Effect.map(Option.some),
        Effect.catchIf(isNotFound, () => Effect.succeed(Option.none())),
        Effect.mapError(toStorageError)
      )

    const head: S3["head"] = (key) =>
      optional(request("HeadObject", key, (abortSignal) =>
        sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal }))).pipe(
          Effect.map(Option.map((out) => ({
            size: out.ContentLength ?? 0,
            etag: out.ETag ?? "",
            modified: out.LastModified ?? new Date(0),
            metadata: out.Metadata ?? {}
          })))
        )

    const get: S3["get"] = (key) =>
      optional(request("GetObject", key, async (abortSignal) => {
        const out = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })
        const bytes = out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray()
        return {
          bytes,
          size: bytes.byteLength,
          etag: out.ETag ?? "",
          modified: out.LastModified ?? new Date(0),
          metadata: out.Metadata ?? {}
        }
      }))

    const getRange: S3["getRange"] = (key, start, endInclusive, ifMatch) =>
      Effect.acquireRelease(
        // Interruptible, so the per-attempt timeout can abort a request the store never answers
        // (its abort signal tears the request down: no body is left behind).
        Effect.interruptible(request("GetObject", key, (abortSignal) =>
          sdk.send(
            new GetObjectCommand({
              Bucket: bucket,
              Key: key,
              Range: `bytes=${start}-${endInclusive}`,
              ...(Option.isSome(ifMatch) ? { IfMatch: ifMatch.value } : {})
            }),
            { abortSignal }
          )).pipe(
            Effect.map((out: GetObjectCommandOutput): RangeBody => ({
              _tag: "Body",
              body: out.Body as Readable,
              size: totalSize(out),
              etag: out.ETag ?? "",
              metadata: out.Metadata ?? {}
            })),
            Effect.catchIf(isNotFound, () => Effect.succeed<RangeBody>({ _tag: "Missing" })),
            Effect.catchIf(isPreconditionFailed, () => Effect.succeed<RangeBody>({ _tag: "Changed" })),
            Effect.catchIf((f) => f.status === 416, () => Effect.succeed<RangeBody>({ _tag: "Unsatisfiable" })),
            Effect.mapError(toStorageError)
          )),
        // An unread body holds a socket: release it when the consumer stops early.
        (out) =>
          Effect.sync(() => {
            if (out._tag === "Body") out.body.destroy()
          })
      )

    const putObject = (
      key: string,
      body: Uint8Array,
      contentType: string,
      condition: { readonly IfNoneMatch: string } | { readonly IfMatch: string } | {} = {},
      metadata?: ObjectMetadata
    ) =>
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: contentType,
        ...condition,
        ...(metadata === undefined ? {} : { Metadata: { ...metadata } })
      })

    const put: S3["put"] = (key, body, contentType = "application/octet-stream", metadata) =>
      orStorage(request("PutObject", key, (abortSignal) =>
        sdk.send(putObject(key, body, contentType, {}, metadata), { abortSignal }))).pipe(Effect.asVoid)

    const putConditional: S3["putConditional"] = (key, body, condition, contentType = "application/json", metadata) =>
      request(
        "PutObject (conditional)",
        key,
        (abortSignal) =>
          sdk.send(
            putObject(
              key,
              body,
              contentType,
              "ifNoneMatch" in condition ? { IfNoneMatch: "*" } : { IfMatch: bareEtag(condition.ifMatch) },
              metadata
            ),
            { abortSignal }
          ),
        false
      ).pipe(
        Effect.map((out): ConditionalPut => ({ _tag: "Written", etag: Option.fromNullable(out.ETag) })),
        Effect.catchAll((failure): Effect.Effect<ConditionalPut, StorageError> => {
          if (isPreconditionFailed(failure)) return Effect.succeed({ _tag: "PreconditionFailed" })
          // If-Match on an object that is gone: removed meanwhile.
          if (isNotFound(failure)) return Effect.succeed({ _tag: "Missing" })
          // RGW answers concurrent If-Match losers with 500 (and 409 is possible elsewhere):
          // the write may or may not have happened, so the caller re-reads and compares.
          if (isTransient(failure) || failure.status === 409) return Effect.succeed({ _tag: "Unknown", failure })
          return Effect.fail(toStorageError(failure))
        })
      )

    /** `CopySource` is bucket/key, URL-encoded, with the slashes kept. */
    const copySource = (key: string) => encodeURIComponent(`${bucket}/${key}`).replace(/%2F/g, "/")

    const copy: S3["copy"] = (from, to) =>
      optional(request("CopyObject", `${from} -> ${to}`, (abortSignal) =>
        sdk.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: copySource(from) }), { abortSignal }))).pipe(
          Effect.map(Option.map(() => undefined))
        )

    const replaceMetadata: S3["replaceMetadata"] = (key, metadata) =>
      optional(request("CopyObject (metadata)", key, async (abortSignal) => {
        const head = await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal })
        return sdk.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: key,
            CopySource: copySource(key),
            MetadataDirective: "REPLACE",
            Metadata: { ...metadata },
            ...(head.ContentType === undefined ? {} : { ContentType: head.ContentType })
          }),
          { abortSignal }
        )
      })).pipe(Effect.map(Option.map(() => undefined)))

    const del: S3["delete"] = (key) =>
      orStorage(request("DeleteObject", key, (abortSignal) =>
        sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal }))).pipe(Effect.asVoid)

    const deleteMany: S3["deleteMany"] = (keys) => {
      const batches: Array<ReadonlyArray<string>> = []
      for (let i = 0; i < keys.length; i += DELETE_BATCH) batches.push(keys.slice(i, i + DELETE_BATCH))
      return Effect.forEach(
        batches,
        (batch) =>
          orStorage(request("DeleteObjects", batch[0] ?? "", (abortSignal) =>
            sdk.send(
              new DeleteObjectsCommand({
                Bucket: bucket,
                Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true }
              }),
              { abortSignal }
            ))).pipe(
              Effect.flatMap((out) => {
                const failed = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey")
                return failed.length === 0
                  ? Effect.void
                  : Effect.fail(
                    new StorageError({
                      message: `the object store could not delete ${failed.length} object(s), first "${failed[0]?.Key}": ${
                        failed[0]?.Code
                      } ${failed[0]?.Message ?? ""}`,
                      reason: failed.some((e) => e.Code === "SlowDown") ? "Busy" : "Unknown",
                      operation: "DeleteObjects"
                    })
                  )
              })
            ),
        { concurrency: 4, discard: true }
      )
    }

    const list: S3["list"] = (prefix, options = {}) =>
      Effect.gen(function*() {
        const objects: Array<ListedObject> = []
        const prefixes: Array<string> = []
        let token: string | undefined
        do {
          const continuation = token
          const page = yield* orStorage(request("ListObjectsV2", prefix, (abortSignal) =>
            sdk.send(
              new ListObjectsV2Command({
                Bucket: bucket,
                Prefix: prefix,
                ...(options.delimiter === undefined ? {} : { Delimiter: options.delimiter }),
                ...(options.limit === undefined ? {} : { MaxKeys: options.limit }),
                ...(continuation === undefined ? {} : { ContinuationToken: continuation })
              }),
              { abortSignal }
            )))
          for (const object of page.Contents ?? []) {
            if (object.Key !== undefined) {
              objects.push({ key: object.Key, size: object.Size ?? 0, modified: object.LastModified ?? new Date(0) })
            }
          }
          for (const common of page.CommonPrefixes ?? []) if (common.Prefix !== undefined) prefixes.push(common.Prefix)
          token = page.IsTruncated === true ? page.NextContinuationToken : undefined
          if (options.limit !== undefined && objects.length + prefixes.length >= options.limit) break
        } while (token !== undefined)
        return { objects, prefixes }
      })

    const createUpload: S3["createUpload"] = (key, metadata) =>
      orStorage(request("CreateMultipartUpload", key, (abortSignal) =>
        sdk.send(
          new CreateMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            ContentType: "application/octet-stream",
            ...(metadata === undefined ? {} : { Metadata: { ...metadata } })
          }),
          { abortSignal }
        ))).pipe(
          Effect.flatMap((out) =>
            out.UploadId === undefined
              ? Effect.fail(
                new StorageError({ message: `the object store gave no upload id for "${key}"`, operation: "CreateMultipartUpload" })
              )
              : Effect.succeed(out.UploadId)
          )
        )

    const uploadPart: S3["uploadPart"] = (key, uploadId, partNumber, body) =>
      orStorage(request("UploadPart", key, (abortSignal) =>
        sdk.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: body.byteLength
          }),
          { abortSignal }
        ))).pipe(Effect.map((out) => out.ETag ?? ""))

    const completeUpload: S3["completeUpload"] = (key, uploadId, parts) =>
      orStorage(request("CompleteMultipartUpload", key, (abortSignal) =>
        sdk.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts.map((part) => ({ ...part })) }
          }),
          { abortSignal }
        ))).pipe(Effect.asVoid)

    const abortUpload: S3["abortUpload"] = (key, uploadId) =>
      request("AbortMultipartUpload", key, (abortSignal) =>
        sdk.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), { abortSignal })).pipe(
          Effect.ignore
        )

    const listUploads: S3["listUploads"] = (prefix) =>
      Effect.gen(function*() {
        const uploads: Array<PendingUpload> = []
        let keyMarker: string | undefined
        let uploadIdMarker: string | undefined
        do {
          const markers = { KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }
          const page = yield* orStorage(request("ListMultipartUploads", prefix, (abortSignal) =>
            sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, ...markers }), { abortSignal })))
          for (const upload of page.Uploads ?? []) {
            if (upload.Key !== undefined && upload.UploadId !== undefined) {
              uploads.push({ key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated ?? new Date(0) })
            }
          }
          const more = page.IsTruncated === true && page.NextKeyMarker !== undefined
          keyMarker = more ? page.NextKeyMarker : undefined
          uploadIdMarker = more ? page.NextUploadIdMarker : undefined
        } while (keyMarker !== undefined)
        return uploads
      })

    const uploadedBytes: S3["uploadedBytes"] = (upload) =>
      optional(request("ListParts", upload.key, (abortSignal) =>
        sdk.send(new ListPartsCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId }), { abortSignal }))).pipe(
          Effect.map(Option.match({
            onNone: () => 0,
            onSome: (out) => (out.Parts ?? []).reduce((sum, part) => sum + (part.Size ?? 0), 0)
          }))
        )

    const ensureBucket: S3["ensureBucket"] = request("HeadBucket", bucket, (abortSignal) =>
      sdk.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal })).pipe(
        Effect.asVoid,
        Effect.catchIf(isNotFound, () =>
          request("CreateBucket", bucket, (abortSignal) =>
            sdk.send(new CreateBucketCommand({ Bucket: bucket }), { abortSignal })).pipe(
              Effect.asVoid,
              // Another process created it first: that is what we wanted.
              Effect.catchIf(
                (f) => f.code === "BucketAlreadyOwnedByYou" || f.code === "BucketAlreadyExists",
                () => Effect.void
              )
            )),
        Effect.mapError(toStorageError)
      )

    return {
      endpoint: settings.endpoint,
      bucket,
      sdk,
      requestTimeoutMillis: timeoutMillis,
      readPartBytes: Math.max(1, settings.readPartBytes ?? DEFAULT_READ_PART_BYTES),
      readWholePartBytes: Math.max(1, settings.readWholePartBytes ?? settings.readPartBytes ?? DEFAULT_READ_WHOLE_PART_BYTES),
      readWindow: Math.max(1, settings.readWindow ?? DEFAULT_READ_WINDOW),
      head,
      get,
      getRange,
      put,
      replaceMetadata,
      putConditional,
      copy,
      delete: del,
      deleteMany,
      list,
      createUpload,
      uploadPart,
      completeUpload,
      abortUpload,
      listUploads,
      uploadedBytes,
      ensureBucket
    } satisfies S3
  })
