import * as MemoryBackend from "../../src/MemoryBackend.js"
import { conformanceSuite } from "../conformance/suite.js"

conformanceSuite("MemoryBackend", MemoryBackend.layer, {
  supportsDisk: true,
  supportsPath: false,
  backendKind: "memory"
})
