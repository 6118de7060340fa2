/**
 * The escape suite: for each isolation promise of the namespace runtime (docs/sandboxes.md),
 * sandboxed code tries what must be refused, against real bubblewrap, and the host is
 * checked to be unaffected.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Schedule, Stream } from "effect"
import { execFileSync } from "node:child_process"
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Archive from "../../src/Archive.js"
import * as Tar from "../../src/internal/archive/tarEncode.js"
import * as Cgroups from "../../src/internal/namespace/cgroups.js"
import * as Etc from "../../src/internal/namespace/etc.js"
import { HOST_ID_BASE } from "../../src/internal/namespace/idmap.js"
import { TEMP_PREFIX } from "../../src/internal/paths.js"
import type { ExecEvent } from "../../src/Sandbox.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, leftOf, leftoverCgroups, processesMentioning, withHome } from "./support.js"

const sh = (sb: Sandbox.Sandbox, script: string) => sb.exec("sh", ["-c", script])

/** The host pids of processes whose command line mentions `marker`. */
const pidsOf = (marker: string): ReadonlyArray<number> =>
  processesMentioning(marker).map((line) => Number(line.slice(0, line.indexOf(":"))))

/** This test process's cgroup of sandbox `name` under the `controller` hierarchy. */
const cgroupOf = (name: string, file: string): string => {
  const found = leftoverCgroups().filter((dir) => dir.includes(`-${name}-`)).map((dir) => join(dir, file))
    .filter((path) => {
      try {
        statSync(path)
        return true
      } catch {
        return false
      }
    })
  assert.lengthOf(found, 1, `one cgroup of ${name} has ${file}`)
  return found[0]!
}

