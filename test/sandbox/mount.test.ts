import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option, Schema } from "effect"
import * as Mount from "../../src/Mount.js"
import * as Size from "../../src/Size.js"
import { InvalidConfig } from "../../src/VolumeError.js"
import * as VolumeSpec from "../../src/VolumeSpec.js"

type Describe = (m: Mount.MountBuilder) => Mount.MountBuilder

/** Builds and expects `InvalidConfig` whose message contains every fragment. */
const expectInvalid = (
  guestPath: string,
  f: Describe,
  fragments: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    const result = yield* Effect.either(Mount.build(guestPath, f))
    assert.isTrue(Either.isLeft(result), `expected InvalidConfig for ${guestPath}`)
    if (Either.isLeft(result)) {
      assert.instanceOf(result.left, InvalidConfig)
      for (const fragment of fragments) {
        assert.include(result.left.message, fragment)
      }
    }
  })

const expectMountsInvalid = (
  mounts: ReadonlyArray<Mount.VolumeMount>,
  fragments: ReadonlyArray<string>,
  options?: Mount.ValidateMountsOptions
) =>
  Effect.gen(function*() {
    const result = yield* Effect.either(Mount.validateMounts(mounts, options))
    assert.isTrue(Either.isLeft(result), "expected InvalidConfig")
    if (Either.isLeft(result)) {
      assert.instanceOf(result.left, InvalidConfig)
      for (const fragment of fragments) assert.include(result.left.message, fragment)
    }
  })

const built = (guestPath: string, f: Describe) => Mount.build(guestPath, f)

