/**
 * A cloud volume mounted into a local namespace sandbox: materialised at start, the
 * sandbox's changes committed back to the object store at stop (issue 4, item 7).
 */
import { snapshotMountTests } from "../sandbox/snapshotMount.js"
import { bucketFor, describeS3, freshLayer } from "./support.js"

describeS3("snapshot mounts (S3Backend)", () => {
  snapshotMountTests(() => freshLayer(bucketFor("sandbox")))
})
