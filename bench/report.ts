/**
 * docs/benchmarks.md: the run's table plus what limits each missed target (from
 * `node --cpu-prof` profiles of bench/profile.ts; see the "Profiles" section).
 */
import type { Row } from "./runner.js"

/** What limits a row whose target is missed, keyed by a substring of its operation and area. */
const limits: ReadonlyArray<readonly [area: string, operation: string, note: string]> = [
  ["files", "write 4 KiB", "the anchor does the same writeFile + rename; what the library adds per write is the volume's write lock, the quota reservation and the usage-account update in SQLite (one statement), and the rename over an existing file makes ext4 (`auto_da_alloc`) write the new data back inside rename(2) on both sides; on a loaded machine the medians move by ±50% between rounds (see min/max)"],
  ["files", "write 1 MiB", "as for 4 KiB, plus 1 MiB of data written back inside the rename"],
  ["files", "read 4 KiB", "open + fstat + read + close through the driver on the thread pool, a few libuv round trips more than `readFile`; tens of µs that a loaded machine stretches"],
  ["files", "read 1 MiB", "one 1 MiB `Buffer.allocUnsafeSlow` per read (unpooled, GC) and a thread-pool round trip per 1 MiB slice; readFile reuses pooled memory"],
  ["files", "read 64 MiB", "64 thread-pool round trips of 1 MiB one after another"],
  ["streams", "readStream", "Effect Stream overhead per ≤ 64 KiB chunk (16,384 chunks per GiB) and GC of the 1 MiB read-ahead blocks (a fresh block per read, so chunks handed out are never overwritten: ≈35% of a 1 GiB stream's time in a profile; larger blocks collect less but raised the peak RSS)"],
  ["streams", "writeStream", "every 64 KiB chunk is a synchronous `writeSync` on the main thread and the commit's rename over the previous file makes ext4 (`auto_da_alloc`) start writing the whole file back inside rename(2) (≈0.5 s for 1 GiB, measured with strace); the in-place anchor has no rename (see the row against the same guarantee)"],
  ["streams", "peak RSS", "GC-managed heap growth, not buffering: see the per-row peaks"],
  ["disk", "burst", "the first operation of a burst spawns the holder process (unshare + loop mount, ≈30–100 ms with the machine's load) and every operation crosses into the mount namespace through it; with a quiet machine the mount dominates a burst of 100 less"],
  ["sandbox", "3 named", "Node's spawn blocks while it forks its own process and the child execs (≈2.5–4 ms for the keeper and again for the exec; the anchor pays one); the chain of child processes the bare anchor does not have: the keeper (unshare + sh), the launch helper (cgroup joins, user namespace, one idmapped bind per mount), bwrap with the curated /etc, the seccomp filter and the unshares, the exec helper (cgroup joins, setns, seccomp) and the keeper's clean-up helper; ≈3 ms of Node work per named mount (the hold, its release and last-use stamps, the re-measure for the stop's usage report, the Effect runtime around each); the first cgroup join's RCU grace period (≈10 ms on cgroup v1) now overlaps the start (docs/design.md, \"A sandbox's start and stop\")"],
  ["S3", "read 4 KiB", "the same single GetObject; the Effect runtime around `VolumeFs.read` (path checks, a fiber, one AbortController and timer for the per-attempt timeout) on a CPU-bound client sharing 2 cores with the gateway"],
  ["S3", "list", "the same requests in the same waves of 32 (LIST + one GET per record); decoded records are reused when their bytes are unchanged; what remains is the Effect runtime per request (a fiber, one AbortController and timer for the per-attempt timeout, the typed error mapping): ≈1.3–1.5x the raw SDK's client CPU on a client that shares 2 cores with the gateway"],
  ["S3", "write", "same single PutObject"],
  ["S3", "read 64", "two ranged GETs of 32 MiB in parallel (the second `If-Match` on the first's ETag, no HEAD) and the volume's record (restore generations), copied in place into one buffer, against one GET; the gateway shares the 2 cores with the client, so the second request and stream cost CPU the single GET does not spend and no idle core turns parallelism into throughput (interleaved side runs of 15 rounds: 32 MiB parts 0.94–1.02x, one 64 MiB GET 0.91–0.94x; medians swing ±10% between runs)"],
  ["S3", "readStream 64", "the anchor drains the body and keeps nothing; ours copies socket pieces into 8 MiB part buffers (memory bounded by 4 parts in flight + 1) and re-chunks them to ≤ 64 KiB for the consumer, an Effect stream step per chunk"],
  ["scale", "list, home with 10,000", "≈4–5 µs per row on a quiet machine: better-sqlite3 reading 16 columns as an array (≈1.4 µs), the report and the handle (no closures, shared host locations), and the GC of 10,000 retained objects; a loaded machine doubles it"],
  ["scale", "quota-checked", "the write path is the same at every file count (usage is read from the account, not re-measured); the difference is page-cache and directory-size noise"],
  ["microsandbox", "create + remove", "create is 2 SQLite statements (claim, publish) and 3 synchronous metadata calls (mkdir, mkdir, rename), remove 6 statements (the snapshot check's 2 reads, the claim, 3 deletes), a rename to the trash and the removal of its two directories (≈0.25 ms of kernel time alone); each statement through `@effect/sql` costs ≈30 µs more than the same call into better-sqlite3, and the Effect runtime adds the rest; microsandbox does each in one call into Rust"],
  ["microsandbox", "get a volume", "`get` reads the stored usage account (no tree walk) and builds the handle: one SQLite read and the Effect runtime; microsandbox's `get` is one call into Rust"],
  ["microsandbox", "list 60", "one SQLite query and a handle per volume through the Effect runtime against one call into Rust"],
  ["lifecycle", "list with 10,000", "≈14 µs per row: SQLite row materialisation (≈16% of the profile), `VolumeInfo`/handle construction and GC; the first run spent ≈80 µs per row re-validating rows through Schema, now checked by hand and built without re-validation (5x faster)"],
  ["file server", "sequential write", "write-through FUSE (no writeback cache: a write past the quota must fail in write(), host changes must stay visible): each 1 MiB request is a round trip, the kernel copies the data into the FUSE file's pages and evfs splices it into the host file; with a quota also an fstat per write and a grant every 4 MiB (docs/benchmarks.md, \"File server\")"],
  ["file server", "start →", "exec of evfs and its FUSE mount (3–4 ms alone), unmount and exit at stop (3–18 ms alone), and a keeper-shell process per step (setpriv + evfs, evfs --await, kill, evfs --await-exit) on a loaded machine"],
  ["snapshots", "small files", "a fixed cost per snapshot or fork of ≈60–140 ms on a loaded disk (four SQLite commits: hold, claim, publish, release, each an fsync) plus a `find` of the copy to measure it (≈45 ms per 10,000 files), on top of the same `cp -a`; the rest is the machine's I/O noise (see the snapshots section)"]
]

