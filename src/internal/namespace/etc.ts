/**
 * The curated `/etc` of image "host": what programs need to run, never the host's secrets.
 * Only allowlisted entries are shown, read-only, and of those only what every user of the
 * host may read (a file readable by its owner alone is a secret by its mode, wherever it
 * is). `passwd` and `group` are generated: the host's entries for the ids the sandbox maps,
 * with any password field replaced by "x". docs/sandboxes.md lists the same entries.
 *
 * It is a copy, kept in the cache directory under a name derived from the metadata of every
 * entry it was made from, so a change on the host (a file edited, chmod-ed, added to or
 * removed from a directory) makes a new copy at the next start, and a sandbox binds one
 * directory instead of mounting each file.
 */
import { createHash, randomBytes } from "node:crypto"
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
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

/** The most entries the allowlisted trees may have together; beyond, the rest is left out. */
const MAX_ENTRIES = 4096

/** One entry to show, relative to /etc. */
interface Entry {
  readonly kind: "file" | "dir" | "link"
  readonly path: string
}

const worldReadable = (mode: number, isDirectory: boolean): boolean =>
  isDirectory ? (mode & 0o005) === 0o005 : (mode & 0o004) === 0o004

/** A directory's entries: names, and which are symbolic links. */
interface Listing {
  /** The directory's metadata line when it was listed (see `walk`). */
  readonly stamp: string
  /** When it was listed (ms since the epoch). */
  readonly listedAt: number
  readonly children: ReadonlyArray<{ readonly name: string; readonly link: boolean }>
}

/**
 * Directory listings of earlier surveys, by host path (`ssl/certs` alone has hundreds of
 * links, and every sandbox start surveys). Adding, removing, renaming or re-pointing an
 * entry changes the directory's mtime and ctime, so a directory whose metadata line is
 * unchanged lists the same names, provided its ctime is older than the listing by more
 * than a tick of the kernel's coarse file clock (a change right after the listing could
 * otherwise carry the same timestamp). Entries that are not links are still stat'ed one
 * by one, as their contents can change without their directory's doing so.
 */
const listings = new Map<string, Listing>()

/** Margin between a directory's last change and its listing for the listing to be reused. */
const LISTING_MARGIN_MS = 50

const listing = (host: string, stamp: string, ctimeMs: number): Listing["children"] => {
  const known = listings.get(host)
  if (known !== undefined && known.stamp === stamp && ctimeMs < known.listedAt - LISTING_MARGIN_MS) return known.children
  const listedAt = Date.now()
  const children = readdirSync(host, { withFileTypes: true }).map((child) => ({
    name: child.name,
    link: child.isSymbolicLink()
  }))
  listings.set(host, { stamp, listedAt, children })
  return children
}

/**
 * The entries of `root/path` anybody may read, with a stamp of the metadata they were
 * chosen by (a link is re-created as a link: its change shows in its directory's stamp).
 */
const walk = (
  root: string,
  path: string,
  out: { readonly entries: Array<Entry>; readonly stamp: Array<string>; left: number },
  isLink = false
): void => {
  if (--out.left < 0) return
  if (isLink) {
    out.entries.push({ kind: "link", path })
    return
  }
  const host = join(root, path)
  const stat = lstatSync(host, { throwIfNoEntry: false })
  if (stat === undefined) return
  const stamp = `${path}:${stat.mode}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`
  out.stamp.push(stamp)
  if (stat.isSymbolicLink()) out.entries.push({ kind: "link", path })
  else if (stat.isFile() && worldReadable(stat.mode, false)) out.entries.push({ kind: "file", path })
  else if (stat.isDirectory() && worldReadable(stat.mode, true)) {
    out.entries.push({ kind: "dir", path })
    for (const child of listing(host, stamp, stat.ctimeMs)) walk(root, join(path, child.name), out, child.link)
  }
}

/** What of the allowlist `root` (the host's /etc) shows, and its stamp. */
export const survey = (root: string = "/etc"): { readonly entries: ReadonlyArray<Entry>; readonly stamp: string } => {
  const out = { entries: [] as Array<Entry>, stamp: [] as Array<string>, left: MAX_ENTRIES }
  for (const entry of ETC_ALLOWLIST) {
    // Every directory on the way must itself be world-searchable (e.g. not /etc/ssl/private).
    const segments = entry.split("/").slice(0, -1)
    const reachable = segments.every((_, i) => {
      const stat = statSync(join(root, ...segments.slice(0, i + 1)), { throwIfNoEntry: false })
      return stat !== undefined && stat.isDirectory() && worldReadable(stat.mode, true)
    })
    if (reachable) walk(root, entry, out)
  }
  for (const file of ["passwd", "group"]) {
    const stat = statSync(join(root, file), { throwIfNoEntry: false })
    out.stamp.push(`${file}:${stat?.size}:${stat?.mtimeMs}:${stat?.ctimeMs}`)
  }
  return { entries: out.entries, stamp: out.stamp.join("\n") }
}

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
const passwd = (root: string): string =>
  mappedEntries(join(root, "passwd"), [
    "root:x:0:0:root:/root:/bin/sh",
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"
  ])

/** The generated `/etc/group`. */
const group = (root: string): string => mappedEntries(join(root, "group"), ["root:x:0:", "nogroup:x:65534:"])

/** Writes the curated copy of `root` into `dest` (which must not exist). */
const copy = (root: string, entries: ReadonlyArray<Entry>, dest: string): void => {
  mkdirSync(dest, { mode: 0o755 })
  for (const entry of entries) {
    const target = join(dest, entry.path)
    // Parents of a nested allowlist entry (ssl/ of ssl/certs) are made bare.
    mkdirSync(join(target, ".."), { recursive: true, mode: 0o755 })
    switch (entry.kind) {
      case "dir":
        mkdirSync(target, { recursive: true, mode: 0o755 })
        break
      case "file":
        copyFileSync(join(root, entry.path), target)
        break
      case "link":
        symlinkSync(readlinkSync(join(root, entry.path)), target)
    }
  }
  writeFileSync(join(dest, "passwd"), passwd(root), { mode: 0o644 })
  writeFileSync(join(dest, "group"), group(root), { mode: 0o644 })
}

/**
 * The directory holding the curated copy of `root` (the host's /etc) as it is now, made
 * under `cache` if it is not there yet (built aside, then renamed into place, so
 * concurrent starts never see half a copy).
 */
export const curated = (cache: string, root: string = "/etc"): string => {
  const { entries, stamp } = survey(root)
  const dir = join(cache, `etc-${createHash("sha256").update(root).update(stamp).digest("hex").slice(0, 16)}`)
  if (existsSync(dir)) return dir
  mkdirSync(cache, { recursive: true })
  const building = `${dir}.tmp-${randomBytes(4).toString("hex")}`
  try {
    copy(root, entries, building)
    renameSync(building, dir)
  } catch (error) {
    rmSync(building, { recursive: true, force: true })
    if (!existsSync(dir)) throw error // else another start won the race with the same content
  }
  return dir
}
