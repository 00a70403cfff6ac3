/**
 * Store throughput: 1 GiB of artifacts (64 random objects of 16 MiB, generated up front and not
 * timed) written through `ArtifactStore.make(root).put` (sha256, temp file, fsync, rename,
 * fsync of the directory), then read back and verified through `.get(digest)` (read + sha256).
 * Compared with the raw tools on the same bytes: `sha256sum src/* && cp -r src dst && sync` for
 * writing, `sha256sum dst/*` for verifying.
 *
 * Page cache: writes start from bytes already in memory (polaris) or in the page cache (raw,
 * the source files are read once before timing). Verification is timed twice: warm (the bytes
 * just written are still cached) and, when this process may write /proc/sys/vm/drop_caches,
 * cold (after `sync; echo 3 > /proc/sys/vm/drop_caches`).
 *
 *   npm run bench -- store        (or: npx tsx bench/store-throughput.ts)
 */
import { execFileSync } from "node:child_process"
import { randomFillSync } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import { ArtifactStore, Canonical } from "polaris"
import { fmt, fmtSummary, summarize, type Summary, timeIt } from "./measure.ts"
import { markdownTable } from "./table.ts"

const MiB = 1024 * 1024
const OBJECTS = 64
const OBJECT_BYTES = 16 * MiB
const TOTAL_BYTES = OBJECTS * OBJECT_BYTES

/** Options of the store benchmark. */
export interface StoreOptions {
  readonly repeats: number
  readonly log: (line: string) => void
}

/** What is timed: writing 1 GiB, verifying it from the page cache, verifying it from disk. */
export type Operation = "write" | "verify, warm" | "verify, cold"

/** One way of doing an operation: polaris, or a shell script in the scratch directory. */
interface Contender {
  readonly operation: Operation
  readonly label: string
  /** The script (raw tools), or undefined for polaris. */
  readonly script?: string
  /** The requested baseline (`sha256sum`): the ratio polaris / raw is taken against it. */
  readonly baseline?: boolean
}

const CONTENDERS: ReadonlyArray<Contender> = [
  { operation: "write", label: "polaris `put` (sha256, write, fsync, rename, fsync dir)" },
  { operation: "write", label: "`sha256sum src/* && cp -r src dst && sync`", script: "sha256sum src/* > /dev/null && cp -r src dst && sync", baseline: true },
  { operation: "write", label: "`openssl dgst -sha256 src/* && cp -r src dst && sync`", script: "openssl dgst -sha256 src/* > /dev/null && cp -r src dst && sync" },
  { operation: "write", label: "`cp -r src dst && sync` (no hash)", script: "cp -r src dst && sync" },
  { operation: "verify, warm", label: "polaris `get` (read, sha256, compare)" },
  { operation: "verify, warm", label: "`sha256sum dst/*`", script: "sha256sum dst/* > /dev/null", baseline: true },
  { operation: "verify, warm", label: "`openssl dgst -sha256 dst/*`", script: "openssl dgst -sha256 dst/* > /dev/null" },
  { operation: "verify, warm", label: "`cat dst/* > /dev/null` (no hash)", script: "cat dst/* > /dev/null" },
  { operation: "verify, cold", label: "polaris `get` (read, sha256, compare)" },
  { operation: "verify, cold", label: "`sha256sum dst/*`", script: "sha256sum dst/* > /dev/null", baseline: true },
  { operation: "verify, cold", label: "`openssl dgst -sha256 dst/*`", script: "openssl dgst -sha256 dst/* > /dev/null" },
  { operation: "verify, cold", label: "`cat dst/* > /dev/null` (no hash)", script: "cat dst/* > /dev/null" }
]

/** The measured numbers: seconds per contender (undefined when not measured, e.g. cold without drop_caches). */
export interface StoreResult {
  readonly repeats: number
  /** Why the page cache could not be dropped, or undefined when it could. */
  readonly dropRefused: string | undefined
  readonly seconds: ReadonlyArray<{ readonly contender: Contender; readonly seconds: Summary | undefined }>
  /** Node's sha256 over the 64 objects in memory, no I/O: the hashing part of polaris's time. */
  readonly hashOnly: Summary
  readonly markdown: string
}

const sh = (script: string, cwd: string): void => {
  execFileSync("sh", ["-c", script], { cwd, stdio: ["ignore", "ignore", "inherit"] })
}