describe("escape suite: host secrets through image host", () => {
  it.scopedLive("shadow, gshadow, sudoers, ssh keys and ssl/private are absent; every file in /etc is world-readable on the host", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("etc").create()
          const shadow = yield* sh(sb, "cat /etc/shadow")
          assert.notStrictEqual(shadow.exitCode, 0, "cat /etc/shadow fails")
          assert.strictEqual(shadow.stdout, "")
          for (const secret of ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private"]) {
            assert.strictEqual((yield* sb.exec("test", ["-e", secret])).exitCode, 1, `${secret} is absent`)
          }
          // What programs need is there.
          const needed = yield* sh(
            sb,
            "getent passwd root && getent hosts localhost >/dev/null && test -s /etc/ld.so.cache && " +
              "test -s /etc/ssl/certs/ca-certificates.crt && test -e /etc/os-release && echo fine"
          )
          assert.strictEqual(needed.exitCode, 0, needed.stderr)
          assert.match(needed.stdout, /^root:x:0:0:/)
          assert.include(needed.stdout, "fine")
          const passwd = (yield* sb.exec("cat", ["/etc/passwd"])).stdout
          for (const line of passwd.trim().split("\n")) assert.strictEqual(line.split(":")[1], "x", `no password hash: ${line}`)
          assert.match(passwd, /^nobody:x:65534:/m)
          // Everything visible under /etc is a host file anybody on the host may read.
          const listed = (yield* sh(sb, "find /etc -xdev \\( -type f -o -type d \\) -print; find /etc -mindepth 1 -type f -print | head -c 0")).stdout
          const paths = listed.trim().split("\n").filter((path) => path !== "/etc/passwd" && path !== "/etc/group")
          assert.isAbove(paths.length, 20)
          for (const path of paths) {
            const stat = statSync(path)
            const needs = stat.isDirectory() ? 0o005 : 0o004
            assert.strictEqual(stat.mode & needs, needs, `${path} is world-readable on the host`)
          }
          // A read-only /etc: nothing can be planted there.
          assert.notStrictEqual((yield* sh(sb, "echo x > /etc/hosts")).exitCode, 0)
        }))
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("a host file can still be added under /etc with an explicit bind mount", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const extra = join(dir, "extra.conf")
        writeFileSync(extra, "added on purpose\n")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("etcbind").volume("/etc/extra.conf", (m) => m.bind(extra).readonly()).create()
          const out = yield* sh(sb, "cat /etc/extra.conf && test -s /etc/ld.so.cache && cat /etc/os-release >/dev/null && echo rest")
          assert.strictEqual(out.stdout, "added on purpose\nrest\n", out.stderr)
          assert.strictEqual((yield* sb.exec("test", ["-e", "/etc/shadow"])).exitCode, 1)
          assert.include((yield* sh(sb, "echo x > /etc/planted")).stderr, "Read-only file system")
        }))
      })
    ))

  it("the copy leaves out owner-only files (also inside allowlisted directories) and follows host changes", () => {
    const work = mkdtempSync(join(tmpdir(), "ev-etc-test-"))
    try {
      const root = join(work, "etc")
      mkdirSync(join(root, "ssl/certs"), { recursive: true })
      mkdirSync(join(root, "ssl/private"), { mode: 0o700 })
      writeFileSync(join(root, "ssl/certs/ca.pem"), "cert")
      writeFileSync(join(root, "ssl/certs/leaked.key"), "secret", { mode: 0o600 })
      symlinkSync("ca.pem", join(root, "ssl/certs/1234.0"))
      writeFileSync(join(root, "ssl/private/server.key"), "secret")
      writeFileSync(join(root, "hosts"), "127.0.0.1 localhost\n")
      writeFileSync(join(root, "resolv.conf"), "nameserver 10.0.0.1\n", { mode: 0o600 })
      writeFileSync(join(root, "shadow"), "root:$6$hash:1::::::\n")
      writeFileSync(join(root, "passwd"), "root:$6$inline:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nfar:x:70000:70000::/:/bin/sh\n")
      const cache = join(work, "cache")
      const copy = Etc.curated(cache, root)
      const files = execFileSync("find", [".", "-printf", "%p %y\n"], { cwd: copy, encoding: "utf8" }).trim().split("\n").sort()
      assert.deepStrictEqual(files, [
        ". d",
        "./group f",
        "./hosts f",
        "./passwd f",
        "./ssl d",
        "./ssl/certs d",
        "./ssl/certs/1234.0 l",
        "./ssl/certs/ca.pem f"
      ])
      assert.strictEqual(
        readFileSync(join(copy, "passwd"), "utf8"),
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nroot:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        "no password hash, no unmapped id"
      )
      assert.strictEqual(Etc.curated(cache, root), copy, "unchanged host: the same copy")
      writeFileSync(join(root, "hosts"), "127.0.0.1 localhost changed\n")
      const changed = Etc.curated(cache, root)
      assert.notStrictEqual(changed, copy)
      assert.strictEqual(readFileSync(join(changed, "hosts"), "utf8"), "127.0.0.1 localhost changed\n")
      chmodSync(join(root, "hosts"), 0o600)
      assert.isFalse(existsSync(join(Etc.curated(cache, root), "hosts")), "a file made owner-only disappears")
      // Listings of unchanged directories are reused (etc.ts): what changes in one is still seen,
      // also right after a survey that reused it.
      const certs = join(root, "ssl/certs")
      const settle = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 80)
      settle()
      const listed = Etc.curated(cache, root)
      assert.strictEqual(Etc.curated(cache, root), listed, "unchanged: the same copy from the reused listing")
      writeFileSync(join(certs, "new.pem"), "new cert")
      symlinkSync("new.pem", join(certs, "5678.0"))
      const added = Etc.curated(cache, root)
      assert.strictEqual(readFileSync(join(added, "ssl/certs/new.pem"), "utf8"), "new cert")
      assert.strictEqual(readlinkSync(join(added, "ssl/certs/5678.0")), "new.pem")
      settle()
      assert.strictEqual(Etc.curated(cache, root), added)
      rmSync(join(certs, "1234.0"))
      symlinkSync("new.pem", join(certs, "1234.0"))
      assert.strictEqual(readlinkSync(join(Etc.curated(cache, root), "ssl/certs/1234.0")), "new.pem", "a re-pointed link")
      settle()
      Etc.curated(cache, root)
      writeFileSync(join(certs, "ca.pem"), "cert, edited")
      assert.strictEqual(readFileSync(join(Etc.curated(cache, root), "ssl/certs/ca.pem"), "utf8"), "cert, edited")
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  })
})

