/**
 * Runs the benchmarks, prints their tables and rewrites docs/benchmarks.md.
 *
 *   npm run bench                   all six (about 7 minutes on 2 cores)
 *   npm run bench -- engine         engine overhead only (1,000-node DAG, about 1 minute)
 *   npm run bench -- startup        the command's start-up, bundle against sources (about 2 minutes)
 *   npm run bench -- store          store throughput only (1 GiB, about 2 minutes)
 *   npm run bench -- ingest         corpus ingest only (12 books, about 10 seconds)
 *   npm run bench -- model          story model vs PyTorch CPU 1.13 and 2.x (training, sampling, matmul peak; about 2.5 min)
 *   npm run bench -- judge          judge client overhead and throughput against local servers (about 30 seconds)
 *   npm run bench -- quickstart     the cold quickstart, 3 runs beside the host's speed (about 5 minutes; not in "all")
 *   npm run bench -- soak           the full quickstart under 30 SIGKILLs, rerun and comment edits (about 10 minutes; not in "all")
 *   npm run bench -- async          off-policy GRPO k = 0, 1, 2 at paper-scale simulated latencies (about 7 minutes; not in "all")
 *   npm run bench -- soak-offpolicy the quickstart with off_policy_steps 1 under 20 SIGKILLs, and a twin run (about 10 minutes; not in "all")
 *   npm run bench -- learning       off-policy GRPO k = 0 vs 1 on the full quickstart, 4 seeds each (about 30 minutes; not in "all")
 *   npm run bench -- --repeats 3    fewer (or more) repetitions of each measurement
 *   npm run bench -- --no-write     print only; leave docs/benchmarks.md alone
 *
 * The document is rewritten whole. A benchmark not run this time keeps its section (numbers,
 * date and machine) from the previous document.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Async from "./async.ts"
import * as Learning from "./offpolicy-learning.ts"
import * as Engine from "./engine-overhead.ts"
import * as Ingest from "./ingest.ts"
import * as Judge from "./judge.ts"
import * as Model from "./model.ts"
import * as Quickstart from "./quickstart.ts"
import { describeMachine, machineLine } from "./machine.ts"
import { ROOT } from "./measure.ts"
import * as Soak from "./quickstart-soak.ts"
import * as Startup from "./startup.ts"
import * as Store from "./store-throughput.ts"

type BenchId = "engine" | "startup" | "store" | "ingest" | "model" | "judge" | "quickstart" | "soak" | "soak-offpolicy" | "async" | "learning"

const BENCHES: ReadonlyArray<BenchId> = ["engine", "startup", "store", "ingest", "model", "judge", "quickstart", "soak", "soak-offpolicy", "async", "learning"]
/** What `npm run bench` runs with no names: all but the cold quickstart (five minutes), the soaks (ten minutes each), async (seven minutes of mostly sleeping) and learning (half an hour). */
const DEFAULT: ReadonlyArray<BenchId> = ["engine", "startup", "store", "ingest", "model", "judge"]

const USAGE = "usage: npm run bench -- [engine] [startup] [store] [ingest] [model] [judge] [soak] [soak-offpolicy] [async] [learning] [--repeats N] [--no-write]"
const DOC = join(ROOT, "docs", "benchmarks.md")

interface Args {
  readonly benches: ReadonlyArray<BenchId>
  readonly repeats: number | undefined
  readonly write: boolean
}

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  const benches: Array<BenchId> = []
  let repeats: number | undefined
  let write = true
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if ((BENCHES as ReadonlyArray<string>).includes(arg)) benches.push(arg as BenchId)
    else if (arg === "--no-write") write = false
    else if (arg === "--repeats" || arg.startsWith("--repeats=")) {
      const value = arg.includes("=") ? arg.split("=")[1] : argv[++i]
      repeats = Number(value)
      if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats wants a positive integer, got "${value}"\n${USAGE}`)
    } else throw new Error(`unknown argument "${arg}"\n${USAGE}`)
  }
  return { benches: benches.length === 0 ? DEFAULT : benches, repeats, write }
}

/** Each benchmark's section: title, how to run it alone, and its generated body. */
const TITLES: Record<BenchId, string> = {
  engine: "Engine overhead: a 1,000-node DAG of trivial stages",
  startup: "Start-up: commands that run nothing, and a cached 1,000-node run, bundle against sources",
  store: "Store throughput: 1 GiB through the artifact store",
  ingest: "Ingest: the bundled corpus (12 books) into Story records",
  model: "Story model: training and sampling against PyTorch CPU, 2 threads",
  judge: "Judge clients: overhead per call and throughput against local servers, 64 in flight",
  quickstart: "The cold quickstart: spawn to exit in an empty store, beside the host's speed",
  soak: "Cache exactness at full scale: the quickstart under 30 SIGKILLs, a rerun, a comment in every stage",
  "soak-offpolicy": "Off-policy GRPO under fire: the quickstart with off_policy_steps 1 under 20 SIGKILLs",
  async: "Asynchronous GRPO: wall time per step at paper-scale simulated latencies, off_policy_steps k = 0, 1, 2",
  learning: "Asynchronous GRPO still learns: the quickstart with off_policy_steps k = 0 and 1, 4 seeds each"
}

const begin = (id: BenchId) => `<!-- bench:${id}:begin -->`
const end = (id: BenchId) => `<!-- bench:${id}:end -->`

/** The generated body of a section in the current document, if there is one. */
const previousSection = (doc: string, id: BenchId): string | undefined => {
  const from = doc.indexOf(begin(id))
  const to = doc.indexOf(end(id))
  return from >= 0 && to > from ? doc.slice(from + begin(id).length, to).trim() : undefined
}

const document = (sections: Record<BenchId, string | undefined>): string =>
  [
    "# Benchmarks",
    "",
    "How much the engine costs on top of the work it runs, how fast the artifact store moves",
    "bytes, and how the embedded story model compares with PyTorch. Everything below is generated",
    "by `bench/run.ts`; do not edit the numbers by hand.",
    "",
    "```sh",
    "npm run bench                  # engine, startup, store, ingest, model and judge: about 7 minutes on 2 cores",
    "npm run bench -- engine        # engine overhead only (about 1 minute)",
    "npm run bench -- startup       # the command's start-up, prebuilt bundle against TypeScript sources (about 2 minutes)",
    "npm run bench -- store         # store throughput only (about 2 minutes, needs ~2 GB free in the temp dir)",
    "npm run bench -- ingest        # corpus ingest only (about 10 seconds)",
    "npm run bench -- model         # story model vs PyTorch CPU, 1.13 and 2.x, about 2.5 min (apt-get install python3-torch libopenblas0-pthread; bench/torch/setup-torch2.sh)",
    "npm run bench -- judge         # judge client overhead and throughput against local servers (about 30 seconds)",
    "npm run bench -- quickstart    # the cold quickstart, 3 runs, each beside a measure of the host's speed (about 5 minutes; not in the default run)",
    "npm run bench -- soak          # the full quickstart killed 30 times and resumed, rerun, comment edits (about 10 minutes; not in the default run)",
    "npm run bench -- async         # off-policy GRPO k = 0, 1, 2 on the simulated engines at paper-scale latencies (about 7 minutes; not in the default run)",
    "npm run bench -- soak-offpolicy # the quickstart with off_policy_steps 1 killed 20 times and resumed, and a second clean run (about 12 minutes; not in the default run)",
    "npm run bench -- learning      # the quickstart with off-policy k = 0 and 1, 4 seeds each: gains and wall time (about 30 minutes; not in the default run)",
    "npm run bench -- --repeats 3   # fewer repetitions; --no-write prints without touching this file",
    "```",
    "",
    "Each measurement is repeated (7 times for the engine, 3 for the store, 5 for ingest, 3 for the",
    "model's sampling runs and the judge clients, by default) and the tables give the median with the range (min–max) beside it: the machine these numbers come",
    "from was shared with other work while they were taken, so single runs are noisy. Each section",
    "says when and on what machine it was measured; running one benchmark alone leaves the other",
    "section as it was. Temporary data goes under the OS temp directory and is removed afterwards.",
    "",
    ...BENCHES.flatMap((id) => [
      `## ${TITLES[id]}`,
      "",
      begin(id),
      sections[id] ?? `Not measured yet: run \`npm run bench -- ${id}\`.`,
      end(id),
      "",
      ...(NOTES[id] ?? [])
    ])
  ].join("\n")

