/**
 * The behavioural conformance suite (SPEC §2–§4) that every backend runs. It registers
 * `describe`/`it` blocks; each test builds its own backend from the given layer, so no
 * state leaks between tests.
 *
 * ```ts
 * conformanceSuite("MemoryBackend", MemoryBackend.layer, { supportsDisk: true, supportsPath: false, backendKind: "memory" })
 * ```
 */
import { describe } from "@effect/vitest"
import type { Layer } from "effect"
import type { VolumeBackend } from "../../src/VolumeBackend.js"
import { archiveTreesTests } from "./archiveTrees.js"
import { containmentTests } from "./containment.js"
import { diskTests } from "./disk.js"
import { errorsTests } from "./errors.js"
import { fileSystemTests } from "./fileSystem.js"
import { filesTests } from "./files.js"
import { layerClosedTests } from "./layerClosed.js"
import { lifecycleTests } from "./lifecycle.js"
import { lifecycle2Tests } from "./lifecycle2.js"
import { linksTests } from "./links.js"
import { pathsTests } from "./paths.js"
import { quotaTests } from "./quota.js"
import { resizeTests } from "./resize.js"
import { renamesTests } from "./renames.js"
import { snapshotsTests } from "./snapshots.js"
import { streamsTests } from "./streams.js"
import { watchTests } from "./watch.js"
import type { ConformanceOptions } from "./support.js"
import { makeContext } from "./support.js"

export type { ConformanceOptions } from "./support.js"

/** Registers the whole suite for one backend layer. */
export const conformanceSuite = (
  name: string,
  layer: Layer.Layer<VolumeBackend, unknown>,
  options: ConformanceOptions
): void => {
  const context = makeContext(layer, options)
  describe(`${name} conformance`, () => {
    lifecycleTests(context)
    lifecycle2Tests(context)
    resizeTests(context)
    renamesTests(context)
    filesTests(context)
    streamsTests(context)
    pathsTests(context)
    quotaTests(context)
    containmentTests(context)
    diskTests(context)
    errorsTests(context)
    snapshotsTests(context)
    linksTests(context)
    watchTests(context)
    fileSystemTests(context)
    layerClosedTests(context)
    archiveTreesTests(context)
  })
}