describe("escape suite: unprivileged identity", () => {
  it.scopedLive("root inside is an unprivileged host id; host files outside the mounts are not its own", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const hostname = readFileSync("/proc/sys/kernel/hostname", "utf8")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("who").create()
          const ids = yield* sh(sb, "id -u; id -g; cat /proc/self/uid_map; stat -c %u /usr/bin/env /etc/hosts")
          const lines = ids.stdout.trim().split("\n").map((line) => line.trim().split(/\s+/).join(" "))
          assert.deepStrictEqual(lines, ["0", "0", `0 ${HOST_ID_BASE} 65536`, "65534", "65534"], ids.stderr)
          // From the host, the sandbox's processes belong to the unprivileged id.
          yield* sh(sb, "sleep 3333.25 >/dev/null 2>&1 &")
          const [pid] = pidsOf("sleep 3333.25")
          assert.isDefined(pid)
          const status = readFileSync(`/proc/${pid}/status`, "utf8")
          assert.match(status, new RegExp(`^Uid:\\s+${HOST_ID_BASE}\\s+${HOST_ID_BASE}\\s+${HOST_ID_BASE}\\s+${HOST_ID_BASE}$`, "m"))
          // Writing host state outside the mounts is refused.
          for (const attempt of ["echo evil > /proc/sys/kernel/hostname", "echo c > /proc/sysrq-trigger", "touch /usr/bin/evil"]) {
            const out = yield* sh(sb, attempt)
            assert.notStrictEqual(out.exitCode, 0, `${attempt} is refused`)
          }
        }))
        assert.strictEqual(readFileSync("/proc/sys/kernel/hostname", "utf8"), hostname)
        assert.isFalse(statSync("/usr/bin/evil", { throwIfNoEntry: false }) !== undefined)
        yield* assertNothingLeft(dir, "sleep 3333.25")
      })
    ))

  it.scopedLive("volumes stay readable and writable, with the host's ownership on both sides", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("workspace").create()
        yield* vol.fs().write("/byhost", "from the host\n")
        yield* vol.fs().write("/rootfile", "root's\n")
        const volumeDir = yield* vol.path()
        chownSync(join(volumeDir, "byhost"), 1000, 1000)
        const bound = join(dir, "bound")
        mkdirSync(bound)
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("agent")
            .memory(Size.mib(256))
            .cpus(1)
            .pids(128)
            .volume("/work", (m) => m.named("workspace"))
            .volume("/bound", (m) => m.bind(bound))
            .create()
          const ok = yield* sh(sb, "echo ok > /work/f && cat /work/f")
          assert.strictEqual(ok.stdout, "ok\n", ok.stderr)
          const owners = yield* sh(
            sb,
            "stat -c '%u:%g' /work/byhost /work/rootfile && cat /work/byhost && echo more >> /work/rootfile && " +
              "mkdir /bound/d && echo b > /bound/d/f && echo done"
          )
          assert.strictEqual(owners.stdout, "1000:1000\n0:0\nfrom the host\ndone\n", owners.stderr)
          // Root without capabilities, as before: another user's file is not writable.
          const other = yield* sh(sb, "echo more >> /work/byhost")
          assert.include(other.stderr, "Permission denied")
        }))
        const stat = statSync(join(volumeDir, "f"))
        assert.deepStrictEqual([stat.uid, stat.gid], [0, 0], "a file the sandbox's root wrote is root's on the host")
        assert.strictEqual(yield* vol.fs().readToString("/f"), "ok\n")
        assert.strictEqual(readFileSync(join(volumeDir, "rootfile"), "utf8"), "root's\nmore\n")
        assert.strictEqual(readFileSync(join(volumeDir, "byhost"), "utf8"), "from the host\n")
        assert.strictEqual(statSync(join(bound, "d/f")).uid, 0)
        assert.strictEqual(readFileSync(join(bound, "d/f"), "utf8"), "b\n")
        yield* assertNothingLeft(dir)
      })
    ))
})

