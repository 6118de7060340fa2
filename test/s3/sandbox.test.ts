/**
 * A cloud volume mounted into a local namespace sandbox: materialised at start, the
 * sandbox's changes committed back to the object store at stop, three-way against what was
 * materialised (issue 16 item 3, issue 17 items 11 and 12). The other machine is a second
 * backend layer on the same bucket and prefix.
 */
import { Effect } from "effect"
import * as S3Backend from "../../src/S3Backend.js"
import { snapshotMountTests, twoMachines } from "../sandbox/snapshotMount.js"
import { bucketFor, describeS3, options, uniquePrefix } from "./support.js"

describeS3("snapshot mounts (S3Backend)", () => {
  snapshotMountTests(() =>
    Effect.suspend(() => {
      const settings = options(bucketFor("sandbox"), uniquePrefix())
      return twoMachines(() => S3Backend.layer(settings), "outside-the-layer")
    })
  )
})
