/**
 * `volumes run -v SRC:/DST:OPTIONS` (issue 11 item 7), through the built binary: file-server
 * policies, guest ownership, subpaths, read-only and noexec; bad options are usage errors.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { assertOneLineError, assertUsageError, session } from "./harness.js"

describe("volumes run -v options", () => {
  it.scoped("workspace:/work:strict,private,uid=1000,gid=1000 and monorepo/services/api:/src:ro", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "workspace"])
      yield* ok(["create", "monorepo"])
      yield* ok([
        "run",
        "-v",
        "workspace:/w",
        "-v",
        "monorepo:/m",
        "--",
        "sh",
        "-c",
        "echo data > /w/f; chmod 644 /w/f; mkdir -p /m/services/api; touch /m/services/api/main.go /m/top-secret"
      ])
      const out = yield* ok([
        "run",
        "-v",
        "workspace:/work:strict,private,uid=1000,gid=1000",
        "-v",
        "monorepo/services/api:/src:ro",
        "--",
        "sh",
        "-c",
        "stat -c '%u:%g' /work/f; chown 0:0 /work/f; chmod 700 /work/f; stat -c '%u:%g %a' /work/f; " +
          "ls /src; ls /src/.. | grep -c top-secret; touch /src/x 2>&1 | grep -c 'Read-only'"
      ])
      assert.strictEqual(out.stdout, "1000:1000\n0:0 700\nmain.go\n0\n1\n")
      // private: the host inode kept its mode
      const host = yield* ok(["run", "-v", "workspace:/w", "--", "stat", "-c", "%a", "/w/f"])
      assert.strictEqual(host.stdout, "644\n")
      const noexec = yield* volumes([
        "run",
        "-v",
        "workspace:/w:noexec,relaxed,mirror",
        "--",
        "sh",
        "-c",
        "cp /bin/true /w/t && /w/t"
      ])
      assert.strictEqual(noexec.code, 126, noexec.stderr)
    }))

  it.scoped("bad options are usage errors naming the option; policies on a kind that cannot take them are InvalidConfig", () =>
    Effect.gen(function*() {
      const { ok, volumes } = yield* session
      yield* ok(["create", "v"])
      assertUsageError(yield* volumes(["run", "-v", "v:/v:fast", "--", "true"]), `unknown option "fast"`, "volumes run")
      assertUsageError(yield* volumes(["run", "-v", "v:/v:uid=me", "--", "true"]), `"uid=me"`, "volumes run")
      assertUsageError(yield* volumes(["run", "-v", "v:/v:ro,rw", "--", "true"]), `"rw"`, "volumes run")
      assertUsageError(yield* volumes(["run", "-v", "v:/v:strict,relaxed", "--", "true"]), `"relaxed"`, "volumes run")
      assertUsageError(yield* volumes(["run", "-v", "v:/v:ro=1", "--", "true"]), `"ro=1"`, "volumes run")
      assertOneLineError(yield* volumes(["run", "-v", "v:/v:off,mirror", "--", "true"]), 3, "mirror")
      assertOneLineError(yield* volumes(["run", "-v", "v:/v:uid=1", "--", "true"]), 3, "uid(1)")
      assertOneLineError(yield* volumes(["run", "-v", "v/absent:/v", "--", "true"]), 3, "absent")
    }))
})