describe("Mount.build: validation table (SPEC §5)", () => {
  const table: ReadonlyArray<readonly [rule: string, guestPath: string, f: Describe, fragments: ReadonlyArray<string>]> = [
    ["no kind chosen", "/data", (m) => m.readonly(), ['mount at "/data"', "no kind chosen"]],
    ["more than one kind chosen", "/data", (m) => m.bind("/srv").tmpfs(), [
      'mount at "/data"',
      "more than one kind",
      'bind("/srv")',
      "tmpfs()"
    ]],
    ["the same kind chosen twice", "/data", (m) => m.named("a").named("b"), ['named("a")', 'named("b")']],
    ["guest path not absolute", "data", (m) => m.tmpfs(), ['mount at "data"', "absolute"]],
    ["guest path empty", "", (m) => m.tmpfs(), ['mount at ""', "guest path"]],
    ["guest path is /", "/", (m) => m.tmpfs(), ['mount at "/"', 'must not be "/"']],
    ["guest path is // (root after normalising)", "//./", (m) => m.tmpfs(), ['must not be "/"']],
    ["guest path contains ,", "/a,b", (m) => m.tmpfs(), ['mount at "/a,b"', '","']],
    ["guest path contains :", "/a:b", (m) => m.tmpfs(), ['mount at "/a:b"', '":"']],
    ["guest path contains ;", "/a;b", (m) => m.tmpfs(), ['mount at "/a;b"', '";"']],
    ["guest path has a .. segment", "/a/../b", (m) => m.tmpfs(), ['mount at "/a/../b"', '".." segment']],
    ["guest path has a NUL byte", "/a\0b", (m) => m.tmpfs(), ["NUL"]],
    ["bind host path not absolute", "/data", (m) => m.bind("srv/data"), ['mount at "/data"', 'bind("srv/data")', "absolute"]],
    ["bind host path not UTF-8", "/data", (m) => m.bind("/srv/\ud800"), ['mount at "/data"', "UTF-8"]],
    ["bind host path contains ,", "/data", (m) => m.bind("/srv/a,b"), ['bind("/srv/a,b")', "host path"]],
    ["bind host path contains :", "/data", (m) => m.bind("/srv/a:b"), ['bind("/srv/a:b")', "host path"]],
    ["bind host path contains ;", "/data", (m) => m.bind("/srv/a;b"), ['bind("/srv/a;b")', "host path"]],
    ["disk image path not absolute", "/data", (m) => m.disk("img.raw"), ['disk("img.raw")', "absolute"]],
    ["disk image path contains :", "/data", (m) => m.disk("/img:1.raw"), ['disk("/img:1.raw")', "host path"]],
    ["size on a bind mount", "/data", (m) => m.bind("/srv").size(64), ['mount at "/data"', "bind mount", "size(64)"]],
    ["size on a named mount", "/data", (m) => m.named("v").size(64), ["named-volume mount", "size(64)", "n.size"]],
    ["size on a disk-image mount", "/data", (m) => m.disk("/i.raw").size(64), ["disk-image mount", "size(64)"]],
    ["format on a tmpfs", "/data", (m) => m.tmpfs().format("qcow2"), ["tmpfs mount", 'format("qcow2")']],
    ["fstype on a bind mount", "/data", (m) => m.bind("/srv").fstype("xfs"), ["bind mount", 'fstype("xfs")']],
    ["statVirtualization on a tmpfs", "/data", (m) => m.tmpfs().statVirtualization("strict"), [
      "tmpfs mount",
      'statVirtualization("strict")'
    ]],
    ["hostPermissions on a disk image", "/data", (m) => m.disk("/i.raw").hostPermissions("mirror"), [
      "disk-image mount",
      'hostPermissions("mirror")'
    ]],
    ["statVirtualization on a named disk volume", "/data", (m) =>
      m.namedWith("d", (n) => n.create().disk().size(128)).statVirtualization("relaxed"), [
      'mount at "/data"',
      'named volume "d"',
      "disk volume",
      'statVirtualization("relaxed")'
    ]],
    ["hostPermissions on a named disk volume", "/data", (m) =>
      m.namedWith("d", (n) => n.ensureExists().disk().size(128)).hostPermissions("private"), [
      "disk volume",
      'hostPermissions("private")'
    ]],
    ["off + mirror on a bind mount", "/data", (m) => m.bind("/srv").statVirtualization("off").hostPermissions("mirror"), [
      'mount at "/data"',
      'statVirtualization("off")',
      'hostPermissions("mirror")'
    ]],
    ["off + mirror on a named directory volume", "/data", (m) =>
      m.named("v").hostPermissions("mirror").statVirtualization("off"), ['statVirtualization("off")', 'hostPermissions("mirror")']],
    ["an unknown policy value (JS caller)", "/data", (m) => m.bind("/srv").statVirtualization("loose" as never), [
      'statVirtualization("loose")'
    ]],
    ["named volume name invalid", "/data", (m) => m.named("-bad"), ['mount at "/data"', 'named volume "-bad"', "must start"]],
    ["named volume name empty", "/data", (m) => m.named(""), ['named volume ""', "empty"]],
    ["named volume renamed to an invalid name", "/data", (m) => m.namedWith("ok", (n) => n.name("bad name")), [
      'named volume "bad name"'
    ]],
    ["disk() in existing mode", "/data", (m) => m.namedWith("v", (n) => n.disk()), [
      'named volume "v"',
      "disk()",
      '"existing"',
      "ensureExists"
    ]],
    ["size/quota/label in existing mode", "/data", (m) => m.namedWith("v", (n) => n.quota(10).label("team", "a")), [
      "quota(10)",
      'label("team", "a")',
      '"existing"'
    ]],
    ["disk named volume without a size (create)", "/data", (m) => m.namedWith("d", (n) => n.create().disk()), [
      'mount at "/data"',
      'volume "d"',
      "needs a size"
    ]],
    ["disk named volume without a size (ensureExists)", "/data", (m) => m.namedWith("d", (n) => n.ensureExists().disk()), [
      "needs a size"
    ]],
    ["size on a named directory volume", "/data", (m) => m.namedWith("v", (n) => n.create().size(128)), [
      'volume "v"',
      "size applies only to disk volumes"
    ]],
    ["quota on a named disk volume", "/data", (m) => m.namedWith("d", (n) => n.create().disk().size(128).quota(10)), [
      "quota applies only to directory volumes"
    ]],
    ["tmpfs size 0", "/scratch", (m) => m.tmpfs().size(0), ['mount at "/scratch"', "size(0)", "positive whole number"]],
    ["tmpfs size negative", "/scratch", (m) => m.tmpfs().size(-4), ["size(-4)"]],
    ["tmpfs size fractional", "/scratch", (m) => m.tmpfs().size(1.5), ["size(1.5)"]],
    ["fstype empty", "/data", (m) => m.disk("/i.raw").fstype(""), ['mount at "/data"', "fstype must not be empty"]],
    ["fstype with =", "/data", (m) => m.disk("/i.raw").fstype("ext4=x"), ['fstype "ext4=x"']],
    ["fstype with ,", "/data", (m) => m.disk("/i.raw").fstype("ext4,ro"), ['fstype "ext4,ro"']],
    ["an unknown format (JS caller)", "/data", (m) => m.disk("/i.raw").format("vdi" as never), ['format("vdi")']]
  ]
  for (const [rule, guestPath, f, fragments] of table) {
    it.effect(rule, () => expectInvalid(guestPath, f, fragments))
  }

  it.effect("accepts the typical flow's mounts", () =>
    Effect.gen(function*() {
      const named = yield* built("/root/.cache/pip", (m) => m.named("pip-cache"))
      assert.strictEqual(named._tag, "Named")
      const scratch = yield* built("/scratch", (m) => m.tmpfs().size(64))
      assert.deepStrictEqual(scratch, new Mount.TmpfsMount({ guestPath: "/scratch", sizeMib: Option.some(Size.mib(64)) }))
      const docker = yield* built("/var/lib/docker", (m) =>
        m.namedWith("docker-data", (n) => n.ensureExists().disk().size(Size.gib(1))))
      assert(docker._tag === "Named")
      assert.strictEqual(docker.mode, "ensureExists")
      assert.deepStrictEqual(docker.kind, Option.some("disk"))
      assert.deepStrictEqual(docker.capacityMib, Option.some(1024))
      yield* Mount.validateMounts([named, scratch, docker])
    }))

  it.effect("normalises the guest path and defaults creating modes to a directory volume", () =>
    Effect.gen(function*() {
      const mount = yield* built("/data//x/./", (m) => m.namedWith("v", (n) => n.create().label("a", "1").label("a", "2")))
      assert(mount._tag === "Named")
      assert.strictEqual(mount.guestPath, "/data/x")
      assert.deepStrictEqual(mount.kind, Option.some("directory"))
      assert.deepStrictEqual(mount.labels, [["a", "2"]])
      const existing = yield* built("/e", (m) => m.named("v"))
      assert(existing._tag === "Named")
      assert.strictEqual(existing.mode, "existing")
      assert.isTrue(Option.isNone(existing.kind))
    }))
})

