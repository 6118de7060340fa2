/**
 * effect-volumes (local backend) against microsandbox's own Node SDK (npm `microsandbox`
 * 0.6.18, host-side Volume API, volumes in a throwaway HOME): create/get/list and the
 * whole-file rows.
 */
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import * as Volume from "../dist/Volume.js"
import { bytes, localRuntime, removeTree, runner, scratchRoot } from "./common.js"
import type { Row } from "./runner.js"
import { KiB, log, MiB, quick, samplePair, timeRatioTarget } from "./runner.js"
import { populate } from "./scale.js"

const area = "vs microsandbox 0.6.18"


/**
 * The SDK is installed on demand into bench/.deps, outside the project's lock file: its
 * optional per-platform packages for other systems are not all published, which breaks
 * `npm ci` when it is a dev dependency.
 */
const SDK_PACKAGES = ["microsandbox@0.6.18", "@superradcompany/microsandbox-linux-x64-gnu@0.6.18"]
const depsDir = resolve(import.meta.dirname, ".deps")

// The part of the SDK's API the bench uses.
interface MicrosandboxVolume {
  readonly builder: (name: string) => { quota(mib: number): any; create(): Promise<any> }
  readonly get: (name: string) => Promise<any>
  readonly list: () => Promise<ReadonlyArray<any>>
  readonly remove: (name: string) => Promise<void>
}