/** System calls tried from python3 through ctypes: name, x86_64 number, arguments. */
const SYSCALLS: ReadonlyArray<readonly [string, number, ReadonlyArray<number>]> = [
  // Each of these would succeed for an unprivileged user without the filter.
  ["unshare(CLONE_NEWUSER)", 272, [0x10000000]],
  ["keyctl(GET_KEYRING_ID)", 250, [0, -3, 0]],
  ["ptrace(TRACEME)", 101, [0, 0, 0, 0]],
  ["userfaultfd(USER_MODE_ONLY)", 323, [1]],
  ["add_key", 248, [0, 0, 0, 0, 0]],
  ["request_key", 249, [0, 0, 0, 0]],
  ["bpf", 321, [0, 0, 0]],
  ["perf_event_open", 298, [0, 0, -1, -1, 0]],
  ["kexec_load", 246, [0, 0, 0, 0]],
  ["init_module", 175, [0, 0, 0]],
  ["finit_module", 313, [-1, 0, 0]],
  ["delete_module", 176, [0, 0]],
  ["mount", 165, [0, 0, 0, 0, 0]],
  ["umount2", 166, [0, 0]],
  ["setns", 308, [-1, 0x10000000]],
  ["open_by_handle_at", 304, [-1, 0, 0]],
  ["io_uring_setup", 425, [1, 0]]
]

describe("escape suite: seccomp", () => {
  it.scopedLive("forbidden system calls fail with EPERM; ordinary ones work", () =>
    withHome(() =>
      Effect.gen(function*() {
        const sb = yield* Sandbox.builder("calls").create()
        const script = [
          "import ctypes",
          "libc = ctypes.CDLL(None, use_errno=True)",
          "libc.syscall.restype = ctypes.c_long",
          `calls = ${JSON.stringify(SYSCALLS)}`,
          "print('getpid', libc.syscall(39) > 0)",
          "for name, nr, args in calls:",
          "    ctypes.set_errno(0)",
          "    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])",
          "    print(name, r, ctypes.get_errno())"
        ].join("\n")
        const out = yield* sb.exec("python3", ["-c", script])
        assert.strictEqual(out.exitCode, 0, out.stderr)
        const lines = out.stdout.trim().split("\n")
        assert.strictEqual(lines[0], "getpid True")
        assert.deepStrictEqual(lines.slice(1), SYSCALLS.map(([name]) => `${name} -1 1`))
        const tools = yield* sh(sb, "unshare -U true; echo $?; grep Seccomp: /proc/self/status")
        assert.match(tools.stderr, /Operation not permitted/)
        assert.strictEqual(tools.stdout.split("\n")[0], "1")
        assert.match(tools.stdout, /Seccomp:\s+2/)
      })
    ))
})