describe("Mount.validateMounts", () => {
  it.effect("two mounts on the same guest path (trailing slash normalised)", () =>
    Effect.gen(function*() {
      const a = yield* built("/data", (m) => m.tmpfs())
      const b = new Mount.BindMount({ guestPath: "/data/", hostPath: "/srv" })
      yield* expectMountsInvalid([a, b], ['"/data"', '"/data/"', 'both mount on guest path "/data"'])
    }))

  it.effect("the same disk image mounted twice", () =>
    Effect.gen(function*() {
      const a = yield* built("/a", (m) => m.disk("/images/x.raw"))
      const b = yield* built("/b", (m) => m.disk("/images//x.raw").readonly())
      yield* expectMountsInvalid([a, b], ['mounts at "/a" and "/b"', 'disk image "/images/x.raw"'])
    }))

  it.effect("the same named disk volume mounted twice (names compared case-insensitively)", () =>
    Effect.gen(function*() {
      const a = yield* built("/a", (m) => m.namedWith("Data", (n) => n.ensureExists().disk().size(128)))
      const b = yield* built("/b", (m) => m.namedWith("data", (n) => n.ensureExists().disk().size(128)).readonly())
      yield* expectMountsInvalid([a, b], ['mounts at "/a" and "/b"', 'disk volume "data"'])
    }))

  it.effect("an existing named volume the runtime found to be a disk: mounted twice", () =>
    Effect.gen(function*() {
      const a = yield* built("/a", (m) => m.named("d"))
      const b = yield* built("/b", (m) => m.named("d"))
      yield* Mount.validateMounts([a, b]) // a directory volume may be mounted twice
      yield* expectMountsInvalid([a, b], ['disk volume "d"'], { resolvedKinds: new Map([["d", "disk"]]) })
    }))

  it.effect("a named disk volume with sharing policies (kind learnt at start)", () =>
    Effect.gen(function*() {
      const a = yield* built("/a", (m) => m.named("D").statVirtualization("strict"))
      yield* Mount.validateMounts([a])
      yield* expectMountsInvalid([a], ['mount at "/a"', "disk volume", 'statVirtualization("strict")'], {
        resolvedKinds: new Map([["d", "disk"]])
      })
    }))

  it.effect("a decoded mount gets the per-mount rules too", () =>
    Effect.gen(function*() {
      const decoded = yield* Schema.decodeUnknown(Mount.VolumeMountFromJson)(
        JSON.stringify({ _tag: "Named", guestPath: "/d", name: "d", mode: "create", kind: "disk", capacityMib: 128, hostPermissions: "mirror" })
      )
      yield* expectMountsInvalid([decoded], ['mount at "/d"', 'hostPermissions("mirror")'])
      const relative = yield* Schema.decodeUnknown(Mount.VolumeMountFromJson)(
        JSON.stringify({ _tag: "Bind", guestPath: "/b", hostPath: "relative" })
      )
      yield* expectMountsInvalid([relative], ['mount at "/b"', "absolute"])
    }))

  it.effect("distinct valid mounts pass", () =>
    Effect.gen(function*() {
      const mounts = yield* Effect.all([
        built("/a", (m) => m.bind("/srv/a").readonly().noexec().nosuid().nodev()),
        built("/a/b", (m) => m.tmpfs()),
        built("/c", (m) => m.disk("/images/c.qcow2")),
        built("/d", (m) => m.disk("/images/d.raw").fstype("xfs")),
        built("/e", (m) => m.named("shared")),
        built("/f", (m) => m.named("shared").readonly())
      ])
      yield* Mount.validateMounts(mounts)
    }))
})

