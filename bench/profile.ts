/**
 * One hot loop per case, for `node --cpu-prof`:
 *   npx tsx bench/profile.ts <case> [out.cpuprofile]     (profiles only the hot loop, via node:inspector,
 *                                                          the same V8 CPU profile `node --cpu-prof` writes)
 *   npx tsx bench/profile.ts --summary <file>.cpuprofile
 * cases: list, write4k, read1m, readStream, writeStream, get, sandbox3, disk4k, create,
 *        s3read4k, s3list (these two need EFFECT_VOLUMES_S3_ENDPOINT / _ACCESS_KEY_ID / _SECRET_ACCESS_KEY)
 */
import { Effect, ManagedRuntime, Stream } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { join } from "node:path"
import * as S3Backend from "../dist/S3Backend.js"
import * as Sandbox from "../dist/Sandbox.js"
import type { VolumeBackend } from "../dist/VolumeBackend.js"
import * as Volume from "../dist/Volume.js"
import { bytes, localRuntime, removeTree, runner, scratchRoot } from "./common.js"
import { KiB, MiB } from "./runner.js"

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: Array<number>
}

const summary = (file: string): void => {
  const prof = JSON.parse(readFileSync(file, "utf8")) as { nodes: Array<Node>; samples: Array<number>; timeDeltas: Array<number> }
  const self = new Map<number, number>()
  prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)))
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const byFn = new Map<string, number>()
  for (const n of prof.nodes) {
    const t = self.get(n.id) ?? 0
    const url = n.callFrame.url.replace(/^.*\/(node_modules|src|bench)\//, "$1/")
    const key = `${n.callFrame.functionName || "(anon)"} ${url}:${n.callFrame.lineNumber + 1}`
    byFn.set(key, (byFn.get(key) ?? 0) + t)
  }
  const byFile = new Map<string, number>()
  for (const n of prof.nodes) {
    const url = n.callFrame.url.replace(/^.*\/(node_modules\/(@[^/]+\/)?[^/]+|src|bench)\/.*$/, "$1") || n.callFrame.functionName
    byFile.set(url, (byFile.get(url) ?? 0) + (self.get(n.id) ?? 0))
  }
  const top = (m: Map<string, number>, k: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([s, t]) => `${(100 * t / total).toFixed(1).padStart(5)}%  ${s}`).join("\n")
  console.log(`self time by package/dir:\n${top(byFile, 15)}\n\nself time by function:\n${top(byFn, 30)}`)
}

const s3Runner = () => {
  const env = process.env
  const rt = ManagedRuntime.make(S3Backend.layer({
    endpoint: env["EFFECT_VOLUMES_S3_ENDPOINT"]!,
    region: "us-east-1",
    bucket: "ev-bench-profile",
    prefix: `p-${Date.now()}`,
    credentials: { accessKeyId: env["EFFECT_VOLUMES_S3_ACCESS_KEY_ID"]!, secretAccessKey: env["EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY"]! }
  }))
  return <A, E>(e: Effect.Effect<A, E, any>): Promise<A> => rt.runPromise(e as Effect.Effect<A, E, VolumeBackend>)
}

let session: Session | undefined
const startProfile = async (): Promise<number> => {
  session = new Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: 200 })
  await session.post("Profiler.start")
  return performance.now()
}

