/**
 * Judge client overhead: what polaris's remote judges cost the calling process per judgement,
 * network wait excluded, and their throughput, against local Gemini and OpenAI-compatible servers
 * that answer at once (bench/fixtures/fake-judge-server.ts, in its own process, so the CPU time
 * measured here is the client's alone). N judgements (default 2,000: 40 stories of about 1,500
 * words from the bundled corpus, each asked for under different prompts) at 64 in flight, by:
 *
 * 1. the `gemini` judge (`makeGemini`: @google/genai, retries, rate limiter, validation);
 * 2. the `openai` judge (`makeOpenAI`, over effect's FetchHttpClient);
 * 3. the obvious alternative: a bare `fetch` loop, 64 workers posting the same generateContent
 *    body (and, 4., the same chat completions body), `JSON.parse` of the reply and of the answer
 *    text; no validation, no retries.
 *
 * Throughput = N / wall time; CPU per call = this process's `process.cpuUsage()` (user + system)
 * over the run / N. Median (min–max) of `repeats` runs after one warm-up of each client.
 *
 *   npm run bench -- judge        (or: npx tsx bench/judge.ts)
 *   POLARIS_BENCH_QUICK=1 ...     200 judgements of 8 stories, only to check that the code runs
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Effect, Redacted } from "effect"
import { FetchHttpClient } from "effect/http"
import { fromGutenberg } from "../src/data/Ingest.ts"
import { makeGemini } from "../src/engines/judge/Gemini.ts"
import type { JudgeItem, JudgeShape } from "../src/engines/judge/Judge.ts"
import { makeOpenAI } from "../src/engines/judge/OpenAI.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { fmt, fmtSummary, ROOT, summarize, type Summary } from "./measure.ts"
import { markdownTable } from "./table.ts"

const IN_FLIGHT = 64
const STORY_WORDS = 1500
const KEY = "bench-judge-key"
const GEMINI_MODEL = "gemini-3-flash-preview"
const OPENAI_MODEL = "Qwen/Qwen3-32B"
const PRICE = { input: 0.5, output: 3 } as const

/** Options of the judge benchmark. */
export interface JudgeOptions {
  /** Measured repetitions of each client (after one warm-up). */
  readonly repeats: number
  /** Progress lines. */
  readonly log: (line: string) => void
  /** 200 judgements of 8 stories (default: `POLARIS_BENCH_QUICK=1`), only to check the code runs. */
  readonly quick?: boolean
}

/** One client's numbers. */
export interface ClientResult {
  readonly client: string
  readonly throughput: Summary
  readonly cpuUsPerCall: Summary
}

/** The measured numbers and their markdown section. */
export interface JudgeResult {
  readonly judgements: number
  readonly clients: ReadonlyArray<ClientResult>
  readonly markdown: string
}

// ---------------------------------------------------------------------------------------------
// The requests

/** The first paragraphs of a story up to about `words` words. */
const cut = (text: string, words: number): string => {
  const out: Array<string> = []
  let n = 0
  for (const paragraph of text.split(/\n\s*\n/)) {
    if (n >= words) break
    out.push(paragraph)
    n += paragraph.split(/\s+/).filter((w) => w !== "").length
  }
  return out.join("\n\n")
}

/** `count` stories of at least STORY_WORDS words, spread over the bundled corpus, cut to about STORY_WORDS. */
const corpusStories = (count: number): Array<string> => {
  const dir = join(ROOT, "examples", "anthologies")
  const long = readdirSync(dir).filter((f) => f.endsWith(".txt")).sort()
    .flatMap((f) => fromGutenberg(f.replace(/\.txt$/, ""), readFileSync(join(dir, f))))
    .filter((s) => s.words >= STORY_WORDS)
  if (long.length < count) throw new Error(`judge: the corpus has ${long.length} stories of ${STORY_WORDS}+ words, ${count} needed`)
  return Array.from({ length: count }, (_, i) => cut(long[Math.floor((i * long.length) / count)]!.text, STORY_WORDS))
}

const TOPICS = ["a lighthouse keeper", "a debt repaid", "a storm at sea", "a forged letter", "an inheritance", "a night train", "a lost dog", "a rival"]

