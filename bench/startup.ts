/**
 * Start-up of the `polaris` command, spawn to exit: the commands that run nothing (`--help`,
 * `status`, `validate`, `dag`, `plan`) and a cached run of the engine benchmark's 1,000-node DAG
 * (`bench/fixtures/dag-pipeline.ts`, a user's TypeScript pipeline), each as the installed command
 * runs (`bin/polaris.js` executed through its #! line, as `npx polaris` does), as `node
 * bin/polaris.js` with the environment as it is (both the prebuilt bundle, `dist/cli`, what
 * `npm ci` builds) and through the TypeScript sources with tsx (`POLARIS_SOURCES=1`, what every
 * command did before), in the same run, alternating.
 *
 *   npm run bench -- startup        (about 2 minutes)
 *
 * The bundle is rebuilt first when it is not current (`npm run build`).
 */
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fmt, fmtSummary, ROOT, summarize, type Summary } from "./measure.ts"
import { markdownTable } from "./table.ts"
import { bundleIsCurrent } from "../bin/bundle-current.js"

/** Options of the start-up benchmark. */
export interface StartupOptions {
  readonly repeats: number
  readonly log: (line: string) => void
}

export interface StartupResult {
  readonly markdown: string
}

/**
 * `command`: bin/polaris.js executed, as the installed `polaris` runs: its #! line's sh starts
 * node without NODE_EXTRA_CA_CERTS for the commands that never connect (Node 20 builds its whole
 * root certificate store before any JavaScript when the variable is set, nodejs/node#40524: on
 * this VM, which sets it for every process, 35-40 ms of every start) and with it for the others
 * (`run`). `node`: `node bin/polaris.js`, the same bundle with the environment as it is.
 */
type Loader = "command" | "node" | "sources"
const LOADERS: ReadonlyArray<Loader> = ["command", "node", "sources"]
const EXTRA_CA = process.env.NODE_EXTRA_CA_CERTS
const { NODE_EXTRA_CA_CERTS: _extraCa, ...withoutExtraCa } = process.env

interface Case {
  readonly label: string
  readonly args: (store: string) => ReadonlyArray<string>
}

const QUICKSTART = "recipes/quickstart.yaml"
const PAPER = "recipes/polaris-qwen3.5-9b.yaml"
const DAG = "bench/fixtures/dag-pipeline.ts"

const CASES: ReadonlyArray<Case> = [
  { label: "`polaris --help`", args: () => ["--help"] },
  { label: "`polaris status` (an empty store)", args: (store) => ["status", "--store", store] },
  { label: "`polaris validate` judge-references (6 nodes)", args: () => ["validate", "recipes/judge-references.yaml"] },
  { label: "`polaris validate` quickstart (1,827 nodes)", args: () => ["validate", QUICKSTART] },
  { label: "`polaris validate` paper recipe (160 steps)", args: () => ["validate", PAPER] },
  { label: "`polaris dag` quickstart", args: () => ["dag", QUICKSTART] },
  { label: "`polaris plan` quickstart (an empty store)", args: (store) => ["plan", QUICKSTART, "--store", store] },
  { label: "`polaris plan` paper recipe (an empty store; 7,387 nodes)", args: (store) => ["plan", PAPER, "--store", store] },
  { label: "`polaris plan` 1,000-node DAG, all cached", args: (store) => ["plan", DAG, "--store", store] },
  { label: "`polaris run` 1,000-node DAG, all cached", args: (store) => ["run", DAG, "--store", store, "--progress", "none"] }
]

