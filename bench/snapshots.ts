/**
 * Snapshots and forks (SPEC §9) against the copy a user would make by hand:
 * - a directory volume with 10,000 small files, and one with a 256 MiB file: snapshot and
 *   fork vs `cp -a --reflink=auto` of the same tree;
 * - a 1 GiB disk volume holding 16 MiB: fork vs `cp --sparse=always` (time and allocated bytes);
 * - S3: fork of a volume of 1,000 objects vs 1,000 raw SDK CopyObject calls (same concurrency).
 * The notes say which copy primitive ran (an strace of `cp` on the scratch file system).
 */
import { CopyObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { Effect, Layer, ManagedRuntime, Option } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { mkdirSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import * as S3Backend from "../dist/S3Backend.js"
import * as Volume from "../dist/Volume.js"
import type { VolumeBackend } from "../dist/VolumeBackend.js"
import { bytes, removeTree, withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"

const exec = promisify(execFile)
const area = "snapshots"
const FILES = quick ? 1_000 : 10_000
const BIG = quick ? 32 * MiB : 256 * MiB
const OBJECTS = quick ? 100 : 1_000
/** As many requests in flight as the S3 backend's copies use. */
const S3_CONCURRENCY = 32

/** Which copy primitive `cp --reflink=auto` uses on the file system of `dir` (strace of one copy). */
const tracePrimitive = (dir: string): string => {
  const from = join(dir, "probe-src")
  writeFileSync(from, bytes(1 * MiB))
  try {
    const out = execFileSync(
      "sh",
      ["-c", `strace -f -e trace=ioctl,copy_file_range cp --reflink=auto "${from}" "${join(dir, "probe-dst")}" 2>&1 >/dev/null`],
      { encoding: "utf8" }
    )
    const ficlone = /FICLONE[^\n]*= 0/.test(out) ? "FICLONE (reflink)" : undefined
    const refused = /FICLONE[^\n]*= -1 (\w+)/.exec(out)?.[1]
    const cfr = /copy_file_range\([^\n]*= \d+/.test(out)
    const fsType = execFileSync("findmnt", ["-no", "FSTYPE", "-T", dir], { encoding: "utf8" }).trim()
    return ficlone ?? `${fsType}: FICLONE refused (${refused ?? "?"}), ${cfr ? "copy_file_range" : "read/write"} ran`
  } catch {
    return "primitive not traced (no strace)"
  } finally {
    removeTree(join(dir, "probe-dst"))
  }
}
const cp = (args: ReadonlyArray<string>) => exec("cp", [...args])

/** Allocated bytes of a file (`st_blocks * 512`). */
const allocated = (path: string): number => statSync(path).blocks * 512

const localRows = (): Promise<Array<Row>> =>
  withLocalHome(async ({ root, run }) => {
    const rows: Array<Row> = []
    const how = tracePrimitive(root)
    log(`snapshots: copy primitive: ${how}`)
    const out = join(root, "cp-out")
    const clean = async () => {
      removeTree(out)
      for (const vol of await run(Volume.list())) {
        if (vol.name.startsWith("fork-")) await run(Volume.remove(vol.name))
      }
      for (const name of ["small", "big", "disk"]) {
        const existing = await run(Effect.either(Volume.snapshots(name)))
        if (existing._tag === "Right") for (const s of existing.right) await run(Volume.removeSnapshot(name, s.name))
      }
    }
    const pairRows = async (label: string, volume: string, files: number, totalBytes: number) => {
      const data = await run(Effect.flatMap(Volume.get(volume), (v) => v.path()))
      const snapshot = await samplePair(
        (i) => run(Volume.snapshot(volume, { name: `s${i}` })),
        () => cp(["-a", "--reflink=auto", "--no-target-directory", data, out]),
        { before: clean, rounds: quick ? 3 : 5 }
      )
      const fork = await samplePair(
        (i) => run(Volume.fork(volume, `fork-${i}`)),
        () => cp(["-a", "--reflink=auto", "--no-target-directory", data, out]),
        { before: clean, rounds: quick ? 3 : 5 }
      )
      for (const [op, pair] of [["snapshot", snapshot], ["fork", fork]] as const) {
        rows.push({
          area,
          operation: `${op} of a directory volume with ${label}`,
          ours: pair.ours,
          baselineLabel: "cp -a --reflink=auto",
          baseline: pair.baseline,
          bytes: totalBytes,
          target: timeRatioTarget("within 1.2x of cp", pair.ours, pair.baseline, 1.2),
          note: `${files} file(s); ${how}`
        })
      }
    }

    log(`snapshots: ${FILES} small files`)
    const small = await run(Volume.builder("small").create())
    const smallDir = await run(small.path())
    for (let d = 0; d < FILES / 100; d++) {
      mkdirSync(join(smallDir, `d${d}`))
      for (let f = 0; f < 100; f++) writeFileSync(join(smallDir, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`)
    }
    await pairRows(`${FILES.toLocaleString("en")} small files`, "small", FILES, 0)

    log(`snapshots: one ${BIG / MiB} MiB file`)
    const big = await run(Volume.builder("big").create())
    writeFileSync(join(await run(big.path()), "big.bin"), bytes(BIG))
    await pairRows(`one ${BIG / MiB} MiB file`, "big", 1, BIG)

    log("snapshots: 1 GiB disk holding 16 MiB")
    const disk = await run(Volume.builder("disk").disk().size(1024).create())
    await run(disk.fs().write("data.bin", bytes(16 * MiB)))
    const image = Option.getOrThrow(disk.diskPath)
    const sourceAllocated = allocated(image)
    const sizes: Array<{ ours: number; cp: number }> = []
    const pair = await samplePair(
      async (i) => {
        const forked = await run(Volume.fork("disk", `fork-${i}`))
        sizes.push({ ours: allocated(Option.getOrThrow(forked.diskPath)), cp: sizes.at(-1)?.cp ?? 0 })
      },
      async () => {
        await cp(["--sparse=always", "--reflink=auto", image, out])
        sizes.push({ ours: sizes.at(-1)?.ours ?? 0, cp: allocated(out) })
      },
      { before: clean, rounds: quick ? 3 : 5 }
    )
    const oursAllocated = Math.max(...sizes.map((s) => s.ours))
    const cpAllocated = Math.max(...sizes.map((s) => s.cp))
    rows.push({
      area,
      operation: "fork of a 1 GiB disk volume holding 16 MiB",
      ours: pair.ours,
      baselineLabel: "cp --sparse=always",
      baseline: pair.baseline,
      target: {
        text: "within 1.2x of cp; allocated ≤ 1.1x the source's",
        met: pair.ours.median / pair.baseline.median <= 1.2 && oursAllocated <= 1.1 * sourceAllocated
      },
      extra: `allocated: source ${(sourceAllocated / MiB).toFixed(1)} MiB, fork ${(oursAllocated / MiB).toFixed(1)} MiB, cp ${
        (cpAllocated / MiB).toFixed(1)
      } MiB`
    })
    await clean()
    return rows
  })

const s3Rows = async (): Promise<Array<Row>> => {
  const endpoint = process.env["EFFECT_VOLUMES_S3_ENDPOINT"]
  const operation = `fork of a volume of ${OBJECTS.toLocaleString("en")} objects`
  if (endpoint === undefined || endpoint === "") {
    return [{ area, operation, skipped: true, note: "EFFECT_VOLUMES_S3_ENDPOINT is not set" }]
  }
  const credentials = {
    accessKeyId: process.env["EFFECT_VOLUMES_S3_ACCESS_KEY_ID"] ?? "",
    secretAccessKey: process.env["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"] ?? ""
  }
  const bucket = "ev-bench"
  const prefix = `bench-snap-${process.pid}-${Date.now()}`
  const raw = new S3Client({
    endpoint,
    region: "us-east-1",
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })
  const rt = ManagedRuntime.make(
    S3Backend.layer({ endpoint, region: "us-east-1", bucket, prefix, credentials }) as Layer.Layer<VolumeBackend, unknown>
  )
  const run = <A, E>(e: Effect.Effect<A, E, VolumeBackend>): Promise<A> => rt.runPromise(e)
  const inParallel = async <A>(items: ReadonlyArray<A>, f: (a: A) => Promise<unknown>) => {
    const queue = [...items]
    await Promise.all(Array.from({ length: S3_CONCURRENCY }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await f(item)
    }))
  }
  try {
    log(`snapshots: S3 volume of ${OBJECTS} objects`)
    const source = await run(Volume.builder("source").create())
    const data = Option.getOrThrow(source.cloud).prefix
    const keys = Array.from({ length: OBJECTS }, (_, i) => `d${Math.floor(i / 100)}/f${i}.txt`)
    await inParallel(keys, (key) =>
      raw.send(new PutObjectCommand({ Bucket: bucket, Key: data + key, Body: bytes(1024, key.length), ContentLength: 1024 })))
    const rawPrefix = `${prefix}-raw`
    const pair = await samplePair(
      (i) => run(Volume.fork("source", `fork-${i}`)),
      (i) =>
        inParallel(keys, (key) =>
          raw.send(
            new CopyObjectCommand({ Bucket: bucket, Key: `${rawPrefix}/${i}/${key}`, CopySource: `${bucket}/${data}${key}` })
          )),
      { rounds: quick ? 2 : 5 }
    )
    return [{
      area,
      operation: `S3: ${operation}`,
      ours: pair.ours,
      baselineLabel: `${OBJECTS.toLocaleString("en")} CopyObject calls (${S3_CONCURRENCY} in flight)`,
      baseline: pair.baseline,
      target: timeRatioTarget("within 1.2x of the raw calls", pair.ours, pair.baseline, 1.2),
      note: `server: ${endpoint}; the fork also lists the source and writes the new record`
    }]
  } finally {
    await rt.dispose()
    raw.destroy()
  }
}

export const run = async (): Promise<Array<Row>> => [...await localRows(), ...await s3Rows()]