const cases: Record<string, (run: <A, E>(e: Effect.Effect<A, E, any>) => Promise<A>, root: string) => Promise<void>> = {
  list: async (run) => {
    const n = Number(process.env["N"] ?? 3000)
    await run(Effect.forEach(Array.from({ length: n }, (_, i) => `l-${i}`), (x) => Volume.builder(x).create(), { concurrency: 8, discard: true }))
    const t = await startProfile()
    for (let i = 0; i < 20; i++) await run(Volume.list())
    console.error(`list ${n}: ${((performance.now() - t) / 20).toFixed(1)} ms`)
  },
  create: async (run) => {
    const t = await startProfile()
    for (let i = 0; i < 300; i++) await run(Effect.zipRight(Volume.builder(`c${i}`).create(), Volume.remove(`c${i}`)))
    console.error(`create+remove: ${((performance.now() - t) / 300).toFixed(2)} ms`)
  },
  get: async (run) => {
    const vol = await run(Volume.builder("g").create())
    const path = await run(vol.path())
    for (let i = 0; i < 1000; i++) writeFileSync(join(path, `f${i}`), "x".repeat(100))
    const t = await startProfile()
    for (let i = 0; i < 200; i++) await run(Volume.get("g"))
    console.error(`get 1000 files: ${((performance.now() - t) / 200).toFixed(2)} ms`)
  },
  write4k: async (run) => {
    const fs = (await run(Volume.builder("w").create())).fs()
    const data = bytes(4 * KiB)
    const t = await startProfile()
    for (let i = 0; i < 3000; i++) await run(fs.write("f", data))
    console.error(`write 4k: ${((performance.now() - t) / 3000).toFixed(3)} ms`)
  },
  read1m: async (run) => {
    const fs = (await run(Volume.builder("r").create())).fs()
    await run(fs.write("f", bytes(MiB)))
    const t = await startProfile()
    for (let i = 0; i < 1000; i++) await run(fs.read("f"))
    console.error(`read 1m: ${((performance.now() - t) / 1000).toFixed(3)} ms`)
  },
  readStream: async (run) => {
    const fs = (await run(Volume.builder("s").create())).fs()
    await run(fs.write("f", bytes(64 * MiB)))
    const t = await startProfile()
    for (let i = 0; i < 10; i++) await run(Stream.runDrain(fs.readStream("f")))
    console.error(`readStream 64m: ${((performance.now() - t) / 10).toFixed(1)} ms`)
  },
  writeStream: async (run) => {
    const fs = (await run(Volume.builder("ws").create())).fs()
    const chunk = bytes(64 * KiB)
    const t = await startProfile()
    for (let i = 0; i < 5; i++) await run(Stream.run(Stream.range(1, 2048).pipe(Stream.map(() => chunk)), fs.sink("f")))
    console.error(`writeStream 128m: ${((performance.now() - t) / 5).toFixed(1)} ms`)
  },
  s3read4k: async () => {
    const run = s3Runner()
    const fs = (await run(Volume.builder("r").create())).fs()
    await run(fs.write("f", bytes(4 * KiB)))
    const t = await startProfile()
    for (let i = 0; i < 500; i++) await run(fs.read("f"))
    console.error(`s3 read 4k: ${((performance.now() - t) / 500).toFixed(2)} ms`)
  },
  s3list: async () => {
    const run = s3Runner()
    await run(Effect.forEach(Array.from({ length: 500 }, (_, i) => `l-${i}`), (x) => Volume.builder(x).create(), { concurrency: 32, discard: true }))
    const t = await startProfile()
    for (let i = 0; i < 5; i++) await run(Volume.list())
    console.error(`s3 list 500: ${((performance.now() - t) / 5).toFixed(1)} ms`)
  },
  disk4k: async (run) => {
    const fs = (await run(Volume.builder("d").disk().size(256).create())).fs()
    const data = bytes(4 * KiB)
    const t = await startProfile()
    for (let i = 0; i < 50; i++) await run(fs.write("f", data))
    console.error(`disk write 4k: ${((performance.now() - t) / 50).toFixed(1)} ms`)
  },
  sandbox3: async (run) => {
    for (let i = 0; i < 3; i++) await run(Volume.builder(`m${i}`).create())
    let b = Sandbox.builder("p")
    for (let i = 0; i < 3; i++) b = b.volume(`/mnt/m${i}`, (m) => m.named(`m${i}`))
    const once = Effect.scoped(Effect.gen(function*() {
      const sb = yield* b.create()
      yield* sb.exec("true")
      yield* sb.stop()
    }))
    const t = await startProfile()
    for (let i = 0; i < 40; i++) await run(once)
    console.error(`sandbox 3 mounts: ${((performance.now() - t) / 40).toFixed(1)} ms`)
  }
}

const [which, arg] = process.argv.slice(2)
if (which === "--summary") {
  summary(arg!)
} else {
  const root = scratchRoot()
  const rt = localRuntime(join(root, "home"))
  try {
    await cases[which!]!(runner(rt) as any, root)
    if (session !== undefined) {
      const { profile } = await session.post("Profiler.stop")
      const out = arg ?? `/tmp/bench-${which}.cpuprofile`
      writeFileSync(out, JSON.stringify(profile))
      summary(out)
    }
  } finally {
    await rt.dispose()
    removeTree(root)
  }
}