/** Spawn to exit, in ms; fails on a non-zero exit. */
const timeCommand = (args: ReadonlyArray<string>, loader: Loader): Promise<number> =>
  new Promise((resolve, reject) => {
    const { POLARIS_SOURCES: _, ...inherited } = process.env
    const env = { ...inherited, POLARIS_DEBUG: "loader", ...(loader === "sources" ? { POLARIS_SOURCES: "1" } : {}) }
    const bin = join(ROOT, "bin", "polaris.js")
    const t0 = performance.now()
    const [file, argv] = loader === "command" ? [bin, args] : [process.execPath, [bin, ...args]]
    const child = spawn(file, argv, { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    child.on("exit", (code) => {
      const ms = performance.now() - t0
      if (code !== 0) return reject(new Error(`polaris ${args.join(" ")} (${loader}) exited ${code}: ${stderr}`))
      // The loader that ran must be the one measured (a stale bundle would silently fall back).
      const expected = loader === "sources" ? "sources" : "bundle"
      if (!stderr.includes(`polaris: loader ${expected}`) || stderr.includes("cannot load")) return reject(new Error(`polaris ${args.join(" ")}: expected the ${expected} loader, stderr: ${stderr}`))
      resolve(ms)
    })
  })


export const run = async (options: StartupOptions): Promise<StartupResult> => {
  if (!bundleIsCurrent(new URL("../", import.meta.url))) {
    options.log("startup: building the bundle (npm run build)")
    execFileSync(process.execPath, [join(ROOT, "scripts", "build-cli.mjs")], { cwd: ROOT, stdio: "inherit" })
  }
  const scratch = mkdtempSync(join(tmpdir(), "polaris-startup-"))
  try {
    const empty = join(scratch, "empty")
    const dagStore = join(scratch, "dag")
    // The DAG's store is filled once; every measured run of it is then fully cached.
    await timeCommand(["run", DAG, "--store", dagStore, "--progress", "none"], "node")
    const storeOf = (c: Case) => (c.label.includes("1,000-node") ? dagStore : empty)
    const samples = new Map<string, Record<Loader, Array<number>>>()
    for (const c of CASES) samples.set(c.label, { command: [], node: [], sources: [] })
    // One warm-up of each (the bundle's code cache, tsx's transform cache, the disk), then
    // `repeats` rounds, the loaders alternating within each.
    for (let round = 0; round <= options.repeats; round++) {
      for (const c of CASES) {
        for (const loader of LOADERS) {
          const ms = await timeCommand(c.args(storeOf(c)), loader)
          if (round > 0) samples.get(c.label)![loader].push(ms)
        }
      }
      options.log(`startup: round ${round}/${options.repeats}${round === 0 ? " (warm-up)" : ""}`)
    }
    const extraCa = EXTRA_CA !== undefined && EXTRA_CA !== ""
    const rows = CASES.map((c) => {
      const s = samples.get(c.label)!
      const node: Summary = summarize(s.node)
      const sources: Summary = summarize(s.sources)
      return [c.label, fmtSummary(summarize(s.command)), fmtSummary(node), fmtSummary(sources), `${fmt(sources.median / node.median, 1)}×`]
    })
    // `node -e 0`, with the environment as it is and without NODE_EXTRA_CA_CERTS, alternating.
    const nodeAlone: Array<number> = []
    const nodeAloneNoExtraCa: Array<number> = []
    const timeNode = (env: NodeJS.ProcessEnv, into: Array<number>) => {
      const t0 = performance.now()
      execFileSync(process.execPath, ["-e", "0"], { env })
      into.push(performance.now() - t0)
    }
    for (let i = 0; i < options.repeats; i++) {
      timeNode(process.env, nodeAlone)
      if (extraCa) timeNode(withoutExtraCa, nodeAloneNoExtraCa)
    }
    const markdown = [
      `Spawn to exit (ms), median (min–max) of ${options.repeats} runs after one warm-up, the three alternating; \`node -e 0\` alone: ${fmtSummary(summarize(nodeAlone))}${extraCa ? ` (without NODE_EXTRA_CA_CERTS: ${fmtSummary(summarize(nodeAloneNoExtraCa))})` : ""}.`,
      "`polaris` is the installed command as `npx polaris` runs it: `bin/polaris.js` executed through its #! line, whose sh starts node on it. `node bin/polaris.js` is the same file given to node directly. Both run the bundle, `dist/cli/main.cjs` (built by `npm ci`, loaded with V8's code cache); sources is `node bin/polaris.js` with `POLARIS_SOURCES=1`: effect, then tsx and the TypeScript modules, as every command started before.",
      "The 1,000-node DAG is the engine benchmark's (10 layers × 100 trivial stages), a user's TypeScript pipeline importing effect's Effect and Schema: it runs on the core bundle (`dist/cli/main-core.cjs`, which carries effect's common modules for a user's modules), transpiled by esbuild (cached on disk), sharing the bundle's polaris and effect.",
      "Digests of files (the model, the corpus, source modules) are remembered by the files' identities on disk after the first command (`Location.remembered`); the warm-up run makes them.",
      "",
      ...(extraCa
        ? [`This environment sets NODE_EXTRA_CA_CERTS (\`${EXTRA_CA}\`) for every process: Node 20 then builds its whole root certificate store while it starts, before any JavaScript runs (nodejs/node#40524). \`polaris\` starts node without it for the commands that never connect (all here but \`run\`), and with it for the others: a remote engine behind a TLS-intercepting proxy needs those certificates. \`node bin/polaris.js\` keeps it for all.`, ""]
        : []),
      markdownTable(["command", "`polaris`", "`node bin/polaris.js`", "sources (tsx)", "sources / node"], rows, ["l", "r", "r", "r", "r"])
    ].join("\n")
    return { markdown }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
    if (existsSync(scratch)) options.log(`startup: could not remove ${scratch}`)
  }
}