/** Hand-written notes from profiling the engine benchmark; not regenerated. */
const PROFILE_NOTES = [
  "### Where a cached run's time goes (profiled by hand, 2026-11-23, same machine)",
  "",
  "Profile the run phase alone (startup excluded) with",
  "`POLARIS_BENCH_PROFILE=/tmp/run.cpuprofile node --import effect --import tsx bench/fixtures/dag.ts STORE` on a",
  "store that already holds the DAG, and open the file in Chrome DevTools. (The profiler's own",
  "`dispatch` at the end, about 40 ms, is not the run's.)",
  "",
  "- **Startup is most of a cached run.** Loaded through tsx's hooks, each of effect's modules",
  "  crosses them, and polaris + effect took about twice as long to load as effect alone in plain",
  "  node; importing effect before tsx registers (as `bin/polaris.js` and the fixtures here do) took",
  "  the startup fixture from 0.85 s to 0.50 s. The same fixture bundled with esbuild and run by",
  "  plain `node` finished its imports in 100–150 ms: the command now runs from such a bundle",
  "  (`dist/cli`, with V8's code cache; \"Start-up\" below).",
  "- **The run phase (about 230 ms for 1,000 cached nodes)** splits, in three profiles, into Effect's",
  "  fiber runtime 20–26%, polaris's own code 18–29% (`Executor.ts` itself most of it, then keys and",
  "  canonical JSON, the run log), garbage collection 9–17%, file reads (now synchronous) 12–20%,",
  "  Schema decoding of index entries and outputs 4–10%. No single cost dominates any more.",
  "- **Before the fix to `src/` of 19:38 UTC** (same day), each cached node read its index entry twice",
  "  (once more in `reuse`, to replay metrics) and read every file with `fs.promises.readFile`, four",
  "  thread-pool round trips each; file reads were then about 40% of a run phase of 550–650 ms.",
  "  Trying the two changes on a scratch copy first, median of 9 interleaved runs: unchanged 556 ms,",
  "  entry reused 489 ms, sync reads 298 ms, both 229 ms.",
  ""
]

