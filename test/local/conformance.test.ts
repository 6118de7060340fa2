import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as LocalBackend from "../../src/LocalBackend.js"
import { conformanceSuite } from "../conformance/suite.js"

/** A fresh home directory, deleted when the test's backend is torn down. */
const tempHome = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ev-local-conformance-"))),
  (home) => Effect.sync(() => NodeFs.rmSync(home, { recursive: true, force: true }))
)

/** Each test builds this layer on its own, so it gets its own home and database. */
const freshLocalBackend = Layer.unwrapScoped(Effect.map(tempHome, (home) => LocalBackend.layer({ home })))

conformanceSuite("LocalBackend", freshLocalBackend, {
  supportsDisk: true,
  supportsPath: true,
  backendKind: "local"
})
