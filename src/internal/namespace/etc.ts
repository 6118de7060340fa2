/**
 * The curated `/etc` of image "host": what programs need to run, never the host's secrets.
 * Only allowlisted entries are exposed, read-only, and of those only what every user of the
 * host may read (a file readable by its owner alone is a secret by its mode, wherever it
 * is). `passwd` and `group` are generated: the host's entries for the ids the sandbox maps,
 * with any password field replaced by "x". docs/sandboxes.md lists the same entries.
 */
import type { Dirent } from "node:fs"
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs"
import { join } from "node:path"
import { MAPPED_IDS } from "./idmap.js"

/** Paths under /etc that image "host" exposes (when present on the host). */
export const ETC_ALLOWLIST: ReadonlyArray<string> = [
  // name service
  "hosts", "host.conf", "nsswitch.conf", "resolv.conf", "gai.conf", "networks", "protocols", "services", "rpc",
  "ethertypes",
  // dynamic linker
  "ld.so.conf", "ld.so.conf.d", "ld.so.cache", "ld.so.preload",
  // TLS trust
  "ssl/certs", "ssl/openssl.cnf", "ssl/cert.pem", "ca-certificates", "ca-certificates.conf", "pki/tls/certs",
  "pki/ca-trust/extracted",
  // system identity, time, locale
  "os-release", "lsb-release", "debian_version", "localtime", "timezone", "locale.alias", "locale.conf",
  "default/locale",
  // packaged tools' configuration
  "alternatives", "shells", "profile", "profile.d", "bash.bashrc", "inputrc", "terminfo", "mime.types", "magic",
  "magic.mime", "xattr.conf", "mke2fs.conf", "python3", "python3.11", "mtab"
]

/** The most entries a directory tree may have to be walked; beyond, it is left out. */
const MAX_ENTRIES = 4096

type Exposure =
  | { readonly _tag: "Bind"; readonly path: string }
  | { readonly _tag: "Symlink"; readonly path: string }
  | { readonly _tag: "Dir"; readonly path: string }

const worldReadable = (mode: number, isDirectory: boolean): boolean =>
  isDirectory ? (mode & 0o005) === 0o005 : (mode & 0o004) === 0o004

/**
 * What of `root/path` may be shown: itself when everything in it is world-readable, else
 * the readable parts one by one (the directory recreated empty, the rest bound into it).
 * Paths in the result are relative to `root`.
 */
const expose = (
  root: string,
  path: string,
  budget: { left: number },
  type: Dirent | undefined = undefined
): ReadonlyArray<Exposure> => {
  if (--budget.left < 0) return []
  const host = join(root, path)
  // The link itself; what it points to is resolved inside the sandbox, where only exposed
  // paths exist. (A directory listing tells links apart without a stat: most of ssl/certs.)
  if (type?.isSymbolicLink()) return [{ _tag: "Symlink", path }]
  const stat = lstatSync(host, { throwIfNoEntry: false })
  if (stat === undefined) return []
  if (stat.isSymbolicLink()) return [{ _tag: "Symlink", path }]
  if (stat.isFile()) return worldReadable(stat.mode, false) ? [{ _tag: "Bind", path }] : []
  if (!stat.isDirectory() || !worldReadable(stat.mode, true)) return []
  const children = readdirSync(host, { withFileTypes: true }).map((child) =>
    expose(root, join(path, child.name), budget, child)
  )
  if (budget.left < 0) return []
  return children.every(isWhole) ? [{ _tag: "Bind", path }] : [{ _tag: "Dir", path }, ...children.flat()]
}

/** Whether `expose` showed a path entirely (rather than in parts, or not at all). */
const isWhole = (exposures: ReadonlyArray<Exposure>): boolean =>
  exposures.length === 1 && exposures[0]!._tag !== "Dir"

/** The host's `name:x:id:...` lines whose id the sandbox maps, with password fields blanked. */
const mappedEntries = (file: string, defaults: ReadonlyArray<string>): string => {
  let text = ""
  try {
    text = readFileSync(file, "utf8")
  } catch {
    // no such file on this host: the defaults alone
  }
  const lines = text.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#")).flatMap((line) => {
    const fields = line.split(":")
    const id = Number(fields[2])
    if (fields.length < 4 || !Number.isInteger(id) || id < 0 || id >= MAPPED_IDS) return []
    return [[fields[0], "x", ...fields.slice(2)].join(":")]
  })
  const names = new Set(lines.map((line) => line.split(":")[0]))
  const ids = new Set(lines.map((line) => line.split(":")[2]))
  const missing = defaults.filter((line) => {
    const [name, , id] = line.split(":")
    return !names.has(name) && !ids.has(id)
  })
  return [...missing, ...lines].join("\n") + "\n"
}

/** The generated `/etc/passwd`: root, nobody, and the host's users the sandbox maps. */
export const passwd = (): string =>
  mappedEntries("/etc/passwd", [
    "root:x:0:0:root:/root:/bin/sh",
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"
  ])

/** The generated `/etc/group`. */
export const group = (): string => mappedEntries("/etc/group", ["root:x:0:", "nogroup:x:65534:"])

/**
 * bubblewrap arguments for the curated `/etc` (taken from `root`, the host's `/etc`), with
 * `passwd` and `group` bound from the given generated files.
 */
export const bwrapArgs = (
  generated: { readonly passwd: string; readonly group: string },
  root: string = "/etc"
): ReadonlyArray<string> => {
  const args: Array<string> = ["--dir", "/etc"]
  const budget = { left: MAX_ENTRIES }
  for (const entry of ETC_ALLOWLIST) {
    // Every directory on the way must itself be world-searchable (e.g. not /etc/ssl/private).
    const segments = entry.split("/").slice(0, -1)
    const reachable = segments.every((_, i) => {
      const stat = statSync(join(root, ...segments.slice(0, i + 1)), { throwIfNoEntry: false })
      return stat !== undefined && stat.isDirectory() && worldReadable(stat.mode, true)
    })
    if (!reachable) continue
    for (const exposure of expose(root, entry, budget)) {
      const guest = join("/etc", exposure.path)
      switch (exposure._tag) {
        case "Bind":
          args.push("--ro-bind", join(root, exposure.path), guest)
          break
        case "Symlink":
          args.push("--symlink", readlinkSync(join(root, exposure.path)), guest)
          break
        case "Dir":
          args.push("--dir", guest)
      }
    }
  }
  args.push("--ro-bind", generated.passwd, "/etc/passwd", "--ro-bind", generated.group, "/etc/group")
  return args
}
