/**
 * The evfs file server on its own (native/evfs/): mounted by hand in a private mount
 * namespace, driven by a shell script, checked from the host side.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { chownSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as FileServer from "../../src/internal/namespace/fileServer/fileServer.js"
import { tempDir } from "./support.js"

const quote = (value: string): string => `'${value.replaceAll("'", `'\\''`)}'`

/**
 * Serves `source` on `dir/mnt` with `options`, runs `script` (cwd: the mount) and unmounts;
 * returns what the script printed (stdout and stderr).
 */
const served = (dir: string, source: string, options: ReadonlyArray<string>, script: string): string => {
  const mnt = join(dir, "mnt")
  mkdirSync(mnt, { recursive: true })
  const run = [
    `${[FileServer.BINARY, ...options, source, mnt].map(quote).join(" ")} 2>/dev/null &`,
    `pid=$!; n=0`,
    `until grep -qF ${quote(` ${mnt} `)} /proc/self/mountinfo; do n=$((n+1)); [ $n -lt 2000 ] || exit 9; sleep 0.005; done`,
    `(cd ${quote(mnt)} && ${script}) 2>&1`,
    `cd /; umount ${quote(mnt)}; wait $pid`
  ].join("\n")
  return execFileSync("unshare", ["--mount", "--propagation", "private", "sh", "-c", run], { encoding: "utf8" })
}

describe("evfs", () => {
  it.scoped("quota: every operation that grows or shrinks the volume is accounted; the final usage is reported", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = join(dir, "v")
      mkdirSync(source)
      writeFileSync(join(source, "seed"), "x".repeat(1000))
      const report = join(dir, "usage")
      const out = served(
        dir,
        source,
        ["--quota=10000", "--used=1000", `--report=${report}`],
        [
          "head -c 3000 /dev/zero > a", // 4000
          "ln a b", // a second name counts again: 7000
          "ln -s 12345 l", // 7005
          "truncate -s 4000 c", // would be 11005: refused (c stays empty)
          "echo truncate=$?",
          "truncate -s 2000 a", // both names shrink: 5005
          "mv -f seed a", // the 2000 bytes named a are replaced by seed: 3005
          ": > b", // O_TRUNC: 1005
          "head -c 20000 /dev/zero > big; echo big=$?", // cut at the quota: 10000
          "stat -c %s big",
          "echo more >> big; echo append=$?",
          "rm big" // 1005
        ].join("; ")
      )
      assert.include(out, "truncate=1")
      assert.include(out, "big=1")
      assert.include(out, "8995\n")
      assert.include(out, "append=1")
      assert.include(out, "No space left on device")
      assert.strictEqual(readFileSync(report, "utf8"), "1005\n")
    }))

  it.scoped("containment: a directory swapped for a symlink under a cached path is refused, not followed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = join(dir, "v")
      const outside = join(dir, "outside")
      mkdirSync(join(source, "d"), { recursive: true })
      mkdirSync(outside)
      writeFileSync(join(outside, "secret"), "secret\n")
      writeFileSync(join(source, "d", "secret"), "inside\n")
      // The guest's kernel caches "d" as a directory; the host side swaps it for a symlink out
      // of the volume (as another sandbox sharing it could); the next path through it reaches us.
      const out = served(
        dir,
        source,
        ["--stat=relaxed"],
        `cat d/secret; mv ${quote(join(source, "d"))} ${quote(join(source, "gone"))}; ` +
          `ln -s ${quote(outside)} ${quote(join(source, "d"))}; cat d/secret; echo rc=$?`
      )
      assert.include(out, "inside\n")
      assert.notInclude(out, "secret\nrc=0")
      assert.include(out, "rc=1")
    }))

  it.scoped("overlay: hidden from the guest; non-root callers are checked against the guest-visible mode", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = join(dir, "v")
      mkdirSync(source)
      writeFileSync(join(source, "f"), "data\n", { mode: 0o644 })
      chownSync(source, 1000, 1000)
      const asUser = (cmd: string) => `setpriv --reuid=1000 --regid=1000 --clear-groups sh -c ${quote(cmd)}`
      const out = served(
        dir,
        source,
        ["--stat=strict", "--perms=private"],
        [
          "chown 1000:1000 f", // root gives f to 1000 (overlay only)
          asUser("echo mine >> f && echo write=ok"),
          "chmod 400 f",
          asUser("echo again >> f || echo write=refused"),
          asUser("chown 0 f || echo chown=refused"),
          "getfattr -n user.fuseoverlayfs.override_stat f || echo hidden"
        ].join("; ")
      )
      assert.include(out, "write=ok")
      assert.include(out, "write=refused")
      assert.include(out, "chown=refused")
      assert.include(out, "hidden")
      assert.strictEqual(readFileSync(join(source, "f"), "utf8"), "data\nmine\n")
      const host = execFileSync("stat", ["-c", "%u:%g %a", join(source, "f")], { encoding: "utf8" })
      assert.strictEqual(host, "0:0 644\n")
    }))

  it.scoped("refuses device nodes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = join(dir, "v")
      mkdirSync(source)
      const out = served(dir, source, ["--stat=off"], "mknod dev c 1 3 || echo mknod=refused; mkfifo p && echo fifo=ok")
      assert.include(out, "mknod=refused")
      assert.include(out, "fifo=ok")
    }))

  it.scoped("--bind-only --subpath: binds the directory it opened with the flags asked; a symlink on the way is refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = join(dir, "v")
      mkdirSync(join(source, "a", "b"), { recursive: true })
      writeFileSync(join(source, "a", "b", "mine"), "mine\n")
      mkdirSync(join(dir, "elsewhere", "b"), { recursive: true })
      symlinkSync(join(dir, "elsewhere"), join(source, "link"))
      const stage = join(dir, "stage")
      mkdirSync(stage)
      const bind = (sub: string) =>
        [
          `${[FileServer.BINARY, "--bind-only", `--subpath=${sub}`, "--ro", "--noexec", source, stage].map(quote).join(" ")} 2>&1`,
          `echo rc=$?`,
          `grep -F ${quote(` ${stage} `)} /proc/self/mountinfo | cut -d' ' -f6`,
          `ls ${quote(stage)}`
        ].join("; ")
      const ok = execFileSync("unshare", ["--mount", "--propagation", "private", "sh", "-c", bind("a/b")], { encoding: "utf8" })
      assert.strictEqual(ok, "rc=0\nro,nosuid,nodev,noexec,relatime\nmine\n")
      const refused = execFileSync("unshare", ["--mount", "--propagation", "private", "sh", "-c", bind("link/b")], {
        encoding: "utf8"
      })
      assert.include(refused, "a symlink (or mount) on the way")
      assert.include(refused, "rc=3")
    }))
})