/** The start-up section measured at other hours of the same day. */
const STARTUP_NOTES = [
  "Start-up follows this VM's host speed that hour, which `node -e 0` tracks only roughly. The bundle's figures over",
  "time (`--help` / `validate` quickstart / `dag` / `plan` quickstart / the cached 1,000-node run, ms); nearly the same code",
  "15 minutes apart gave `dag` and `plan` medians of 249 / 262 and 312 / 315 ms:",
  "",
  "| when (UTC) | `node -e 0` | bundle |",
  "|---|---|---|",
  "| 2026-12-02 07:29 | 61 ms | 149 / 226 / 247 / 300 / 391 |",
  "| 2026-12-02 17:54 | 123 ms | 577 / 882 / 787 / 1,106 / 1,144 |",
  "| 2026-12-02 23:51 | 100 ms | 323 / 474 / 519 / 609 / 748 |",
  "| 2026-12-03 04:06 (effect's modules by name, lazy loads, remembered digests) | 88 ms | 200 / 260 / 298 / 294 / 602 |",
  "| 2026-12-03 04:23 (+ the engine's checkpoint on first use, the code cache taken before the command, plan in waves) | 79 ms | 145 / 207 / 249 / 262 / 541 |",
  "| 2026-12-03 04:38 (and a plan wave from a plain loop) | 65 ms | 170 / 227 / 312 / 315 / 540 |",
  "| 2026-12-03 11:19 (the LM head at the loss positions, HTTP client only for remote engines) | 87 ms | 189 / 228 / 302 / 316 / 579 |",
  "| 2026-12-03 12:28 (the same code, medians of 9, a faster period) | 76 ms | – / – / 278 / 289 / – |",
  "| 2026-12-03 12:32 (the same code, this benchmark) | 97 ms | 160 / 255 / 312 / 341 / 655 |",
  "| 2026-12-03 18:06 (+ a recipe file's parse remembered by its bytes; the paper recipe's `plan` 392, `validate` 303) | 88 ms | 180 / 272 / 286 / 293 / 648 |",
  "| 2026-12-03 18:55 (the same code, a faster period) | 58 ms | 131 / 174 / 192 / 205 / 413 (the paper recipe's `plan` 253, `validate` 197) |",
  "| 2026-12-03 21:01 (+ the first three changes below; a slow period) | 129 ms | 244 / 289 / 304 / 321 / 715 (the paper recipe's `plan` 410, `validate` 323) |",
  "| 2026-12-03 21:36 (+ the last two; a slower period still: the sources took 1,320 ms for `--help`, against 1,045) | 127 ms | 307 / 373 / 449 / 412 / 913 (`plan` 511, `validate` 323) |",
  "| 2026-12-03 21:46 (the same code) | 99 ms | 237 / 306 / 338 / 325 / 710 (`plan` 405, `validate` 324) |",
  "| 2026-12-03 23:01 (the same code, the next session's VM) | 101 ms | 226 / 265 / 322 / 293 / 668 (`plan` 363, `validate` 300; the cached 1,000-node `plan` 420) |",
  "| 2026-12-03 23:21 (+ the exit when done, a step's shape in `dag` worked out once) | 98 ms | 220 / 257 / 274 / 295 / 658 (`plan` 344, `validate` 298; 1,000-node `plan` 396) |",
  "| 2026-12-03 23:32 (+ index entries in one read, decoded without `fromJsonString`) | 94 ms | 209 / 249 / 268 / 277 / 596 (`plan` 332, `validate` 280; 1,000-node `plan` 361) |",
  "| 2026-12-04 01:24 (+ lazy built-ins, the code cache made after a `plan`; a slower period: the sources took 955 ms for `--help`, against 904) | 100 ms (58 with NODE_EXTRA_CA_CERTS unset) | 212 / 246 / 262 / 279 / 602 (`plan` 330, `validate` 273; 1,000-node `plan` 378); NODE_EXTRA_CA_CERTS unset: 172 / 208 / 225 / 242 / 571 (`plan` 296, `validate` 240; 1,000-node `plan` 341) |",
  "| 2026-12-04 01:27 (the same code) | 96 ms (56 unset) | 205 / 232 / 252 / 266 / 579 (`plan` 325, `validate` 258; 1,000-node `plan` 355); unset: 165 / 198 / 219 / 236 / 546 (`plan` 292, `validate` 224; 1,000-node `plan` 318) |",
  "| 2026-12-04 04:39 (+ export objects filled at init, one namespace per package, the bundle stored wrapped, identifiers shortened) | 97 ms (57 unset) | 197 / 230 / 244 / 254 / 567 (`plan` 300, `validate` 259; 1,000-node `plan` 324); unset: 154 / 191 / 208 / 221 / 525 (`plan` 261, `validate` 221; 1,000-node `plan` 284) |",
  "| 2026-12-04 09:37 (+ the installed command without NODE_EXTRA_CA_CERTS where it never connects, the core bundle for a user's modules; the table above) | 98 ms (57 unset) | `polaris`: 156 / 186 / 207 / 212 / 521 (`plan` 255, `validate` 216; 1,000-node `plan` 249); `node bin/polaris.js`: 188 / 224 / 240 / 250 / 533 (`plan` 297, `validate` 252; 1,000-node `plan` 290) |",
  "",
  "Two changes on 2026-12-04 (09:00-09:35), each measured by interleaved spawn-to-exit pairs against the build before",
  "(median ratio): `bin/polaris.js` became a shell script to the system and stays a CommonJS module to node (its",
  "second line is `':' //; ... exec node \"$0\" \"$@\"`), so the installed command (`npx polaris`,",
  "`node_modules/.bin/polaris`) starts node without NODE_EXTRA_CA_CERTS for the commands that never connect",
  "anywhere, which this VM sets for every process: the paper `plan` 0.883×, `--help` 0.836× (21 pairs); a test",
  "runs the real `#!` line against a `node` on PATH that prints what it was given (unset for `plan`, `validate`,",
  "`status`, `dag`, `--help`...; kept for `run`, `resume`, `sweep`, `serve`, `data`, `human-eval`, and for all with",
  "`POLARIS_KEEP_EXTRA_CA_CERTS=1`). And a third command bundle, `main-core.cjs`, for a user's modules that read only",
  "effect's common members (checked in the module's compiled code before it runs; any other read goes on to the full",
  "bundle): read + compile + set-up in one process 77-81 ms against the full bundle's 106-110 (the lean one: 67);",
  "the cached DAG's `plan` 0.906× as `polaris`, 0.937× as `node bin/polaris.js`, its `run` 0.959×, `plan` of",
  "examples/word-stats 0.884× (15-21 pairs). A module that reads a member the core bundle does not carry (`Stream`)",
  "paid a false start of it (`plan` of a one-stage pipeline importing `Stream`, 189 -> 253 ms): the launcher now reads",
  "the imports of the modules the command names and goes to the full bundle at once when one names such a member",
  "(185 ms); a module those import, or a computed read, still costs the false start. Tried and not kept:",
  "esbuild's export objects filled lazily for the modules whose hoisted functions stand between the object and its",
  "init (341 more in the full bundle): 0.996× (they are the modules the command initializes anyway); the paper plan",
  "with every node's parameters keyed by `JSON.stringify` instead of canonical JSON (unsafe: it only bounds what that",
  "part costs): 0.976×, not worth a weaker key.",
  "",
  "Where the rest goes (2026-12-04 03:00-04:30): a page fault, the first touch of a 4 KiB page of fresh memory, costs",
  "about 10 µs on this VM (64 MiB touched page by page: 16,384 faults in 161-173 ms; a 2 MiB huge page reused: 0.3 µs per 4 KiB), and",
  "it is most of a quick command's system time: `node -e 0` 2,166 faults, `--help` 7,062, the paper recipe's `plan`",
  "11,400 (sys 0.09-0.11 s), the cached 1,000-node `plan` 13,300. Memory a command never touches is time it never",
  "spends. A larger young generation (`--min-semi-space-size`) is slower for that reason, a smaller one",
  "(`--max-semi-space-size=1/2/4`) 1.01× (promotions fill fresh old-space pages instead); transparent huge pages",
  "are `madvise`-only here and V8 asks for none; glibc's `hugetlb` tunable changed nothing (V8's heap is not malloc's).",
  "Three changes cut what a start touches, each measured by interleaved pairs against the build before (median",
  "ratio, spawn to exit): esbuild's per-module export objects (5,515 getter closures in the full bundle, 972 in the",
  "lean one, made at load for every carried module and kept in the code cache) filled as a module initializes, and a",
  "package namespace made once for a user's module with each member looked up once (every read of",
  "`import_effect.Schema` had copied Schema's ~600-getter namespace): the cached DAG's `plan` 0.906×, its `run` 0.970×,",
  "`--help` 0.949×, the paper `plan` 0.995×; the bundle stored already wrapped as a CommonJS function (V8 had copied",
  "the 1.8 / 3.2 MB source into one flat string to compile the wrapper added in memory): 444 / 790 fewer faults,",
  "the full bundle's compile 49-53 ms against 56-58; identifiers shortened after those rewrites (1.8 -> 1.2 MB and",
  "3.2 -> 2.0 MB to read into a string at every start; stack traces name shortened functions, `POLARIS_SOURCES=1`",
  "runs the sources): the paper `plan` 0.981×, the DAG `plan` 0.949×, `--help` 0.984×, `validate` quickstart 0.994×",
  "(21 pairs each). Measured and not kept: object keys sorted in place for canonical JSON (5 of the paper plan's",
  "40 MB of allocation, no measurable time).",  "",
  "The 2026-12-03 evening changes, each measured against the build before it by 16-20 interleaved pairs (median",
  "ratio of spawn-to-exit times, `node -e 0` 90-130 ms at the time): the bundles made plain ASCII and read as latin1",
  "(Node 20 decoded `main.cjs`'s few non-ASCII bytes, curly quotes in regular expressions, into a two-byte string,",
  "which every later lazy compile then scanned): `--help` 0.94×, `validate` quickstart 0.91×, `validate` paper",
  "0.88×, `plan` / `dag` paper 0.94× / 0.93×; `plan`'s loops over nodes moved out of its generator (V8 does not",
  "optimize a hot loop inside a generator: the estimates pass over 7,387 nodes took 29-35 ms there, 10-15 ms in a",
  "plain function) and the remote engines' fetch client loaded without effect/http's barrel: `plan` paper 0.94×;",
  "the launcher `bin/polaris.js` made CommonJS (no ES module loader set up for it): `--help` and `status` 0.965×,",
  "`validate` paper 0.99×; a wire's digest and a node's wave in `plan` computed without a temporary array and",
  "closure per input (short commands run these loops mostly unoptimized): `plan` quickstart 0.94×, paper 0.95× (30",
  "pairs); the same in the pipeline builder's wiring, and no object spread per node: `validate` quickstart and",
  "paper 0.972× (30 pairs). Measured and not kept then: identifiers minified in the bundle (`--help` 0.95×, `validate`",
  "paper 0.965×, but every stack trace and class name in an error message mangled; with esbuild's `keepNames`",
  "1.01× / 1.09×; kept on 2026-12-04, see above); a V8 start-up snapshot of the lean bundle (`node --snapshot-blob`, which builds on this bundle",
  "now): `--help` 0.92×, `validate` paper 0.89×, `plan` paper 0.94× over 8 pairs, but it needs node started with",
  "a flag (a shell launcher), freezes whatever a module reads at its top level (`$POLARIS_STORE` in a flag's",
  "default), and cannot `import()` (the TypeScript sources' fallback would need a second process).",
  "",
  "Tried on 2026-12-03 and dropped, measured by 13 interleaved pairs each (wall and user + sys CPU time): V8 without",
  "its optimizing compiler (`--no-opt`) for the commands that run nothing, with a code cache of its own (V8 rejects",
  "a cache made under other flags): `plan` quickstart 0.95× the wall time (0.86× the CPU), `dag` 0.87× (0.77×),",
  "`--help` 1.02×, `validate` paper 1.01×, but the paper recipe's `plan` 1.11× (its 7,387 keys run faster optimized);",
  "`process.exit()` as soon as such a command is done (skipping the wait for V8's background tasks): 0.96–1.01× then;",
  "on the code of 2026-12-03 23:10 it measured 0.93–0.98× and landed (below).",
  "",
  "What the 2026-12-03 changes bought, each measured by interleaved runs of the two builds (spawn to exit, or the",
  "phases inside one start): importing effect's modules by name instead of its barrel (every module of the bundle",
  "set up all ~140 of effect's): module set-up 88 -> 75 ms; effect/cli's `Intl.Segmenter` made on first use: 13-15 ms",
  "off every command but `--help`; the lean bundle (1.9 MB, without the 1.2 MB of effect only a user's module needs;",
  "those run on `main-full.cjs`): 25 ms (read 3, compile 7, set-up 17); the code cache written right after the",
  "modules' top level instead of after the first command (a cache taken after a training run made set-up 100 ms",
  "instead of 30): `validate` 233-247 -> 176-182 ms; the paper recipe's `plan` 1,274 -> 310 ms (the corpus split",
  "for the writer's estimate remembered by file identity, the Gemini SDK loaded on first call). Tried and dropped:",
  "a V8 start-up snapshot (`node --build-snapshot` aborts on this bundle in Node 20: a global handle it cannot",
  "serialize), a larger young generation (`--min-semi-space-size`: slower), an eagerly compiled code cache",
  "(`--no-lazy`: a 5 MB cache, no faster).",
  "",
  "The recipe's parse, remembered (2026-12-03 18:00): the YAML library's first parse in a process, before V8 optimizes",
  "it, took 10-17 ms for the quickstart's recipe and 2-7 ms more for the rubric file it names (timed inside the",
  "bundle), 14-21 ms for the paper recipe; read back from `node_modules/.cache/polaris/recipe-yaml` (keyed by the",
  "bytes, the file's name, the parser module's fingerprint and the `yaml` version) it takes about 4.5 ms, 3 of them",
  "the fingerprint's first use, which `plan` pays anyway. 15 interleaved rounds against the code before, spawn to",
  "exit (user + sys CPU): `plan` quickstart 345 against 368 ms (380 / 400), `dag` 313 against 344 (370 / 370),",
  "`validate` quickstart 284 against 307 (300 / 330).",
  "",
  "Where a quick command's last 15-45 ms go (measured 2026-12-03 13:50-14:10): Node waits at exit for V8's",
  "optimizing compiles still running on its helper threads (it joins them; `process.exit()` does too, which is why",
  "an early exit bought nothing). Functions that turn hot in a command's last milliseconds are compiled after its",
  "output is written: `dag`'s renderer (`sameShape`: 40 ms of TurboFan for 3 ms of work), the pipeline builder's",
  "`node` (19-27 ms) in `validate`, a 35 ms job in `plan`. From the last write to `beforeExit`: `dag` quickstart",
  "35-45 ms, `plan` quickstart 15-50, `validate` quickstart 15-28, the paper recipe's `plan` 3-6. Tried, 11-15",
  "interleaved pairs each, every variant with its own code cache: TurboFan switched off at run time just before `dag`",
  "renders (`v8.setFlagsFromString(\"--no-opt\")`): `dag` 0.90×, but it helps one command and Node's documentation",
  "warns against changing V8's flags after start; a 4× interrupt budget (`--interrupt-budget=270336`): `dag` 0.89×,",
  "`plan` quickstart 0.89×, but the paper recipe's `plan` 1.10× and `validate` 1.04×; a 2× budget: 0.97× / 0.93× /",
  "1.08× / 1.09×; Maglev (`--maglev`, off by default in Node 20's V8): `dag` 0.91×, `plan` quickstart 1.06×, the paper",
  "recipe's `plan` 0.97×, `validate` quickstart 0.89×. None landed: each trades the quickstart's commands against",
  "the paper recipe's, or rests on a V8 setting Node does not support.",
  "",
  "The launcher exits as soon as the command is done (2026-12-03 23:10): besides the compiles above, Node runs V8's",
  "idle-time tasks at the end of the event loop, for the paper recipe's `validate` a scavenge (6 ms) and a full",
  "mark-compact (3 ms plus marking) of a heap about to be thrown away (`node --trace-gc`: both gone after the change);",
  "`process.exit()` skips them and the compile jobs not yet started (running ones are still joined). Interleaved",
  "pairs against the launcher before: `validate` paper 0.931× (30 pairs), `plan` quickstart 0.975× (30), `dag`",
  "quickstart 0.976× (30), the paper recipe's `plan` 0.941× (16), `plan` of the cached 1,000-node DAG 0.933× (16),",
  "`--help` 0.973× (16), the cached 1,000-node `run` 0.982× (10). Output still queued on an asynchronous stream (a",
  "pipe on macOS) leaves the exit to the event loop; a test pipes the paper recipe's 2.3 MB DOT through and checks it.",
  "",
  "Three more that evening, each against the build before it (interleaved pairs, outputs compared): `dag` works out a",
  "loop step's shape once per step and then compares strings (it rebuilt both steps' wire shapes for every pair, and",
  "TurboFan was still compiling that function when the command ended, 44 ms from the last write to the exit, which",
  "node waits for; 11-20 ms after): `dag` quickstart 0.936×, paper 0.980× (20 pairs), the text of every shipped",
  "recipe byte-identical; the store reads a file that fits in 64 KiB (an index entry) in one read, without a stat (the",
  "1,000 entries of the cached DAG: 30 -> 14 ms in a cold process): its `run` 0.954×, `plan` 0.980×; and decodes an",
  "index entry as `JSON.parse` then the schema instead of `Schema.fromJsonString` (about half the cost, cold): its",
  "`plan` 0.943×, `run` 0.964× (16-20 pairs). Measured and not kept: a copy-on-change canonical JSON (an object whose",
  "keys are in order written as it is): `validate` / `plan` of the paper recipe 1.00× (20 pairs).",
  "",
  "Where the paper recipe's `plan` goes (2026-12-04, marks inside one start, medians of 9, `node -e 0` ~85 ms): node's",
  "own start to the launcher's first line 81 ms, the lean bundle read, deserialized and set up 85, the recipe 11, its",
  "pipeline module 9, building 7,387 nodes 59, the plan with its estimates 48, from the last write to the parent seeing",
  "the exit ~20. Half of node's own start is this environment's: it sets NODE_EXTRA_CA_CERTS",
  "(`/etc/ssl/certs/ca-certificates.crt`, 144 certificates) for every process, and Node 20 then builds its whole root",
  "certificate store while it starts, before any JavaScript runs (nodejs/node#40524): a one-line script reaches its",
  "first line after 78-85 ms with the variable, 41-52 ms without, 59-86 ms with a file of one certificate. The table",
  "above gives the bundle with the variable unset for the command alone as well. polaris leaves it set: a remote engine",
  "behind a TLS-intercepting proxy needs those certificates, and Node 20 reads them only as it starts.",
  "",
  "Two changes that morning, each measured against the build before it by interleaved pairs: node's `crypto`, `zlib`,",
  "`child_process`, `readline` and `fs/promises` required on first use instead of when the bundle loads (node compiles",
  "a built-in's JavaScript when it is first required: 5-10 ms of every start; `--help` 0.97×, `status` 0.96×, `validate`",
  "quickstart 0.98×, 20-30 pairs; the paper recipe's `plan` and the 1,000-node DAG 0.99-1.01×); and the code cache made",
  "at build time after a `plan` of the paper recipe (of `examples/word-stats` for the full bundle), so that it holds the",
  "bytecode of the functions the commands that run nothing call, not only of the modules' top level (1.49 MB against",
  "1.09; unlike a cache taken after a training run, it does not slow the set-up down: `--help` 0.978×): the paper",
  "recipe's `plan` 0.961×, `validate` quickstart 0.963×, `dag` 0.987× (16 pairs), the 1,000-node DAG's `plan` 0.973×,",
  "its `run` 1.007× (12). Both against the code of the evening before: `--help` 0.964×, `status` 0.956×, `validate`",
  "paper 0.951×, `plan` quickstart 0.967×, the paper recipe's `plan` 0.962× (30 pairs), the 1,000-node DAG's `plan`",
  "0.972× and `run` 0.979× (16). Measured and not kept: params remembered by their plain JSON text instead of their",
  "canonical JSON (no sorting, no copies: 6.5 of the 42 MB a `plan` of the paper recipe allocates): building the graph",
  "59-61 -> 62 ms, `plan` 1.01× (20 pairs); canonical JSON asking `Redacted.isRedacted` of class instances only (a",
  "profile had put 5.6 ms of the 1,000-node `plan` in it): 0.98-1.00× (25 pairs); `--maglev` and an interrupt budget of",
  "1/2 or 1/4, phase by phase: within 3 ms. A sampling profile of a command this short blames interpreted functions",
  "it cannot time: both code changes were picked from one and bought nothing.",
  "",
  "What is left at or above 300 ms on this VM (2026-12-04 04:39, `node -e 0` 97 ms): the paper recipe's `plan` (300 ms,",
  "290-325; 261 with NODE_EXTRA_CA_CERTS unset) and the cached 1,000-node DAG's `plan` (324 ms; 284 unset). Phases",
  "inside one start (04:00-04:30, 5 runs): the paper `plan` after node's ~80 ms: the lean bundle compiled from its cache",
  "26-28 ms (1,664 page faults), its modules set up 35-39 (1,190), the recipe 7, its pipeline module with 7,387 nodes",
  "56-66 (3,000-3,200 faults: the graph and a young generation grown to 8 MiB semi-spaces), the plan 33-44 (1,200-1,400),",
  "the table 3. The DAG's `plan` runs on the full bundle (all of effect for a user's module): compiled 48-49 ms (3,028",
  "faults), set up 55-64 (2,200), the command 85-94 (user module, 1,000 index entries read (an `open` costs ~12 µs",
  "here) and decoded, 1,000 keys).",
  ""
]

