/**
 * One stream measurement in a fresh process, so its peak RSS is its own:
 *   streamChild.ts <ours|node|node-atomic> <read|write> <bytes> <rounds> <home|dir> [volume]
 * `node` writes the file in place with createWriteStream; `node-atomic` gives node:fs the
 * guarantee our sink has: createWriteStream into a temporary file, then rename over the target.
 * Prints {"ms":[…one per round],"maxRssMiB":…,"baseRssMiB":…} (maxRSS of the whole process; base = before the transfer).
 */
import { Stream } from "effect"
import { createReadStream, createWriteStream, renameSync } from "node:fs"
import { join } from "node:path"
import { once } from "node:events"
import * as Volume from "../dist/Volume.js"
import { localRuntime, runner } from "./common.js"

const [impl, op, sizeArg, roundsArg, where, volume] = process.argv.slice(2)
const size = Number(sizeArg)
const CHUNK = 64 * 1024
const chunk = new Uint8Array(CHUNK).map((_, i) => (i * 7) & 0xff)
const chunks = Math.ceil(size / CHUNK)
const maxRssMiB = () => process.resourceUsage().maxRSS / 1024

const rounds = Number(roundsArg)
const main = async (): Promise<Array<number>> => {
  const out: Array<number> = []
  if (impl === "node" || impl === "node-atomic") {
    for (let r = 0; r < rounds; r++) {
    const path = join(where!, "stream.bin")
    const start = performance.now()
    if (op === "write") {
      const target = impl === "node" ? path : join(where!, `.stream.bin.${process.pid}.tmp`)
      const out = createWriteStream(target)
      for (let i = 0; i < chunks; i++) {
        if (!out.write(chunk)) await once(out, "drain")
      }
      out.end()
      await once(out, "close")
      if (target !== path) renameSync(target, path)
    } else {
      let n = 0
      for await (const c of createReadStream(path, { highWaterMark: CHUNK })) n += (c as Buffer).length
      if (n !== size) throw new Error(`read ${n} of ${size}`)
    }
    out.push(performance.now() - start)
    }
    return out
  }
  const rt = localRuntime(where!)
  const run = runner(rt)
  const fs = (await run(Volume.get(volume!))).fs()
  for (let r = 0; r < rounds; r++) {
  const start = performance.now()
  if (op === "write") {
    await run(Stream.run(Stream.range(1, chunks).pipe(Stream.map(() => chunk)), fs.sink("stream.bin")))
  } else {
    const n = await run(Stream.runFold(fs.readStream("stream.bin"), 0, (acc, c) => acc + c.length))
    if (n !== size) throw new Error(`read ${n} of ${size}`)
  }
  out.push(performance.now() - start)
  }
  await rt.dispose()
  return out
}

const base = maxRssMiB()
main().then(
  (ms) => console.log(JSON.stringify({ ms, maxRssMiB: maxRssMiB(), baseRssMiB: base })),
  (e) => {
    console.error(e)
    process.exit(1)
  }
)