describe("Mount: JSON round trip", () => {
  const encode = Schema.encode(Mount.VolumeMountFromJson)
  const decode = Schema.decodeUnknown(Mount.VolumeMountFromJson)
  const cases: ReadonlyArray<readonly [string, string, Describe, ReadonlyArray<string>, ReadonlyArray<string>]> = [
    ["bind without policies", "/b", (m) => m.bind("/srv"), [], ["statVirtualization", "hostPermissions"]],
    ["bind with policies", "/b", (m) => m.bind("/srv").readonly().statVirtualization("strict").hostPermissions("mirror"), [
      "statVirtualization",
      "hostPermissions"
    ], []],
    ["bind with one policy", "/b", (m) => m.bind("/srv").hostPermissions("private"), ["hostPermissions"], ["statVirtualization"]],
    ["named existing", "/n", (m) => m.named("v"), [], ["statVirtualization", "hostPermissions", "kind", "capacityMib", "quotaMib"]],
    ["named directory with policies", "/n", (m) =>
      m.namedWith("v", (n) => n.ensureExists().quota(10).label("k", "v")).statVirtualization("relaxed").nosuid(), [
      "statVirtualization",
      "quotaMib",
      "kind"
    ], ["hostPermissions", "capacityMib"]],
    ["named disk", "/n", (m) => m.namedWith("d", (n) => n.create().disk().size(256)), ["capacityMib", "kind"], [
      "statVirtualization",
      "hostPermissions",
      "quotaMib"
    ]],
    ["tmpfs", "/t", (m) => m.tmpfs(), [], ["sizeMib"]],
    ["tmpfs with size", "/t", (m) => m.tmpfs().size(4).noexec(), ["sizeMib"], []],
    ["disk image", "/i", (m) => m.disk("/images/a.vmdk").nodev(), ["format"], ["fstype"]],
    ["disk image with fstype", "/i", (m) => m.disk("/images/a.img").format("qcow2").fstype("xfs"), ["format", "fstype"], []]
  ]
  for (const [name, guestPath, f, present, absent] of cases) {
    it.effect(name, () =>
      Effect.gen(function*() {
        const mount = yield* built(guestPath, f)
        const json = yield* encode(mount)
        const object = JSON.parse(json) as Record<string, unknown>
        for (const key of present) assert.property(object, key)
        for (const key of absent) assert.notProperty(object, key)
        const back = yield* decode(json)
        assert.deepStrictEqual(back, mount)
        assert.strictEqual(yield* encode(back), json)
      }))
  }

  it.effect("flags default to false when absent from hand-written JSON", () =>
    Effect.gen(function*() {
      const mount = yield* decode(`{"_tag":"Tmpfs","guestPath":"/t"}`)
      assert.deepStrictEqual(mount, new Mount.TmpfsMount({ guestPath: "/t", sizeMib: Option.none() }))
      assert.isFalse(mount.readonly)
    }))
})

