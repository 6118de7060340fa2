/**
 * Volume lifecycle on the local backend: create/remove and a 1 GiB disk volume (`get` and
 * `list` at many files and volumes are in scale.ts).
 */
import { Effect } from "effect"
import * as Volume from "../dist/Volume.js"
import { withLocalHome } from "./common.js"
import type { Row } from "./runner.js"
import { log, quick, sample } from "./runner.js"

export const run = (): Promise<Array<Row>> =>
  withLocalHome(async ({ run }) => {
    const rows: Array<Row> = []
    const area = "lifecycle (local)"
    log("lifecycle: create + remove")
    const cr = await sample((i) => run(Effect.zipRight(Volume.builder(`cr-${i}`).create(), Volume.remove(`cr-${i}`))), {
      batch: quick ? 5 : 20
    })
    rows.push({ area, operation: "create + remove a directory volume", ours: cr })

    log("lifecycle: 1 GiB disk volume")
    let last: string | undefined
    const disk = await sample((i) => run(Volume.builder((last = `disk-${i}`)).disk().size(1024).create()), {
      rounds: quick ? 2 : 5,
      before: async () => {
        if (last !== undefined) await run(Volume.remove(last))
        last = undefined
      }
    })
    if (last !== undefined) await run(Volume.remove(last))
    rows.push({ area, operation: "create a 1 GiB disk volume (ext4 image)", ours: disk, note: "remove untimed" })

    return rows
  })