describe("escape suite: resource limits", () => {
  it.scopedLive("a fork bomb stops at the pids limit inside; the host keeps forking; stop ends it all", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        // A forker whose children stay alive holding their pids, so the limit stays hit
        // until stop (a shell `bomb | bomb &` collapses by itself once forks fail).
        const marker = "fork-bomb-marker"
        const forker = [
          `# ${marker}`,
          "import os, time",
          "while True:",
          "    try:",
          "        if os.fork() == 0:",
          "            time.sleep(3600)",
          "            os._exit(0)",
          "    except OSError:",
          "        time.sleep(0.05)"
        ].join("\n")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("bomb").pids(64).cpus(0.5).create()
          yield* sh(sb, `python3 -c '${forker}' >/dev/null 2>&1 &`)
          const events = cgroupOf("bomb", "pids.events")
          const max = cgroupOf("bomb", "pids.max")
          const current = cgroupOf("bomb", "pids.current")
          assert.strictEqual(readFileSync(max, "utf8").trim(), "64")
          // Wait until forks are refused inside (the limit was hit there, not on the host).
          yield* Effect.sync(() => Number(/max (\d+)/.exec(readFileSync(events, "utf8"))?.[1] ?? 0))
            .pipe(Effect.repeat({ until: (n) => n > 0, schedule: Schedule.spaced("50 millis"), times: 400 }))
          assert.isAtMost(Number(readFileSync(current, "utf8")), 64)
          assert.strictEqual(execFileSync("sh", ["-c", "echo host forks"], { encoding: "utf8" }), "host forks\n")
          assert.isNotEmpty(processesMentioning(marker))
        }))
        yield* assertNothingLeft(dir, marker)
      })
    ))

  it.scopedLive("512 MiB in a 256 MiB sandbox is killed (137, OutOfMemory); 32 MiB lives; stop cleans up", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("oom").memory(Size.mib(256)).create()
          const big = ["-c", "b = bytearray(512 * 1024 * 1024)"]
          const error = yield* Effect.flip(sb.exec("python3", big))
          assert.strictEqual(error.reason, "OutOfMemory")
          assert.include(error.message, "137")
          assert.include(error.message, "256 MiB")
          // The stream shows the exit status before it fails.
          const seen: Array<ExecEvent> = []
          const streamed = yield* Effect.flip(Stream.runForEach(sb.execStream("python3", big), (event) =>
            Effect.sync(() => {
              seen.push(event)
            })))
          assert.strictEqual(streamed.reason, "OutOfMemory")
          assert.deepStrictEqual(seen.at(-1), Sandbox.ExecEvent.Exit({ exitCode: 137 }))
          const small = yield* sb.exec("python3", ["-c", "b = bytearray(32 * 1024 * 1024); print('lives')"])
          assert.strictEqual(small.stdout, "lives\n", small.stderr)
          // A process killed otherwise is just an exit status.
          assert.strictEqual((yield* sh(sb, "kill -9 $$")).exitCode, 137)
          const stopped = yield* sb.stop()
          assert.strictEqual(stopped.sandbox, "oom")
        }))
        yield* assertNothingLeft(dir)
      })
    ))

  it.effect("the cgroup join warm-up leaves this process in its own cgroups", () =>
    Effect.gen(function*() {
      const before = readFileSync("/proc/self/cgroup", "utf8")
      // Twice: the second also runs while the first's grace period may still be pending.
      yield* Effect.promise(() => Promise.all([Cgroups.warmUpJoin(), Cgroups.warmUpJoin()]))
      assert.strictEqual(readFileSync("/proc/self/cgroup", "utf8"), before)
      assert.deepStrictEqual(leftoverCgroups(), [])
    }))

  it.scopedLive("limits are written to the sandbox's own cgroups and removed after a failed start", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Sandbox.builder("limits").memory(Size.mib(300)).cpus(0.5).pids(40).create()
          assert.strictEqual(readFileSync(cgroupOf("limits", "pids.max"), "utf8").trim(), "40")
          const memory = leftoverCgroups().find((d) => d.includes("-limits-") && readdirSync(d).includes("memory.limit_in_bytes"))
          if (memory !== undefined) {
            assert.strictEqual(readFileSync(join(memory, "memory.limit_in_bytes"), "utf8").trim(), String(300 * 1024 * 1024))
          }
          const cpu = leftoverCgroups().find((d) => d.includes("-limits-") && readdirSync(d).includes("cpu.cfs_quota_us"))
          if (cpu !== undefined) assert.strictEqual(readFileSync(join(cpu, "cpu.cfs_quota_us"), "utf8").trim(), "50000")
        }))
        // A start that fails after its cgroups exist (the image is no file system).
        const garbage = join(dir, "garbage.raw")
        writeFileSync(garbage, Buffer.alloc(1024 * 1024, 7))
        const failed = yield* Effect.flip(Effect.scoped(
          Sandbox.builder("failing").pids(32).volume("/d", (m) => m.disk(garbage)).create()
        ))
        assert.strictEqual(failed._tag, "SandboxError")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("invalid limits are InvalidConfig; a limit the host cannot honour is Unsupported naming it", () =>
    withHome(() =>
      Effect.gen(function*() {
        const invalid = [
          Sandbox.builder("x").memory(Size.mib(8)),
          Sandbox.builder("x").cpus(0),
          Sandbox.builder("x").cpus(Number.NaN),
          Sandbox.builder("x").pids(2),
          Sandbox.builder("x").pids(1.5)
        ]
        for (const builder of invalid) {
          const error = yield* Effect.flip(Effect.scoped(builder.create()))
          assert.strictEqual(error._tag, "InvalidConfig")
        }
        const error = yield* Effect.flip(Effect.scoped(Sandbox.builder("x").cpus(4096).create()))
        assert.strictEqual(error._tag, "Unsupported")
        assert.include(error.message, "cpus(4096)")
      })
    ))
})

