/**
 * Snapshot mounts of a volume without a host directory, on the memory backend.
 */
import { describe } from "@effect/vitest"
import * as MemoryBackend from "../../src/MemoryBackend.js"
import { snapshotMountTests, twoMachines } from "./snapshotMount.js"

describe("snapshot mounts (MemoryBackend)", () => {
  snapshotMountTests(() => twoMachines(() => MemoryBackend.layer, "shared-by-one-layer"))
})
