/**
 * `makeTrusted` (src/internal/trustedClass.ts) builds the backends' reports without the
 * `Schema.Class` constructor; these must be the same values the constructor makes: equal,
 * hashed alike, instances of the class, and encoded alike.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Equal, Hash, Option, Schema } from "effect"
import * as Size from "../src/Size.js"
import { LocalState, VolumeInfo, VolumeUsage } from "../src/VolumeBackend.js"
import { makeTrusted } from "../src/internal/trustedClass.js"

const usage = { logicalBytes: 10, allocatedBytes: 4096, files: 1 }
const local = new LocalState({ home: "/h", directory: "/h/volumes/a", dataPath: Option.some("/h/volumes/a/data") })
const fields = (withUsage: boolean) => ({
  name: "a",
  kind: withUsage ? "directory" as const : "disk" as const,
  backendKind: "local" as const,
  quotaMib: withUsage ? Option.some(Size.mib(5)) : Option.none(),
  capacityMib: withUsage ? Option.none() : Option.some(Size.mib(64)),
  labels: [["team", "x"]] as const,
  createdAt: DateTime.unsafeMake(1_700_000_000_000),
  expiresAt: Option.none(),
  lastUsedAt: Option.some(DateTime.unsafeMake(1_700_000_100_000)),
  usedBytes: 10,
  diskPath: withUsage ? Option.none() : Option.some("/h/volumes/a/disk.raw"),
  local: Option.some(local),
  cloud: Option.none()
})

describe("makeTrusted", () => {
  for (const withUsage of [true, false]) {
    it(`gives the constructor's value (${withUsage ? "directory, with usage" : "disk, without usage"})`, () => {
      // One set of field values for both (plain arrays are equal only to themselves).
      const base = fields(withUsage)
      const trusted = makeTrusted(VolumeInfo, withUsage ? { ...base, usage: makeTrusted(VolumeUsage, usage) } : base)
      // What the backends made before: the constructor, validation off (with validation
      // on, the constructor copies arrays, and plain arrays are equal only to themselves).
      const made = new VolumeInfo(withUsage ? { ...base, usage: new VolumeUsage(usage) } : base, { disableValidation: true })
      assert.doesNotThrow(() => new VolumeInfo(withUsage ? { ...base, usage: new VolumeUsage(usage) } : base))
      assert.isTrue(trusted instanceof VolumeInfo)
      assert.isTrue(Schema.is(VolumeInfo)(trusted))
      assert.isTrue(Equal.equals(trusted, made))
      assert.strictEqual(Hash.hash(trusted), Hash.hash(made))
      assert.deepStrictEqual(Schema.encodeSync(VolumeInfo)(trusted), Schema.encodeSync(VolumeInfo)(made))
      assert.deepStrictEqual(Object.keys(trusted).sort(), Object.keys(made).sort())
    })
  }

  it("a changed field makes a different value", () => {
    const base = fields(false)
    const a = makeTrusted(VolumeInfo, base)
    assert.isTrue(Equal.equals(a, makeTrusted(VolumeInfo, { ...base })))
    const b = makeTrusted(VolumeInfo, { ...base, usedBytes: 11 })
    assert.isFalse(Equal.equals(a, b))
  })
})