describe("Mount: disk format", () => {
  const formatOf = (hostPath: string, f: Describe = (m) => m) =>
    built("/i", (m) => f(m.disk(hostPath))).pipe(Effect.map((mount) => (mount._tag === "Disk" ? mount.format : undefined)))
  it.effect("defaults from the extension, else raw; an explicit format wins", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* formatOf("/images/a.qcow2"), "qcow2")
      assert.strictEqual(yield* formatOf("/images/A.QCOW2"), "qcow2")
      assert.strictEqual(yield* formatOf("/images/a.vmdk"), "vmdk")
      assert.strictEqual(yield* formatOf("/images/a.img"), "raw")
      assert.strictEqual(yield* formatOf("/images/a.raw"), "raw")
      assert.strictEqual(yield* formatOf("/images/qcow2"), "raw")
      assert.strictEqual(yield* formatOf("/images/a.qcow2", (m) => m.format("raw")), "raw")
      assert.strictEqual(Mount.defaultFormat("/x.vmdk"), "vmdk")
    }))
})

describe("Mount: builders are immutable", () => {
  it.effect("MountBuilder", () =>
    Effect.gen(function*() {
      const base = Mount.builder().bind("/srv")
      const readonly = base.readonly()
      const twoKinds = base.tmpfs()
      const withPolicy = base.statVirtualization("strict")
      const plain = yield* base.build("/b")
      assert(plain._tag === "Bind")
      assert.isFalse(plain.readonly)
      assert.isTrue(Option.isNone(plain.statVirtualization))
      const ro = yield* readonly.build("/b")
      assert.isTrue(ro.readonly)
      const policy = yield* withPolicy.build("/b")
      assert(policy._tag === "Bind")
      assert.deepStrictEqual(policy.statVirtualization, Option.some("strict"))
      assert.isTrue(Either.isLeft(yield* Effect.either(twoKinds.build("/b"))))
      assert.notStrictEqual(base, readonly)
    }))

  it.effect("NamedVolumeBuilder", () =>
    Effect.gen(function*() {
      let captured: Mount.NamedVolumeBuilder | undefined
      const mount = yield* built("/n", (m) =>
        m.namedWith("v", (n) => {
          captured = n
          const derived = n.ensureExists().disk().size(128).label("k", "v").name("w")
          assert.notStrictEqual(derived, n)
          return n.create()
        }))
      assert(captured !== undefined)
      assert.deepStrictEqual(captured.request, {
        name: "v",
        mode: "existing",
        kind: Option.none(),
        capacityMib: Option.none(),
        quotaMib: Option.none(),
        labels: []
      })
      assert(mount._tag === "Named")
      assert.strictEqual(mount.name, "v")
      assert.strictEqual(mount.mode, "create")
      assert.deepStrictEqual(mount.kind, Option.some("directory"))
    }))
})

