/**
 * `m.named(name).subpath(path)` (SPEC §12): only that directory of the volume is mounted,
 * it must exist, and a symlink on the way is refused, never followed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { symlinkSync } from "node:fs"
import { join } from "node:path"
import * as Mount from "../../src/Mount.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, leftOf, withHome } from "./support.js"

/** A directory volume "monorepo" holding services/api/main.txt and top.txt. */
const monorepo = Effect.gen(function*() {
  const vol = yield* Volume.builder("monorepo").create()
  yield* vol.fs().mkdir("/services/api")
  yield* vol.fs().write("/services/api/main.txt", "api\n")
  yield* vol.fs().write("/top.txt", "top\n")
  return vol
})

describe("subpath", () => {
  it.scopedLive("mounts only the subpath: its files are there, the rest of the volume is not", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        yield* monorepo
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("sub")
            .volume("/src", (m) => m.named("monorepo").subpath("services/api").readonly())
            .volume("/own", (m) => m.named("monorepo").subpath("/services/api").statVirtualization("strict").uid(1000))
            .create()
          const out = yield* sb.exec("sh", [
            "-c",
            "ls /src; cat /src/main.txt; ls /src/.. | grep -c top.txt; cat /src/../top.txt 2>/dev/null || echo unreachable; " +
            "stat -c %u /own/main.txt; echo w > /src/x 2>/dev/null || echo ro"
          ])
          assert.strictEqual(out.stdout, "main.txt\napi\n0\nunreachable\n1000\nro\n", out.stderr)
        }))
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("an absent subpath, a file, or a symlink on the way fail the start with InvalidConfig", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* monorepo
        const root = yield* vol.path()
        symlinkSync("/etc", join(root, "escape"))
        symlinkSync("services", join(root, "inner"))
        const start = (subpath: string) =>
          Effect.map(
            Effect.either(Effect.scoped(
              Sandbox.builder("bad").volume("/src", (m) => m.named("monorepo").subpath(subpath)).create()
            )),
            leftOf
          )
        const absent = yield* start("services/web")
        assert.strictEqual(absent._tag, "InvalidConfig")
        assert.include(absent.message, "does not exist")
        const file = yield* start("top.txt")
        assert.include(file.message, "is not a directory")
        for (const link of ["escape", "inner/api"]) {
          const refused = yield* start(link)
          assert.strictEqual(refused._tag, "InvalidConfig")
          assert.include(refused.message, "symlink")
        }
        yield* assertNothingLeft(dir)
      })
    ))

  it.effect("validation: relative, inside, a directory volume's named mount only", () =>
    Effect.gen(function*() {
      const invalid = (f: (m: Mount.MountBuilder) => Mount.MountBuilder, fragment: string) =>
        Effect.gen(function*() {
          const error = leftOf(yield* Effect.either(Mount.build("/p", f)))
          assert.include(error.message, fragment)
        })
      yield* invalid((m) => m.named("v").subpath("a/../../b"), `".." segment`)
      yield* invalid((m) => m.named("v").subpath("/"), "names the volume root")
      yield* invalid((m) => m.named("v").subpath("a:b"), `must not contain`)
      yield* invalid((m) => m.bind("/h").subpath("a"), "does not take subpath")
      yield* invalid((m) => m.namedWith("v", (n) => n.create().disk().size(16)).subpath("a"), "disk volume")
      const ok = yield* Mount.build("/p", (m) => m.named("v").subpath("a/b"))
      assert.isTrue(ok._tag === "Named" && Option.contains(ok.subpath, "a/b"))
    }))
})
