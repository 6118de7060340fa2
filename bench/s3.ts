/**
 * S3 backend against raw @aws-sdk/client-s3 calls on the same server (Ceph RGW): 4 KiB get,
 * 64 MiB put/get/readStream, list of 1,000 volumes.
 *
 * Server: `EFFECT_VOLUMES_S3_*` from the environment; otherwise, when scripts/ceph-s3-up.sh
 * exists, a private Ceph (memstore, own ports and dir) started for this run and stopped
 * after it; otherwise the rows are skipped with the reason.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { Effect, Layer, ManagedRuntime, Stream } from "effect"
import { execFile } from "node:child_process"
import { existsSync, rmSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import * as S3Backend from "../dist/S3Backend.js"
import * as Volume from "../dist/Volume.js"
import type { VolumeBackend } from "../dist/VolumeBackend.js"
import { bytes } from "./common.js"
import type { Row } from "./runner.js"
import { benchDir, KiB, log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"

const exec = promisify(execFile)
const area = "S3 backend (Ceph RGW)"
const skip = (note: string): Array<Row> => [{ area, operation: "4 KiB get, 64 MiB put/get, list of 1,000 volumes", skipped: true, note }]

interface Server {
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly stop: () => Promise<void>
}

const CEPH_ENV = { CEPH_DIR: "/tmp/ev-bench-ceph", RGW_PORT: "7491", MON_PORT: "3391", OBJECTSTORE: "memstore" }

const server = async (): Promise<Server | string> => {
  const env = process.env
  const endpoint = env["EFFECT_VOLUMES_S3_ENDPOINT"]
  if (endpoint !== undefined && endpoint !== "") {
    return {
      endpoint,
      accessKeyId: env["EFFECT_VOLUMES_S3_ACCESS_KEY_ID"] ?? "",
      secretAccessKey: env["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"] ?? "",
      stop: async () => {}
    }
  }
  const up = join(benchDir, "..", "scripts", "ceph-s3-up.sh")
  if (!existsSync(up)) return "EFFECT_VOLUMES_S3_ENDPOINT is not set and scripts/ceph-s3-up.sh does not exist"
  log(`s3: starting a private Ceph (${JSON.stringify(CEPH_ENV)})`)
  const down = () =>
    exec("bash", [join(benchDir, "..", "scripts", "ceph-s3-down.sh")], { env: { ...env, ...CEPH_ENV } }).then(() =>
      rmSync(CEPH_ENV.CEPH_DIR, { recursive: true, force: true })
    )
  try {
    const { stdout } = await exec("bash", [up], { env: { ...env, ...CEPH_ENV }, maxBuffer: 16 * MiB })
    const vars = Object.fromEntries([...stdout.matchAll(/(EFFECT_VOLUMES_S3_[A-Z_]+)=(\S+)/g)].map((m) => [m[1], m[2]]))
    return {
      endpoint: vars["EFFECT_VOLUMES_S3_ENDPOINT"] ?? `http://127.0.0.1:${CEPH_ENV.RGW_PORT}`,
      accessKeyId: vars["EFFECT_VOLUMES_S3_ACCESS_KEY_ID"] ?? "",
      secretAccessKey: vars["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"] ?? "",
      stop: down
    }
  } catch (e) {
    await down().catch(() => {})
    return `scripts/ceph-s3-up.sh failed: ${String(e).split("\n").slice(0, 3).join(" ")}`
  }
}

export const run = async (): Promise<Array<Row>> => {
  const t = performance.now()
  const srv = await server()
  if (typeof srv === "string") {
    log(`s3: skipped: ${srv}`)
    return skip(srv)
  }
  const startup = performance.now() - t
  const bucket = "ev-bench"
  const prefix = `bench-${process.pid}-${Date.now()}`
  const credentials = { accessKeyId: srv.accessKeyId, secretAccessKey: srv.secretAccessKey }
  const raw = new S3Client({
    endpoint: srv.endpoint,
    region: "us-east-1",
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1
  })
  const rt = ManagedRuntime.make(
    S3Backend.layer({ endpoint: srv.endpoint, region: "us-east-1", bucket, prefix, credentials }) as Layer.Layer<VolumeBackend, unknown>
  )
  const run = <A, E>(e: Effect.Effect<A, E, VolumeBackend>): Promise<A> => rt.runPromise(e)
  const rows: Array<Row> = []
  const note = `server: ${srv.endpoint}${startup > 1000 ? ` (started for this run in ${(startup / 1000).toFixed(0)} s, memstore)` : ""}`
  try {
    const fs = (await run(Volume.builder("bench").create())).fs()
    const rawKey = `${prefix}-raw/`
    const getBytes = async (key: string) => {
      const out = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      return out.Body!.transformToByteArray()
    }
    const putBytes = (key: string, data: Uint8Array) =>
      raw.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data, ContentLength: data.byteLength }))

    log("s3: 4 KiB get")
    const small = bytes(4 * KiB)
    await run(fs.write("small.bin", small))
    await putBytes(`${rawKey}small.bin`, small)
    const g = await samplePair(() => run(fs.read("small.bin")), () => getBytes(`${rawKey}small.bin`), { batch: quick ? 20 : 100 })
    rows.push({
      area,
      operation: "fs.read 4 KiB",
      ours: g.ours,
      baselineLabel: "GetObject",
      baseline: g.baseline,
      target: timeRatioTarget("within 0.9x of the raw SDK (time ≤ 1/0.9)", g.ours, g.baseline, 1 / 0.9),
      note
    })

    const big = bytes(64 * MiB)
    log("s3: 64 MiB put")
    const p = await samplePair(() => run(fs.write("big.bin", big)), () => putBytes(`${rawKey}big.bin`, big), { rounds: quick ? 2 : 9 })
    rows.push({
      area,
      operation: "fs.write 64 MiB",
      ours: p.ours,
      baselineLabel: "PutObject (one request)",
      baseline: p.baseline,
      bytes: 64 * MiB,
      target: timeRatioTarget("within 0.9x of the raw SDK", p.ours, p.baseline, 1 / 0.9)
    })
    log("s3: 64 MiB get")
    const r = await samplePair(() => run(fs.read("big.bin")), () => getBytes(`${rawKey}big.bin`), { rounds: quick ? 2 : 9 })
    rows.push({
      area,
      operation: "fs.read 64 MiB",
      ours: r.ours,
      baselineLabel: "GetObject",
      baseline: r.baseline,
      bytes: 64 * MiB,
      target: timeRatioTarget("at least the raw SDK's single GET (time ≤ 1x)", r.ours, r.baseline, 1)
    })

    log("s3: 64 MiB readStream")
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream) { /* drained */ }
    }
    const rs = await samplePair(
      () => run(Stream.runDrain(fs.readStream("big.bin"))),
      async () => drain((await raw.send(new GetObjectCommand({ Bucket: bucket, Key: `${rawKey}big.bin` }))).Body as AsyncIterable<unknown>),
      { rounds: quick ? 2 : 9 }
    )
    rows.push({
      area,
      operation: "fs.readStream 64 MiB",
      ours: rs.ours,
      baselineLabel: "GetObject, body drained",
      baseline: rs.baseline,
      bytes: 64 * MiB,
      target: timeRatioTarget("at least the raw SDK's single GET (time ≤ 1x)", rs.ours, rs.baseline, 1)
    })

    const count = quick ? 100 : 1000
    log(`s3: creating ${count} volumes`)
    const t0 = performance.now()
    await run(Effect.forEach(Array.from({ length: count - 1 }, (_, i) => `l-${i}`), (n) => Volume.builder(n).create(), {
      concurrency: 32,
      discard: true
    }))
    const setup = performance.now() - t0
    // The same requests `list` makes: one listing of the records, then every record read in waves of 32.
    const rawList = async () => {
      const keys: Array<string> = []
      let token: string | undefined
      do {
        const page = await raw.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/volumes/`, Delimiter: "/", ContinuationToken: token })
        )
        for (const o of page.Contents ?? []) keys.push(o.Key!)
        token = page.NextContinuationToken
      } while (token !== undefined)
      const out: Array<Uint8Array> = []
      for (let i = 0; i < keys.length; i += 32) {
        out.push(...await Promise.all(keys.slice(i, i + 32).map(getBytes)))
      }
      return out.length
    }
    let n = 0
    let m = 0
    const l = await samplePair(async () => (n = (await run(Volume.list())).length), async () => (m = await rawList()), {
      rounds: quick ? 2 : 9
    })
    rows.push({
      area,
      operation: `list of ${count.toLocaleString("en")} volumes`,
      ours: l.ours,
      baselineLabel: "ListObjectsV2 + GetObject of every record (waves of 32)",
      baseline: l.baseline,
      target: timeRatioTarget("within 1.1x of the raw SDK", l.ours, l.baseline, 1.1),
      extra: `${n} listed vs ${m} records read; setup ${(setup / 1000).toFixed(1)} s through the API at concurrency 32`
    })
  } finally {
    await rt.dispose().catch(() => {})
    raw.destroy()
    await srv.stop().catch(() => {})
  }
  return rows
}
