import { conformanceSuite } from "../conformance/suite.js"
import { bucketFor, describeS3, freshLayer } from "./support.js"

describeS3("S3Backend (RADOS Gateway)", () => {
  conformanceSuite("S3Backend", freshLayer(bucketFor("conformance")), {
    supportsDisk: false,
    supportsPath: false,
    backendKind: "cloud"
  })
})