/** Drops the page cache; returns why not when this process may not. */
const dropCaches = (): string | undefined => {
  try {
    execFileSync("sync")
    writeFileSync("/proc/sys/vm/drop_caches", "3\n")
    return undefined
  } catch (e) {
    return (e as Error).message.split("\n")[0]
  }
}

const runEffect = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

/** Runs the benchmark in a temp directory, removed afterwards. */
export const run = async (options: StoreOptions): Promise<StoreResult> => {
  const scratch = mkdtempSync(join(tmpdir(), "polaris-bench-store-"))
  try {
    options.log(`store: generating ${OBJECTS} × ${OBJECT_BYTES / MiB} MiB of random bytes (not timed)`)
    const objects = Array.from({ length: OBJECTS }, () => randomFillSync(new Uint8Array(OBJECT_BYTES)))
    const digests = objects.map((bytes) => Canonical.sha256(bytes))
    const src = join(scratch, "src")
    const dst = join(scratch, "dst")
    mkdirSync(src)
    objects.forEach((bytes, i) => writeFileSync(join(src, `object-${String(i).padStart(2, "0")}`), bytes))
    sh("sync", scratch)
    const dropRefused = dropCaches()
    options.log(dropRefused === undefined ? "store: dropping the page cache works; cold verification included" : `store: cannot drop the page cache (${dropRefused}); warm only`)

    const samples = new Map<Contender, Array<number>>(CONTENDERS.map((c) => [c, []]))
    const hashOnly: Array<number> = []
    const record = (c: Contender, ms: number) => samples.get(c)!.push(ms / 1000)
    const of = (operation: Operation) => CONTENDERS.filter((c) => c.operation === operation)
    for (let r = 0; r < options.repeats; r++) {
      const root = join(scratch, `store-${r}`)
      const store = ArtifactStore.make(root)
      const verifyPolaris = () => runEffect(Effect.forEach(digests, (digest) => store.get(digest), { discard: true }))
      hashOnly.push((await timeIt(() => objects.forEach((bytes) => Canonical.sha256(bytes)))).ms / 1000)
      for (const c of of("write")) {
        if (c.script === undefined) {
          sh("sync", scratch)
          const write = await timeIt(() => runEffect(Effect.forEach(objects, (bytes) => store.put(bytes))))
          if (write.value.some((d, i) => d !== digests[i])) throw new Error("ArtifactStore.put returned a wrong digest")
          record(c, write.ms)
        } else {
          rmSync(dst, { recursive: true, force: true })
          sh("sync; cat src/* > /dev/null", scratch)
          record(c, (await timeIt(() => sh(c.script!, scratch))).ms)
        }
      }
      // Warm: polaris's objects and dst were just written, so both are in the page cache.
      for (const c of of("verify, warm")) record(c, (await timeIt(() => (c.script === undefined ? verifyPolaris() : sh(c.script, scratch)))).ms)
      if (dropRefused === undefined) {
        for (const c of of("verify, cold")) {
          const refused = dropCaches()
          if (refused !== undefined) throw new Error(`drop_caches worked once, then failed: ${refused}`)
          record(c, (await timeIt(() => (c.script === undefined ? verifyPolaris() : sh(c.script, scratch)))).ms)
        }
      }
      rmSync(root, { recursive: true, force: true })
      rmSync(dst, { recursive: true, force: true })
      options.log(
        `store: run ${r + 1}/${options.repeats}: ` +
          CONTENDERS.filter((c) => c.script === undefined || c.baseline)
            .map((c) => `${c.operation} ${c.script === undefined ? "polaris" : "sha256sum"} ${fmt(samples.get(c)!.at(-1) ?? NaN, 2)} s`)
            .join(", ")
      )
    }
    const seconds = CONTENDERS.map((contender) => {
      const xs = samples.get(contender)!
      return { contender, seconds: xs.length > 0 ? summarize(xs) : undefined }
    })
    const hash = summarize(hashOnly)
    return { repeats: options.repeats, dropRefused, seconds, hashOnly: hash, markdown: report(options.repeats, dropRefused, seconds, hash) }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

const mbps = (seconds: number) => TOTAL_BYTES / 1e6 / seconds

/** `part` as a percentage of `whole` (medians). */
const share = (part: Summary, whole: Summary | undefined) => (whole === undefined ? "n/a" : `${fmt((100 * part.median) / whole.median)}%`)

const report = (repeats: number, dropRefused: string | undefined, results: StoreResult["seconds"], hashOnly: Summary): string => {
  const polarisOf = (operation: Operation) => results.find((r) => r.contender.operation === operation && r.contender.script === undefined)?.seconds
  const rows = results.map(({ contender, seconds }) => {
    const polaris = polarisOf(contender.operation)
    if (seconds === undefined || polaris === undefined) return [contender.operation, contender.label, "not measured", "", ""]
    const ratio = contender.script === undefined ? "1.00" : fmt(mbps(polaris.median) / mbps(seconds.median), 2)
    return [contender.operation, contender.label, fmtSummary(seconds, 2), fmt(mbps(seconds.median)), ratio]
  })
  const table = markdownTable(["operation", "how", "seconds", "MB/s", "polaris / this (throughput)"], rows, ["l", "l", "r", "r", "r"])
  const headline = (operation: Operation) => {
    const polaris = polarisOf(operation)
    const raw = results.find((r) => r.contender.operation === operation && r.contender.baseline)?.seconds
    return polaris === undefined || raw === undefined ? "n/a" : fmt(mbps(polaris.median) / mbps(raw.median), 2)
  }
  const secondsOf = (operation: Operation, script: string) => results.find((r) => r.contender.operation === operation && r.contender.script === script)?.seconds
  const cat = secondsOf("verify, warm", "cat dst/* > /dev/null")
  const sha = secondsOf("verify, warm", "sha256sum dst/* > /dev/null")
  const ossl = secondsOf("verify, warm", "openssl dgst -sha256 dst/* > /dev/null")
  const cache = dropRefused === undefined
    ? "**Page cache.** Dropping it (`sync; echo 3 > /proc/sys/vm/drop_caches`, as root) was permitted here, so verification is timed both warm (the bytes just written are still in the page cache, on both sides) and cold (the cache is dropped right before each contender, so the reads come from the virtual disk). Writes start from memory on both sides: polaris's bytes are in the process, the raw tools' source files are read once before timing."
    : `**Page cache.** Dropping it was refused (${dropRefused}), so every read on both sides comes from the page cache; the cold rows are not measured.`
  return [
    `${OBJECTS} objects of ${OBJECT_BYTES / MiB} MiB of random bytes (${fmt(TOTAL_BYTES / 1e6)} MB; MB = 10^6 bytes), generated up front and`,
    "not timed, written sequentially through `ArtifactStore.make(root).put(bytes)` and read back",
    "through `.get(digest)`, against coreutils on the same 64 files (written to `src/` first,",
    "untimed). The requested baseline is `sha256sum`; `openssl dgst -sha256` (a fast hasher) and",
    "plain `cp`/`cat` (no hash at all) are there to show where the raw side's time goes.",
    `Median (min–max) of ${repeats} runs. The last column is polaris's throughput over that row's`,
    "(above 1 = polaris faster).",
    "",
    table,
    "",
    cache,
    "",
    `**Result.** Against the requested baseline, polaris / raw throughput is ${headline("write")} for writing,`,
    `${headline("verify, warm")} for warm verification and ${headline("verify, cold")} for cold verification. That baseline is slow`,
    "because this machine's coreutils `sha256sum` is the portable C implementation (it links no",
    `crypto library): from the page cache it hashes at ${sha ? fmt(mbps(sha.median)) : "n/a"} MB/s, while \`cat\` reads the same bytes at`,
    `${cat ? fmt(mbps(cat.median)) : "n/a"} MB/s and \`openssl dgst -sha256\` hashes them at ${ossl ? fmt(mbps(ossl.median)) : "n/a"} MB/s. The fairer yardsticks are the`,
    "`openssl` and the no-hash rows. Polaris hashes and moves bytes one after the other, object by",
    `object: Node's sha256 alone over the 64 objects in memory takes ${fmtSummary(hashOnly, 2)} s here`,
    `(${fmt(mbps(hashOnly.median))} MB/s), about ${share(hashOnly, polarisOf("write"))} of its write time (the rest is writing and fsyncing`,
    `each object and then its directory, one object at a time) and ${share(hashOnly, polarisOf("verify, warm"))} of its warm verify time (the`,
    "rest is `fs.readFile` of each whole 16 MiB object into a fresh buffer). Overlapping the hash of one object with the I/O of",
    "the next is where more throughput would come from. `sync` flushes the whole machine's dirty",
    "pages, and other processes shared the CPUs and the disk while this ran, hence the spread."
  ].join("\n")
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({ repeats: 3, log: (l) => console.log(l) })
  console.log(`\n${result.markdown}`)
}