export const annotate = (row: Row): Row => {
  if (row.target === undefined || row.target.met) return row
  const found = limits.find(([area, op]) => row.area.includes(area) && row.operation.includes(op))
  return found === undefined ? row : { ...row, note: [row.note, `limited by: ${found[2]}`].filter((x) => x !== undefined).join("; ") }
}

export interface Report {
  readonly machine: string
  readonly free: string
  readonly commit: string
  readonly date: string
  readonly totalS: number
  /** `/proc/loadavg` (1, 5, 15 min) at the start and the end of the run. */
  readonly load: string
  /** The rows with a target (issue 14's and the others), as a markdown table. */
  readonly targets: string
  readonly table: string
  readonly failures: ReadonlyArray<string>
}

export const render = (r: Report): string => `# Benchmarks

Generated by \`npm run bench\` (bench/main.ts); do not edit the tables by hand, re-run instead.
Each row is measured side by side with its baseline (its anchor) in the same process and run:
warm-up round(s) first, then several rounds alternating ours and the baseline, so both see the
same machine noise. Times are per operation, **min / median / max** over the rounds (a round of
small operations is the mean of a batch of them). The ratio is *ours / baseline* of the median
times: 1.00 is equal, 2.00 twice as slow; a throughput target "≥ 0.8x" is met when the time ratio
is ≤ 1/0.8. Peak RSS comes from a child process per stream round
(\`process.resourceUsage().maxRSS\`); a row shows the median of its rounds' peaks. Where a target
is missed, the row says what limits it.

- **Machine:** ${r.machine}
- **Memory (\`free -m\`):** \`${r.free.split("\n").map((l) => l.trim().replace(/\s+/g, " ")).join(" / ")}\`
- **Date:** ${r.date}
- **Load average (1/5/15 min):** ${r.load}
- **Commit:** \`${r.commit}\`
- **Total run time:** ${r.totalS.toFixed(0)} s

The machine has 2 cores and is shared; with a load average above 2 absolute times are
inflated and the ratios are what to compare (both sides of a row see the same load).

## Targets

${r.targets}

## All rows

${r.table}
${r.failures.length === 0 ? "" : `\n**Areas that failed in this run:**\n\n${r.failures.map((f) => `- ${f}`).join("\n")}\n`}
${HOW_TO_RUN}
`