/** N judgements: the stories in turn, each time under a different prompt. */
const makeItems = (stories: ReadonlyArray<string>, n: number): Array<JudgeItem> =>
  Array.from({ length: n }, (_, i) => ({
    prompt: `Write a story of about ${STORY_WORDS.toLocaleString("en-US")} words about ${TOPICS[i % TOPICS.length]!} (request ${i + 1}).`,
    story: stories[i % stories.length]!
  }))

// ---------------------------------------------------------------------------------------------
// The server process

interface Servers {
  readonly gemini: string
  readonly openai: string
  readonly child: ChildProcess
}

const startServers = (): Promise<Servers> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "fixtures", "fake-judge-server.ts")], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let done = false
    child.stderr.on("data", (d) => (stderr += d))
    child.stdout.on("data", (d) => {
      stdout += d
      const line = stdout.split("\n").find((l) => l.trim().startsWith("{"))
      if (done || line === undefined || !stdout.includes("\n")) return
      done = true
      try {
        const urls = JSON.parse(line) as { gemini: string; openai: string }
        resolve({ gemini: urls.gemini, openai: urls.openai, child })
      } catch (e) {
        child.kill("SIGTERM")
        reject(new Error(`fake-judge-server printed no JSON line: ${stdout}${stderr} (${String(e)})`))
      }
    })
    child.on("error", (e) => {
      if (!done) reject(e)
      done = true
    })
    child.on("exit", (code, signal) => {
      if (!done) reject(new Error(`fake-judge-server exited with ${code ?? signal} before listening: ${stderr.trim()}`))
      done = true
    })
  })

const stopServers = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const force = setTimeout(() => child.kill("SIGKILL"), 3000)
    child.once("exit", () => {
      clearTimeout(force)
      resolve()
    })
    child.kill("SIGTERM")
    child.stdin?.end()
  })

// ---------------------------------------------------------------------------------------------
// The clients

interface Client {
  readonly name: string
  /** Judges every item at IN_FLIGHT; rejects unless every judgement came back. */
  readonly judgeAll: (items: ReadonlyArray<JudgeItem>) => Promise<void>
}

/** A polaris judge, `score` on every item through Effect.forEach at IN_FLIGHT. */
const polarisClient = (name: string, judge: JudgeShape): Client => ({
  name,
  judgeAll: async (items) => {
    const before = judge.totals()
    await Effect.runPromise(Effect.forEach(items, (item) => judge.score(item), { concurrency: IN_FLIGHT, discard: true }))
    const after = judge.totals()
    const verdicts = after.verdicts - before.verdicts
    const calls = after.calls - before.calls
    if (verdicts !== items.length || calls !== items.length) throw new Error(`${name}: ${verdicts} verdicts in ${calls} calls for ${items.length} items`)
  }
})

/** `count` workers taking the next item until none is left. */
const workers = async (items: ReadonlyArray<JudgeItem>, one: (item: JudgeItem) => Promise<number>): Promise<number> => {
  let next = 0
  let sink = 0
  const worker = async () => {
    while (next < items.length) sink += await one(items[next++]!)
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return sink
}

/** Strict OpenAI structured output has no `propertyOrdering` (makeOpenAI drops it too). */
const withoutOrdering = (schema: unknown): unknown =>
  Array.isArray(schema) ? schema.map(withoutOrdering)
    : typeof schema === "object" && schema !== null
    ? Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "propertyOrdering").map(([k, v]) => [k, withoutOrdering(v)]))
    : schema

/** The bare loop against generateContent: the body @google/genai sends, parse the reply and the answer, nothing else. */
const bareGemini = (base: string, rubric: Rubric.Rubric): Client => {
  const url = `${base}/v1beta/models/${GEMINI_MODEL}:generateContent`
  const schema = Rubric.replyJsonSchema(rubric)
  const headers = { "content-type": "application/json", "x-goog-api-key": KEY }
  const one = async (item: JudgeItem): Promise<number> => {
    const { system, user } = Rubric.judgePrompt(rubric, item)
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        contents: [{ role: "user", parts: [{ text: user }] }],
        systemInstruction: { role: "user", parts: [{ text: system }] },
        generationConfig: { temperature: 1, responseMimeType: "application/json", responseJsonSchema: schema }
      })
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`bare fetch (gemini): HTTP ${response.status}: ${text.slice(0, 200)}`)
    const reply = JSON.parse(text) as { candidates: Array<{ content: { parts: Array<{ text: string; thought?: boolean }> } }> }
    const answer = reply.candidates[0]!.content.parts.filter((p) => p.thought !== true).map((p) => p.text).join("")
    return Object.keys(JSON.parse(answer) as object).length
  }
  return { name: "bare `fetch` loop → Gemini endpoint", judgeAll: async (items) => void (await workers(items, one)) }
}