const loadSdk = async (): Promise<{ readonly Volume: MicrosandboxVolume }> => {
  const entry = join(depsDir, "node_modules", "microsandbox")
  if (!existsSync(entry)) {
    log("microsandbox: installing the SDK into bench/.deps (not part of the project's dependencies)")
    mkdirSync(depsDir, { recursive: true })
    execFileSync("npm", ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--omit=optional", "--prefix", depsDir, ...SDK_PACKAGES], { stdio: "inherit" })
  }
  const pkg = JSON.parse(await import("node:fs").then((fs) => fs.readFileSync(join(entry, "package.json"), "utf8")))
  const main = pkg.exports?.["."]?.import ?? pkg.exports?.["."]?.default ?? pkg.module ?? pkg.main ?? "index.js"
  return await import(pathToFileURL(join(entry, typeof main === "string" ? main : "index.js")).href)
}

export const run = async (): Promise<Array<Row>> => {
  const root = scratchRoot()
  const msbHome = join(root, "msb-home")
  mkdirSync(msbHome)
  const savedHome = process.env["HOME"]
  // The SDK keeps its database and volumes under $HOME/.microsandbox.
  process.env["HOME"] = msbHome
  let msb: { readonly Volume: MicrosandboxVolume }
  try {
    msb = await loadSdk()
  } catch (e) {
    process.env["HOME"] = savedHome
    removeTree(root)
    return [{ area, operation: "create/get/list and file rows", skipped: true, note: `microsandbox cannot be loaded here: ${String(e)}` }]
  }
  const { Volume: MVolume } = msb
  const rt = localRuntime(join(root, "home"))
  const run = runner(rt)
  const rows: Array<Row> = []
  const sdk = "microsandbox SDK"
  try {
    log("microsandbox: create + remove")
    const cr = await samplePair(
      (i) => run(Effect.zipRight(Volume.builder(`cr-${i}`).create(), Volume.remove(`cr-${i}`))),
      async (i) => {
        await MVolume.builder(`cr-${i}`).create()
        await MVolume.remove(`cr-${i}`)
      },
      { batch: quick ? 5 : 20 }
    )
    rows.push({
      area,
      operation: "create + remove a directory volume",
      ours: cr.ours,
      baselineLabel: `${sdk}: Volume.builder().create() + Volume.remove()`,
      baseline: cr.baseline,
      target: timeRatioTarget("no slower than microsandbox", cr.ours, cr.baseline, 1)
    })

    // get at 10 and 100,000 files (issue 14: ≤ 2x microsandbox's get at both sizes).
    const ours = await run(Volume.builder("data").create())
    const theirs = await MVolume.builder("data").create()
    const ourDir = await run(ours.path())
    let written = 0
    for (const files of quick ? [10, 1_000] : [10, 100_000]) {
      for (const dir of [ourDir, theirs.path]) populate(dir, written, files)
      written = files
      // Files written in the host directory are outside the library's view: one explicit
      // re-measure, then `get` reads the stored usage (as microsandbox's get does).
      await run(Volume.measure("data"))
      log(`microsandbox: get with ${files} files`)
      let ourUsed = 0
      let theirUsed = 0
      const g = await samplePair(
        async () => (ourUsed = (await run(Volume.get("data"))).usedBytes),
        async () => (theirUsed = (await MVolume.get("data")).usedBytes),
        { batch: quick ? 5 : 50 }
      )
      rows.push({
        area,
        operation: `get a volume with ${files.toLocaleString("en")} files`,
        ours: g.ours,
        baselineLabel: `${sdk}: Volume.get()`,
        baseline: g.baseline,
        target: timeRatioTarget("≤ 2x microsandbox's get", g.ours, g.baseline, 2),
        extra: `usedBytes: ours ${ourUsed.toLocaleString("en")}, theirs ${theirUsed.toLocaleString("en")}`
      })
    }

    let have = 1
    for (const count of quick ? [60, 200] : [60, 1_000]) {
      log(`microsandbox: creating ${count - have} volumes each`)
      const names = Array.from({ length: count - have }, (_, i) => `l-${have + i}`)
      have = count
      await run(Effect.forEach(names, (n) => Volume.builder(n).create(), { concurrency: 8, discard: true }))
      for (let i = 0; i < names.length; i += 8) await Promise.all(names.slice(i, i + 8).map((n) => MVolume.builder(n).create()))
      let n = 0
      let m = 0
      const l = await samplePair(
        async () => (n = (await run(Volume.list())).length),
        async () => (m = (await MVolume.list()).length),
        { rounds: quick ? 3 : 7, batch: count <= 60 ? 20 : 1 }
      )
      rows.push({
        area,
        operation: `list ${count.toLocaleString("en")} volumes`,
        ours: l.ours,
        baselineLabel: `${sdk}: Volume.list()`,
        baseline: l.baseline,
        ...(count === 60 ? { target: timeRatioTarget("no slower than microsandbox", l.ours, l.baseline, 1) } : {}),
        extra: `${n} vs ${m} listed`
      })
    }

    const ofs = ours.fs()
    const tfs = theirs.fs()
    for (const s of [
      { label: "4 KiB", size: 4 * KiB, batch: quick ? 50 : 300, rounds: quick ? 3 : 7 },
      { label: "1 MiB", size: MiB, batch: quick ? 5 : 30, rounds: quick ? 3 : 7 },
      { label: "64 MiB", size: 64 * MiB, batch: 1, rounds: quick ? 2 : 5 }
    ]) {
      log(`microsandbox: ${s.label}`)
      const data = bytes(s.size)
      const name = `/f-${s.size}`
      const w = await samplePair(() => run(ofs.write(name, data)), () => tfs.write(name, data), s)
      rows.push({
        area,
        operation: `write ${s.label}`,
        ours: w.ours,
        baselineLabel: `${sdk}: fs().write()`,
        baseline: w.baseline,
        bytes: s.size,
        ...(s.size === 64 * MiB ? { target: timeRatioTarget("≥ 3x microsandbox's throughput", w.ours, w.baseline, 1 / 3) } : {})
      })
      const r = await samplePair(() => run(ofs.read(name)), () => tfs.read(name), s)
      rows.push({
        area,
        operation: `read ${s.label}`,
        ours: r.ours,
        baselineLabel: `${sdk}: fs().read()`,
        baseline: r.baseline,
        bytes: s.size
      })
    }
  } finally {
    await rt.dispose()
    process.env["HOME"] = savedHome
    removeTree(root)
  }
  return rows
}