export const HOW_TO_RUN = `## How to run

\`\`\`sh
npm run bench                            # every area; rewrites this file
BENCH_SCALE=quick npm run bench          # small sizes, few rounds, prints only
BENCH_ONLY=s3,scale npm run bench        # some areas only, prints only
BENCH_ONLY=files BENCH_OUT=/tmp/b.md npm run bench   # some areas, rendered to a file
npx tsx bench/profile.ts s3list          # CPU profile of one hot loop (see bench/profile.ts for the cases)
\`\`\`

Areas (\`BENCH_ONLY\` names): \`lifecycle\` (create/remove, disk volume creation), \`files\`
(whole-file writes and reads against node:fs), \`streams\` (64 MiB and 1 GiB streams with peak
RSS), \`disk\` (host \`fs()\` on a disk volume), \`sandbox\` (start → \`true\` → stop), \`fileserver\`,
\`s3\`, \`memory\`, \`microsandbox\`, \`snapshots\`, \`scale\` (curves over files and volumes, 8
processes of mixed operations; \`BENCH_SCALE_PARTS=files,volumes,mixed\` picks among them).
A row is one measurement inside an area; to run fewer rows, run the area with
\`BENCH_SCALE=quick\` or pick the scale parts.

The library is measured as users run it: \`npm run bench\` builds \`dist/\` first and the
bench imports the compiled modules (through tsx, the same code ran ≈45% slower in \`list\`:
esbuild's \`keepNames\` wraps every closure).

Anchors: writes are compared with node:fs doing the same atomic replace (\`writeFile\` of a
temporary file, then \`rename\`); reads with \`readFile\`; streams with \`createReadStream\` /
\`createWriteStream\` (write streams also with \`createWriteStream\` into a temporary file and a
\`rename\`, the guarantee the sink gives; one process per implementation and round, the rounds
interleaved); disk-volume operations with the same operation on a directory volume;
sandbox starts with bare \`bwrap --ro-bind / / true\`; S3 rows with raw \`@aws-sdk/client-s3\`
calls on the same server and client settings, making the same requests (\`list\`: one
ListObjectsV2 and one GetObject per record, 32 at a time); microsandbox rows with its own Node
SDK (npm \`microsandbox@0.6.18\`, installed on demand into \`bench/.deps\`, volumes under a
throwaway \`HOME\`).

S3 rows use \`EFFECT_VOLUMES_S3_*\` when set; otherwise the bench starts a private Ceph with
\`scripts/ceph-s3-up.sh\` (memstore, ports 7491/3391, \`/tmp/ev-bench-ceph\`) and stops it
afterwards; without the script the rows are skipped with the reason.

Setups that would dominate the run are done once and untimed: file trees are written with plain
\`fs.writeFileSync\` into the volume's directory (100-byte files, 1,000 per subdirectory), then
one explicit \`Volume.measure\` records their usage (writes made directly in the host directory
are outside the library's view); the volumes of the \`list\` curves are created through the API
(concurrency 8).`