/** The cold quickstart's speed, measured by hand as interleaved runs of two commits. */
const QUICKSTART_NOTES = [
  "The VM moves between host generations from one session to the next: the table above ran on family 26 model 2",
  "(2.1 GHz), where the start-up commands are slow (`node -e 0` 98-133 ms) but onnxruntime and the quickstart fast",
  "(65.9-75.4 s); on family 25 model 17 (2.6 GHz) the quickstart took 75.5-80.7 s at 18:40-19:07 (`node -e 0` about",
  "60 ms) and 97.0 s at 18:32 (a slow hour), with the same outputs.",
  "",
  "### The cold quickstart, interleaved with the code before (measured by hand, 2026-12-02)",
  "",
  "This VM's speed drifts by ±15% within minutes, so a speed-up is only shown by runs of the old",
  "and the new code taken in turn, each in a fresh store (`npx polaris run recipes/quickstart.yaml",
  "--store FRESH --progress none`, spawn to exit, the prebuilt bundle), with every node's output",
  "object compared between the runs.",
  "",
  "| when (UTC) | change | old (s) | new (s) |",
  "|---|---|---|---|",
  "| 16:30–18:00 | the sampling workers' own bundle; checkpoints hard-linked into the store | 122.5, 132.9, 131.5, 108.9 | 122.0, 111.2, 90.7, 104.4 |",
  "| 23:15–23:22 | an update publishes before it saves, the workers load the new weights meanwhile; checkpoints written from the tensors' memory | 87.1, 87.2 | 80.5, 82.9 |",
  "| 2026-12-03 03:48–04:00 | start-up work only (lazy loads, remembered digests): the run computes the same | 126.0, 135.4 | 127.0, 122.5 |",
  "| 2026-12-03 07:41–07:48 | decoding: a bucket's few rows join a larger bucket's run (KvDecoder `mergeUp`); the run computes the same | 106.1, 91.6 | 94.8, 89.3 |",
  "| 2026-12-03 08:04–08:15 | training: least-cost micro-batches, the embedding's gradient by ScatterElements, shared weights' gradients as one matmul, dlogits written out; with the row above (7c6c380 against d94d872) | 111.0, 116.5, 121.7 | 101.6, 99.6, 106.9 |",
  "| 2026-12-03 10:36–10:44 | training: the LM head only where a token has a loss (30020f1 against a4fc896) | 93.1, 92.7 | 87.2, 93.2 |",
  "| 2026-12-03 10:46–10:55 | the same two commits, in a slower period | 114.9, 120.2 | 122.0, 132.8 |",
  "",
  "Every run's 1,827 node outputs were identical to the first run's of the same code; the last row",
  "changed the training's float rounding, so its old and new runs train to different (equally",
  "reproducible) weights. The host was much faster in",
  "the evening (the same code: 127 s median at 16:30, 87 s at 23:15); compare within a row only.",
  "On 2026-12-03 the VM ran on another host generation (family 25 model 17, AVX-512, 2.6 GHz; see the",
  "machine lines): onnxruntime's matmul peak was higher there, but the story model trained at 7,239",
  "tokens/s against 11,454 the day before (`npm run bench -- model`, 04:00 UTC), and the quickstart took",
  "111–135 s where the other host took 78–83 s. After the last two rows: 89–107 s there (its",
  "update nodes 46–52 s of it, the rollout phases 37–47 s), so the 90 s target is met only in the",
  "host's faster periods. Where the time goes, by the run's CPU time: 190 CPU-seconds for 101 s of",
  "wall time on 2 cores (93% busy), so only less work makes it faster: training ran at onnxruntime's",
  "matmul peak for its matmuls (profiled: 312 of 470 ms of a 12 × 333 run), decoding spends",
  "0.96 ms per run plus 0.08 ms per row.",
  "",
  "The last two rows: replaying 8 of the quickstart's steps (their ppo and cross_entropy batches) through",
  "`forwardBackward`, one step of each commit in turn, 32 pairs, took 5% less time with the head at the",
  "loss positions only (median ratio 0.951); over whole runs the host's drift (the judge nodes, the",
  "same work in both, took 10.5 to 14.8 s) hides a 5% change: in the faster period the update nodes",
  "summed 43.0 and 46.6 s against 46.8 and 46.9 s. Decoding, measured on the decode session alone",
  "(20 rows): 1.2 ms a run with 50 cache positions, 3.1 ms with 300; of the difference about 0.3 ms is",
  "onnxruntime-node copying the 8 cache inputs into the run (a graph that only slices 8 such inputs:",
  "0.12 against 0.43 ms) and about 0.5 ms the attention's batched matmuls, so a faster decode needs",
  "the cache kept inside onnxruntime between runs, which its Node binding cannot do.",
  "",
  "2026-12-03 11:50–12:40, the code of b4b3a41 unchanged: cold quickstarts of 108.9, 112.6, 109.6, 107.1 and",
  "109.0 s until 12:20 (some with timing probes), then 84.3 s (with `--trace-gc`) and 87.9 s at 12:26–12:28 (a",
  "faster period: `node -e 0` 76 ms, `plan` 289 ms), and 114.7 s at 12:35. Per-thread CPU time of the 107.1-s run (read from /proc/self/task): the main thread 57.9 s,",
  "about 43 s of it the training's onnxruntime calls (its second intra-op thread: 42.8 s); the two sampling",
  "workers 37.9 and 37.4 s; V8's four helper threads (garbage collection, compilation) 18 s; libuv's file",
  "threads 5 s. With `--single-threaded-gc` the helpers' 18 s became 6 s and the main thread took 7 s more",
  "(109.0 s wall): collection is about 12 CPU-seconds, mostly the main thread's heap. Measured and not kept:",
  "",
  "- Training micro-batches on the sampling workers, one onnxruntime thread each, side by side (a queue, the",
  "  largest first, gradients added in micro-batch order: bit-identical to one thread in-process): 6 of the",
  "  quickstart's steps replayed, 24 pairs against the trainer's two intra-op threads, median ratio 0.977 and",
  "  0.998 in two series. The ppo batch alone ran in 0.59× the time of one thread, but onnxruntime's own two",
  "  threads already reach 1.53× one thread on these batches (1.66 against 1.10 s a step).",
  "- A training micro-batch's kernels (4 × 309 tokens, two threads, onnxruntime's profiler): 132 ms, of which",
  "  MatMul and FusedMatMul 86 ms (65%, about 72 GFLOP/s a core), the attention's [4, 4, 309, 309]",
  "  elementwise Mul / Add / Softmax / Sub about 10 ms, the three scatter-adds of gradients 5.3 ms, the LM",
  "  head's [996, 4096] Exp / LogSoftmax / Mul 3.2 ms: no single kernel left to fix.",
  "- Per step, the two workers' last generations finished 185 ms apart on average (40 steps): a perfect",
  "  balance of the rollouts would save at most half of that, about 3.7 s a run. Tried: each row of a request",
  "  a pool job of its own (a worker prefilling a prompt once for all its rows): the gap fell to 106 ms and",
  "  all 1,826 node outputs stayed identical, but interleaved with the code before (13:03–13:11) the rollout",
  "  phases summed 48.3 and 50.5 s against 43.0 and 47.3 s (the unchanged update nodes: 53.9 and 53.1 against",
  "  47.9 and 51.7 s): no gain shown, not kept.",
  "- The proxy judge's measurements take 0.16 ms a story (the quickstart's 1,920 stories: 0.31 s); the rest",
  "  of its nodes' 8.4 s is the per-verdict memo (which makes a crash lose no paid verdict) and scheduling.",
  "  Without the memo, as an experiment, the main thread and the file threads used 4.3 CPU-seconds less",
  "  (108.9 against 112.5 s wall, within the host's drift). Landed on 2026-12-03 for local engines (below).",
  "- Shared prompts in training, counted (not built): a group's 6 rows share their prompt, and 18.1% of the",
  "  quickstart's training positions (74,388 of 410,815) repeat a prefix another row of the group has. Shared",
  "  inside today's micro-batches (rows sorted by length, so a batch holds many groups), padded prefixes and",
  "  suffixes come to 1.01× today's padded positions: nothing saved. Micro-batched by suffix length with the",
  "  ppo and cross_entropy rows of a step in one call: 0.93× (0.89× by `runCost`), about 0.1 s a step.",
  "- Measured 2026-12-03 13:43–14:10, nothing landed. A cold run at a slow hour (115.5 s): rollout phases 54.8 s,",
  "  update phases 55.9 s, 0.15 s between them. An 8-step run under `perf record` (499 Hz, per thread): each",
  "  sampling worker spends 67% of its CPU in onnxruntime, 13% in node and V8 (GC, inline caches), 9% in libc",
  "  (memmove, malloc), 5% in JIT code, 5% in the kernel. Its JavaScript (V8's profile, 14.6 s busy): the new",
  "  key's transposed write into the cache 539 ms (3.7%), the decoding loop (`flush` 314 ms, `generate` 170),",
  "  a decode session per policy version 0.8 s in 8 steps (built while the trainer saves, off the critical",
  "  path). One decoding run alone (13 rows, 256 positions): 1.8–2.4 ms; 2 rows: 0.35–0.42 ms, so",
  "  onnxruntime's own cost per run is about 0.3 ms and the rest of the 0.96 ms fitted from a run's decoding",
  "  is the loop's JavaScript. The trainer's micro-batch budget (2,048 / 4,096 / 8,192 / 16,384 tokens, 4",
  "  synthetic steps of 40 rows, 6 interleaved rounds): 1,034 / 1,050 / 1,100 / 1,044 ms a step, no better",
  "  budget. The new key and value written by plain loops over hoisted arrays instead of a view per head (no",
  "  allocation per token): one worker's share of a step (20 rows, 7,190 tokens) 0.993× in 16 alternating",
  "  rounds inside one process, the tokens identical: not kept. Each of these is worth a few percent at most.",
  "- Landed 2026-12-03 (measured 14:50–16:05): engines that compute in the process, deterministically and for",
  "  free (`local: true`: the extractive writer, the proxy judge) are called by `memoCall` without a memo item.",
  "  Each item had cost a lock file and four fsyncs (object, memo index, and their folders), about 5 ms a",
  "  verdict against 0.16 ms of judging. In the cold quickstart: judge nodes 13.3 -> 1.1 s summed,",
  "  `derive-prompts` 1.9 -> 0.4 s (the first rollout starts at 1.8 s instead of 2.6), memo items stored",
  "  2,892 -> 688, last rollout to update 3.7 -> 2.5 s summed; every training node's output identical (the",
  "  final checkpoint 67de03b91c19 in both), only the judge records differ (the proxy's code fingerprint).",
  "  Interleaved cold runs, code before -> after: 94.8 -> 85.0 s and 123.6 -> 117.4 s (user + sys CPU 175.9",
  "  -> 158.4 and 229.0 -> 217.5 s), and a third pair 111.2 -> 112.3 s (its update phases, which this change",
  "  does not touch, 54.3 against 56.9 s). The whole run's gain is within the host's drift; the savings listed",
  "  above are what is measured for sure, about 1.5–2 s of a run's critical path and 4 CPU-seconds.",
  "- The store's disk, measured the same afternoon and not changed: a store on tmpfs against ext4, two",
  "  interleaved cold runs each: 95.6 / 93.2 s against 102.7 / 114.0 s; fsync switched off on ext4 (an",
  "  experiment): 103.6 / 111.8 s against 120.7 / 102.5 s, no consistent gain. Under strace a 3-step run made 970",
  "  fsyncs (0.40 s in all, off the main thread); a 6-step run's main thread took 1,151 lock files in 0.50 s.",
  "  At a step's start the 8 groups' rollouts begin 8–20 ms apart with fsync or without: the main thread",
  "  starting each group's rollout and reference nodes (template, tokens, memo keys, locks, about 10 ms a",
  "  group), not the disk. About 80–200 ms a step from the first node to the last group's first token.",
  "- Where a step's milliseconds between the engines' calls went (2026-12-03 16:50, per-call timing probes in a",
  "  6- and an 8-step run): an update's two `forwardBackward` calls 1.1–1.9 s, `optimStep` 12–40 ms, `publish`",
  "  2 ms, `save` 103–163 ms and the store taking the folder in (`putTree`) 45–64 ms; the workers build their",
  "  decode sessions for the published weights meanwhile. Then 60–140 ms from an update's end to the next",
  "  step's rollouts (four small nodes, each waiting for its fsyncs) and 50–70 ms from a step's last rollout to",
  "  its update. A 10-step run under V8's profiler (1 ms samples): the main thread's 37.5 s were 15.1 s idle",
  "  (the rollouts), 13.2 s in onnxruntime's runs, 1.0 s garbage collection, 4.4 s in Effect's fibers all",
  "  told; a sampling worker's 35.5 s were 17.8 s idle (the updates), 12.9 s in onnxruntime, 2.4 s of its own",
  "  JavaScript. JavaScript glue is not where the time goes.",
  "- Landed 2026-12-03 (measured 17:00–17:50): a node's dependents start as soon as its output is encoded,",
  "  before its object and index entry are written; a node is indexed only after its inputs, so the index",
  "  still grows in dependency order (the soak below, re-measured with it: 30 SIGKILLs, nothing differs).",
  "  Four interleaved pairs of cold quickstarts (before, after, before, after, then after, before, after,",
  "  before; every node's output identical): from an update to the next step's first rollout 1.28 / 1.48 /",
  "  1.12 / 1.26 s summed before, 0.56 / 0.61 / 0.48 / 0.51 s after; from a step's last rollout to its update",
  "  2.04 / 2.27 / 1.81 / 2.19 s before, 1.57 / 1.62 / 1.46 / 1.45 s after: about 1.3 s off the critical path.",
  "  Whole runs 107.3 / 110.3 / 93.5 / 105.8 s before, 111.1 / 111.1 / 98.6 / 99.6 s after: below the host's",
  "  drift (the update phases, which the change does not touch, summed 53.0 / 54.6 / 46.7 / 53.0 s before and",
  "  56.1 / 56.1 / 50.2 / 50.2 s after). A step's first rollout now starts 15 ms (median) after the update",
  "  hands over its state, the last group's 30 ms; between a step's last rollout and its update, `hri-groups`",
  "  encoding its 390 KB batch takes 24 ms (schema encode, canonical JSON and the decode back: 12.8 ms warm",
  "  and alone).",
  "- Landed 2026-12-03: a checkpoint's files written at once and stored four at a time. Writing and storing",
  "  the quickstart's checkpoint (5.3 MB of weights, 10.6 MB of optimizer state), 12 alternating rounds each in",
  "  one process: 48.8 -> 37.8 ms and 82.6 -> 61.9 ms (0.78x, 0.75x) on an idle machine; beside two busy",
  "  processes, as the sampling workers are while an update saves: 125.8 -> 90.6 and 85.1 -> 68.0 ms (0.72x,",
  "  0.80x). About 40 ms of a step's 150–210, 1–1.5 s a run; every node's output identical.",
  "- The code of f8f1347 unchanged, 2026-12-03 18:32–18:53 (spawn to exit, each in a fresh store): 97.0 s at",
  "  18:32 (175 CPU-seconds), then, in a faster period (`node -e 0` 50–58 ms, the start-up table above), 75.5,",
  "  77.7 and 80.7 s (the first: 137 CPU-seconds, 91% of 2 cores; its 40 updates 41.4 s, its 40 rollout phases",
  "  29.6 s, 2.6 s between them, 2 s before the first step and after the last). Every node's output was",
  "  identical in all four. Per update (timing probes, 40 steps): the `ppo` forward + backward 863 ms, the",
  "  reference's `cross_entropy` 198 ms, AdamW 17 ms, publish 5 ms, save and store 103 ms. Under strace the run",
  "  made 10,095 fsyncs (6.0 s, on libuv's threads): 176 over 4 ms (the checkpoints' files, 1.3 s in all),",
  "  9,919 small ones (4.7 s), now off the critical path. Within the rollout phases (26.8 s of an 81-s run),",
  "  a sampling worker sat idle while the other finished 4.4 s in all, about 110 ms a step, at most 2 s of a",
  "  run; but a step's tail is its longest rows decoding one token per run (about 1 ms a run, most of it fixed",
  "  cost), which a second worker would not shorten.",
  ""
]