describe("Mount.compatible (ensureExists)", () => {
  const existing: Mount.ExistingVolume = {
    kind: "directory",
    quotaMib: Option.some(100),
    capacityMib: Option.none(),
    labels: [["team", "a"], ["env", "dev"]]
  }
  const request = (patch: Partial<Mount.RequestedVolume>): Mount.RequestedVolume => ({
    kind: "directory",
    quotaMib: Option.none(),
    capacityMib: Option.none(),
    labels: [],
    ...patch
  })
  const table: ReadonlyArray<readonly [string, Mount.ExistingVolume, Mount.RequestedVolume, Option.Option<ReadonlyArray<string>>]> = [
    ["same kind, nothing else requested", existing, request({}), Option.none()],
    ["kind differs", existing, request({ kind: "disk", capacityMib: Option.some(128) }), Option.some([
      "directory volume",
      "disk volume was requested"
    ])],
    ["requested quota matches", existing, request({ quotaMib: Option.some(100) }), Option.none()],
    ["requested quota differs", existing, request({ quotaMib: Option.some(200) }), Option.some(["quota is 100 MiB", "quota(200)"])],
    ["quota requested, existing has none", { ...existing, quotaMib: Option.none() }, request({ quotaMib: Option.some(5) }), Option.some([
      "quota is none"
    ])],
    ["existing quota, none requested", existing, request({}), Option.none()],
    ["requested size matches", { ...existing, kind: "disk", quotaMib: Option.none(), capacityMib: Option.some(128) }, request({
      kind: "disk",
      capacityMib: Option.some(128)
    }), Option.none()],
    ["requested size differs", { ...existing, kind: "disk", quotaMib: Option.none(), capacityMib: Option.some(128) }, request({
      kind: "disk",
      capacityMib: Option.some(256)
    }), Option.some(["size is 128 MiB", "size(256)"])],
    ["a subset of labels matches", existing, request({ labels: [["team", "a"]] }), Option.none()],
    ["a label value differs", existing, request({ labels: [["team", "b"]] }), Option.some(['label "team" is "a"', 'label("team", "b")'])],
    ["a label is absent", existing, request({ labels: [["owner", "x"]] }), Option.some(['label "owner" is absent'])],
    ["a repeated requested label: the last value counts", existing, request({ labels: [["team", "z"], ["team", "a"]] }), Option.none()],
    ["every mismatch is reported", existing, request({ quotaMib: Option.some(1), labels: [["env", "prod"]] }), Option.some([
      "quota(1)",
      'label("env", "prod")'
    ])]
  ]
  for (const [name, have, want, expected] of table) {
    it(name, () => {
      const result = Mount.compatible(have, want)
      Option.match(expected, {
        onNone: () => assert.isTrue(Option.isNone(result), `unexpected: ${Option.getOrElse(result, () => "")}`),
        onSome: (fragments) => {
          assert.isTrue(Option.isSome(result))
          for (const fragment of fragments) assert.include(Option.getOrElse(result, () => ""), fragment)
        }
      })
    })
  }

  it("a VolumeSpec from toSpec is the request, and the existing volume is not modified", () => {
    const mount = new Mount.NamedMount({
      guestPath: "/n",
      name: "v",
      mode: "ensureExists",
      kind: Option.some("directory"),
      quotaMib: Option.some(Size.mib(100)),
      capacityMib: Option.none(),
      labels: [["team", "a"]]
    })
    const spec = Option.getOrThrow(Mount.toSpec(mount))
    assert.instanceOf(spec, VolumeSpec.VolumeSpec)
    const snapshot = JSON.stringify(existing)
    assert.isTrue(Option.isNone(Mount.compatible(existing, spec)))
    assert.strictEqual(JSON.stringify(existing), snapshot)
    assert.isTrue(Option.isNone(Mount.toSpec(new Mount.NamedMount({ guestPath: "/n", name: "v", mode: "existing" }))))
  })
})
