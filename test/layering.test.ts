/**
 * The backends' rooms: a module under `src/internal/<backend>/` (local, s3, memory) is
 * imported only by modules of the same room and by that backend's public layer. Generic
 * modules get what they need from generic modules, or from the backend through its service.
 */
import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

const SRC = NodePath.resolve(import.meta.dirname, "../src")

/** The public layer allowed into each room. */
const ROOMS: Record<string, string> = {
  local: "LocalBackend.ts",
  s3: "S3Backend.ts",
  memory: "MemoryBackend.ts"
}

const sources = (dir: string): ReadonlyArray<string> =>
  NodeFs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = NodePath.join(dir, entry.name)
    return entry.isDirectory() ? sources(path) : entry.name.endsWith(".ts") ? [path] : []
  })

/** The room a file lies in, if any. */
const roomOf = (file: string): string | undefined => {
  const [top, room] = NodePath.relative(SRC, file).split(NodePath.sep)
  return top === "internal" && room !== undefined && room in ROOMS ? room : undefined
}

const IMPORT = /(?:import|export)\s[^"';]*?from\s+"(\.[^"]+)"|import\(\s*"(\.[^"]+)"\s*\)/g

describe("layering", () => {
  it("no module outside a backend's room imports from it, except that backend's layer", () => {
    const offences: Array<string> = []
    for (const file of sources(SRC)) {
      const own = roomOf(file)
      for (const match of NodeFs.readFileSync(file, "utf8").matchAll(IMPORT)) {
        const specifier = (match[1] ?? match[2])!
        const target = NodePath.resolve(NodePath.dirname(file), specifier.replace(/\.js$/, ".ts"))
        const room = roomOf(target)
        if (room === undefined || room === own) continue
        if (NodePath.relative(SRC, file) === ROOMS[room]) continue
        offences.push(`${NodePath.relative(SRC, file)} imports ${specifier}`)
      }
    }
    assert.deepStrictEqual(offences, [])
  })
})