describe("escape suite: archive import", () => {
  /** A tar of `bin/` and `bin/tool` (mode 04777), split so the import can be paused between them. */
  const tarParts = (): readonly [Uint8Array, Uint8Array] => {
    const data = new TextEncoder().encode("#!/bin/sh\n")
    return [
      Tar.encodeHeader({ name: "bin/", type: "directory", size: 0, mode: 0o755, uid: 0, gid: 0, mtime: 0 }),
      Buffer.concat([
        Tar.encodeHeader({ name: "bin/tool", type: "file", size: data.length, mode: 0o4777, uid: 0, gid: 0, mtime: 0 }),
        data,
        Tar.padding(data.length),
        Tar.trailer()
      ])
    ]
  }

  it.scopedLive("a sandbox cannot attach a volume while a tar with a 04777 entry imports into it, so it cannot swap the staging directory", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const outside = join(dir, "outside")
        mkdirSync(join(outside, "bin"), { recursive: true })
        writeFileSync(join(outside, "bin", "tool"), "outside")
        chmodSync(join(outside, "bin", "tool"), 0o644)
        const vol = yield* Volume.builder("imp").create()
        const root = yield* vol.path()
        const [head, rest] = tarParts()
        const paused = yield* Deferred.make<void>()
        const resume = yield* Deferred.make<void>()
        const input = Stream.make(head).pipe(
          Stream.concat(Stream.fromEffect(Effect.zipRight(Deferred.succeed(paused, undefined), Deferred.await(resume)))
            .pipe(Stream.drain)),
          Stream.concat(Stream.make(rest))
        )
        const importing = yield* Effect.fork(Archive.importTar("imp", input))
        yield* Deferred.await(paused)
        // The staging directory exists on the host, but no listing shows it.
        assert.isTrue(readdirSync(root).some((name) => name.startsWith(TEMP_PREFIX)), "the import is staging")
        assert.deepStrictEqual(yield* vol.fs().list("/"), [])
        // The attack: a sandbox on the volume swaps every hidden directory for a link to the outside.
        const attack = yield* Effect.either(Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("swapper").volume("/v", (m) => m.named("imp")).create()
          return yield* sh(sb, `for d in /v/.??*; do mv "$d" "$d-away" && ln -s ${outside} "$d"; done`)
        })))
        assert.strictEqual(leftOf(attack)._tag, "VolumeInUse", "the sandbox was refused while the import ran")
        yield* Deferred.succeed(resume, undefined)
        const summary = yield* Fiber.join(importing)
        assert.strictEqual(summary.entries, 2)
        assert.strictEqual(statSync(join(outside, "bin", "tool")).mode & 0o7777, 0o644, "nothing applied outside")
        assert.strictEqual(readFileSync(join(outside, "bin", "tool"), "utf8"), "outside")
        assert.strictEqual(statSync(join(root, "bin", "tool")).mode & 0o7777, 0o777, "no set-user-ID bit from the archive")
        assert.deepStrictEqual(readdirSync(root), ["bin"], "no staging directory is left")
        yield* assertNothingLeft(dir)
      })
    ), 60_000)
})