/** The bare loop against chat completions: the body makeOpenAI sends, parse the reply and the answer, nothing else. */
const bareOpenAI = (base: string, rubric: Rubric.Rubric): Client => {
  const url = `${base}/v1/chat/completions`
  const schema = withoutOrdering(Rubric.replyJsonSchema(rubric))
  const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` }
  const one = async (item: JudgeItem): Promise<number> => {
    const { system, user } = Rubric.judgePrompt(rubric, item)
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        model: OPENAI_MODEL,
        messages: [{ role: "system", content: system }, { role: "user", content: user }],
        response_format: { type: "json_schema", json_schema: { name: "verdict", schema, strict: true } }
      })
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`bare fetch (openai): HTTP ${response.status}: ${text.slice(0, 200)}`)
    const reply = JSON.parse(text) as { choices: Array<{ message: { content: string } }> }
    return Object.keys(JSON.parse(reply.choices[0]!.message.content) as object).length
  }
  return { name: "bare `fetch` loop → OpenAI endpoint", judgeAll: async (items) => void (await workers(items, one)) }
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Sample {
  readonly perSecond: number
  readonly cpuUs: number
  readonly wallMs: number
}

const measure = async (client: Client, items: ReadonlyArray<JudgeItem>): Promise<Sample> => {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await client.judgeAll(items)
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  return { perSecond: items.length / (wallMs / 1000), cpuUs: (cpu.user + cpu.system) / items.length, wallMs }
}

/** Runs the benchmark: servers up, one warm-up of every client, then `repeats` rounds of all clients in turn. */
export const run = async (options: JudgeOptions): Promise<JudgeResult> => {
  const quick = options.quick ?? process.env["POLARIS_BENCH_QUICK"] === "1"
  const n = quick ? 200 : 2000
  const storyCount = quick ? 8 : 40
  const { log } = options
  const rubric = await Effect.runPromise(Rubric.load(Rubric.DEFAULT_RUBRIC))
  const stories = corpusStories(storyCount)
  const items = makeItems(stories, n)
  const promptChars = items.map((item) => {
    const p = Rubric.judgePrompt(rubric, item)
    return p.system.length + p.user.length
  })
  const meanTokens = promptChars.reduce((a, b) => a + b, 0) / promptChars.length / 4
  const meanWords = stories.reduce((a, s) => a + s.split(/\s+/).filter((w) => w !== "").length, 0) / stories.length
  log(`judge: ${quick ? "QUICK " : ""}${fmt(n)} judgements of ${storyCount} stories (~${fmt(meanWords)} words, ~${fmt(meanTokens)} prompt tokens each) at ${IN_FLIGHT} in flight`)

  const servers = await startServers()
  try {
    const remote = { limits: { maxInFlight: IN_FLIGHT }, price: PRICE }
    const gemini = await Effect.runPromise(makeGemini({ ...remote, apiKey: Redacted.make(KEY), model: GEMINI_MODEL, baseUrl: servers.gemini, rubric }))
    const openai = await Effect.runPromise(Effect.provide(
      makeOpenAI({ ...remote, baseUrl: servers.openai, model: OPENAI_MODEL, apiKey: Redacted.make(KEY), rubric }),
      FetchHttpClient.layer
    ))
    const clients: ReadonlyArray<Client> = [
      polarisClient("polaris `gemini` judge (@google/genai)", gemini),
      bareGemini(servers.gemini, rubric),
      polarisClient("polaris `openai` judge (FetchHttpClient)", openai),
      bareOpenAI(servers.openai, rubric)
    ]
    for (const client of clients) {
      const s = await measure(client, items)
      log(`judge: warm-up ${client.name}: ${fmt(s.perSecond)}/s, ${fmt(s.cpuUs)} µs CPU per call`)
    }
    const samples = clients.map((): Array<Sample> => [])
    for (let r = 0; r < options.repeats; r++) {
      for (const [i, client] of clients.entries()) {
        const s = await measure(client, items)
        samples[i]!.push(s)
        log(`judge: run ${r + 1}/${options.repeats} ${client.name}: ${fmt(s.perSecond)}/s, ${fmt(s.cpuUs)} µs CPU per call (${fmt(s.wallMs)} ms)`)
      }
    }
    const results: Array<ClientResult> = clients.map((client, i) => ({
      client: client.name,
      throughput: summarize(samples[i]!.map((s) => s.perSecond)),
      cpuUsPerCall: summarize(samples[i]!.map((s) => s.cpuUs))
    }))
    return { judgements: n, clients: results, markdown: markdownOf(results, { n, quick, storyCount, meanWords, meanTokens, repeats: options.repeats }) }
  } finally {
    await stopServers(servers.child)
  }
}

const markdownOf = (
  results: ReadonlyArray<ClientResult>,
  s: { readonly n: number; readonly quick: boolean; readonly storyCount: number; readonly meanWords: number; readonly meanTokens: number; readonly repeats: number }
): string => {
  // Rows 0/1 are gemini and its bare loop, 2/3 openai and its bare loop.
  const ratio = (i: number): string => {
    if (i % 2 === 1) return "1 (baseline)"
    const own = results[i]!, bare = results[i + 1]!
    return `${fmt(own.cpuUsPerCall.median / bare.cpuUsPerCall.median, 2)}× CPU, ${fmt(own.throughput.median / bare.throughput.median, 2)}× throughput`
  }
  const table = markdownTable(
    ["client (64 in flight)", "throughput (judgements/s)", "client CPU per call (µs)", "polaris / bare fetch"],
    results.map((r, i) => [r.client, fmtSummary(r.throughput), fmtSummary(r.cpuUsPerCall), ratio(i)])
  )
  return [
    ...(s.quick ? ["**QUICK MODE (`POLARIS_BENCH_QUICK=1`): 200 judgements, numbers mean little.**", ""] : []),
    `What a remote judge costs the calling process per judgement, network wait excluded, and how many`,
    `judgements per second it completes, against local servers that answer at once. The servers (a fake`,
    "Gemini generateContent and a fake OpenAI-compatible chat completions endpoint from `test/support`,",
    "no faults) run in their own process (`bench/fixtures/fake-judge-server.ts`), so the CPU time",
    "counted here is the client's alone; each answers a valid verdict of the default 16-dimension rubric",
    `(about 200 characters of evidence per dimension) for the story in the request. Each run judges`,
    `${fmt(s.n)} items, ${fmt(s.storyCount)} stories from the bundled corpus cut to about ${fmt(s.meanWords)} words, each asked for under`,
    `different prompts, so one request is about ${fmt(s.meanTokens)} tokens (characters / 4) of rubric and story;`,
    `${IN_FLIGHT} calls are in flight throughout. Throughput is items / wall time; CPU per call is`,
    "`process.cpuUsage()` (user + system) of the client process over the run / items, GC included.",
    `Median (min–max) of ${s.repeats} runs of each client, after one warm-up of each; the clients take turns.`,
    "",
    table,
    "",
    "The bare `fetch` loops are the obvious alternative: 64 workers post the same request body (built",
    "with `Rubric.judgePrompt` and `Rubric.replyJsonSchema`, as the judges do) and `JSON.parse` the reply",
    "and its answer text. Nothing else. On top of that, the polaris judges validate every reply against",
    "the rubric (every dimension present, with its evidence and an integer score in the scale, null",
    "only where allowed) and compute the quality; classify failures and would retry the retryable ones",
    "on backoff, honouring RetryInfo / Retry-After, with a time limit on every attempt; take a permit",
    "from the rate limiter (here only `maxInFlight: 64`) for every attempt; account tokens and cost",
    "per verdict and in the running totals; and run on Effect fibers. The `gemini` judge also builds",
    "its request through @google/genai (request conversion, its own response wrapper classes).",
    "",
    "With the servers answering at once, throughput is bounded by CPU, and on a machine with few cores",
    "the server process competes with the client for it: compare the rows with each other, not with",
    "a real endpoint, where the network and the model's own time dominate."
  ].join("\n")
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({ repeats: 3, log: (l) => console.log(l) })
  console.log(`\n${result.markdown}`)
}