/** Hand-written notes under a section; not regenerated. */
const NOTES: Partial<Record<BenchId, ReadonlyArray<string>>> = { engine: PROFILE_NOTES, startup: STARTUP_NOTES, quickstart: QUICKSTART_NOTES }

const stamp = (when: Date, machine: ReturnType<typeof describeMachine>) =>
  `Measured ${when.toISOString().slice(0, 16).replace("T", " ")} UTC. Machine: ${machineLine(machine)}.`

const main = async () => {
  const args = parseArgs(process.argv.slice(2))
  const log = (line: string) => console.log(line)
  const sections: Record<BenchId, string | undefined> = { engine: undefined, startup: undefined, store: undefined, ingest: undefined, model: undefined, judge: undefined, quickstart: undefined, soak: undefined, "soak-offpolicy": undefined, async: undefined, learning: undefined }
  const t0 = performance.now()
  for (const id of args.benches) {
    const machine = describeMachine()
    const when = new Date()
    const markdown = id === "engine"
      ? (await Engine.run({ repeats: args.repeats ?? 7, log })).markdown
      : id === "startup"
      ? (await Startup.run({ repeats: args.repeats ?? 7, log })).markdown
      : id === "store"
      ? (await Store.run({ repeats: args.repeats ?? 3, log })).markdown
      : id === "ingest"
      ? (await Ingest.run({ repeats: args.repeats ?? 5, log })).markdown
      : id === "model"
      ? (await Model.run({ repeats: args.repeats ?? 3, log })).markdown
      : id === "judge"
      ? (await Judge.run({ repeats: args.repeats ?? 3, log })).markdown
      : id === "async"
      ? (await Async.run({ log })).markdown
      : id === "quickstart"
      ? (await Quickstart.run({ repeats: args.repeats ?? 3, log })).markdown
      : id === "learning"
      ? (await Learning.run({ log })).markdown
      : id === "soak-offpolicy"
      ? (await Soak.run({ log, kills: 20, sets: ["grpo.off_policy_steps=1"], edits: false })).markdown
      : (await Soak.run({ log })).markdown
    sections[id] = `${stamp(when, machine)}\n\n${markdown}`
    console.log(`\n## ${TITLES[id]}\n\n${sections[id]}\n`)
  }
  console.log(`benchmarks took ${Math.round((performance.now() - t0) / 1000)} s`)
  if (!args.write) return
  const old = existsSync(DOC) ? readFileSync(DOC, "utf8") : ""
  for (const id of BENCHES) sections[id] ??= previousSection(old, id)
  writeFileSync(DOC, document(sections))
  console.log(`wrote ${DOC}`)
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(1)
})
