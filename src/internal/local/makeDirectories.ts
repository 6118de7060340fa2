/**
 * `mkdir -p` that fails at once where a directory cannot be made. Node's recursive
 * `mkdir` loops forever on some file systems (e.g. below `/proc`, where mkdir reports
 * ENOENT for a parent that exists); here every missing component is created once, from
 * the top, and the first failure is the answer.
 */
import { mkdir, stat } from "node:fs/promises"
import * as NodePath from "node:path"

/** Creates `dir` and its missing parents; rejects with the first component's error. */
export const makeDirectories = async (dir: string): Promise<void> => {
  const missing: Array<string> = []
  let current = NodePath.resolve(dir)
  for (;;) {
    const found = await stat(current).then(() => true, (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return false
      throw error
    })
    if (found) break
    missing.unshift(current)
    const parent = NodePath.dirname(current)
    if (parent === current) break
    current = parent
  }
  for (const path of missing) {
    await mkdir(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error
    })
  }
}
