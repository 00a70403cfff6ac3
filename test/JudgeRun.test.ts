/**
 * The judge through the `polaris` command, against local Gemini and OpenAI-compatible servers: a run killed halfway
 * through judging resumes without repeating a finished judge call; unscorable stories are
 * recorded with their reason (no reward, not 0) and judged again, alone, by the next run; the API
 * key appears in no file of the store and no line the command printed.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { startFakeGemini, type FakeServer, type Faults } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import { storyOf as storyIn, userOf } from "./support/judgePrompts.ts"
import { BIN, polaris as run, readObject, ROOT } from "./support/cli.ts"
import { judgeReferencesRecipe } from "./support/recipes.ts"
import { anyFileContains, tempDirInRepo } from "./support/store.ts"

const KEY = "AIza-secret-never-stored-7f3c"
const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))

const storyOf = (req: any): string => storyIn(userOf(req))
/** The fake judge's verdict; its evidence names the story, so a stored verdict says whose it is. */
const tag = (story: string) => createHash("sha256").update(story).digest("hex").slice(0, 12)
const answer = (req: any) =>
  JSON.stringify(Object.fromEntries(rubric.dimensions.map((d, i) => [d.id, { evidence: `story ${tag(storyOf(req))}`, score: d.nullable === true ? null : 1 + ((storyOf(req).length + i) % 10) }])))

/** Stories whose verdict is in the store's memo index (finished work). */
const memoized = (store: string): Set<string> => {
  const out = new Set<string>()
  const dir = join(store, "memo")
  if (!existsSync(dir)) return out
  for (const shard of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, shard))) {
      const { object } = JSON.parse(readFileSync(join(dir, shard, f), "utf8"))
      const verdict = readObject(store, object)
      if (typeof verdict?.evidence?.plot === "string") out.add(verdict.evidence.plot.replace("story ", ""))
    }
  }
  return out
}

type Backend = "gemini" | "openai"
const start = (backend: Backend, options: { latencyMs?: number; faults?: Faults }) =>
  backend === "gemini" ? startFakeGemini({ answer, requireKey: KEY, ...options }) : startFakeOpenAI({ answer, requireKey: KEY, ...options })

const recipe = (dir: string, server: FakeServer, inFlight: number, backend: Backend) =>
  judgeReferencesRecipe(dir, [
    `backend: ${backend}`,
    `model: ${backend === "gemini" ? "gemini-3-flash-preview" : "Qwen/Qwen3-32B"}`,
    `base_url: ${server.url}`,
    "api_key: ${POLARIS_TEST_GEMINI_KEY}",
    `max_in_flight: ${inFlight}`,
    "timeout_s: 5",
    "attempts: 2",
    "price_per_million: { input: 0.5, output: 3.0 }"
  ])

const env = { ...process.env, POLARIS_TEST_GEMINI_KEY: KEY }
/** polaris with the test key in its environment, asynchronously: the fake server lives in this process. */
const polaris = (args: ReadonlyArray<string>) => run(args, { env })
/** The judge node's output in the store, from a `--json` summary. */
const judged = (store: string, summary: any): Array<any> => {
  const object: string = summary.nodes.judge.object
  return readObject(store, object)
}

/** Successful generateContent calls per story. */
const okPerStory = (server: FakeServer) => {
  const m = new Map<string, number>()
  for (const c of server.calls) if (c.outcome === "ok") m.set(tag(storyOf(c.body)), (m.get(tag(storyOf(c.body))) ?? 0) + 1)
  return m
}

let servers: Array<FakeServer> = []
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()))
  servers = []
})

describe.each(["gemini", "openai"] as const)("judging through polaris run (%s judge)", (backend) => {
  it("resumes a run killed mid-judging without repeating a finished call, and stores no key", async () => {
    const server = await start(backend, { latencyMs: 120 })
    servers.push(server)
    const dir = tempDirInRepo("judge-resume-")
    const store = join(dir, "store")
    const inFlight = 2
    const file = recipe(dir, server, inFlight, backend)

    const child = spawn(process.execPath, [BIN, "run", file, "--store", store], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
    let printed = ""
    child.stdout.on("data", (d) => (printed += d))
    child.stderr.on("data", (d) => (printed += d))
    const exited = new Promise((resolve) => child.on("exit", resolve))
    // Kill it once a third of the 21 held-out stories have been judged.
    while (server.calls.filter((c) => c.outcome === "ok").length < 7) await new Promise((r) => setTimeout(r, 20))
    child.kill("SIGKILL")
    await exited
    const beforeKill = server.calls.filter((c) => c.outcome === "ok").length
    const finished = memoized(store)
    expect(finished.size).toBeGreaterThan(0)

    const resumed = await polaris(["resume", "--store", store])
    expect(resumed.status, resumed.stderr).toBe(0)
    const final = await polaris(["run", file, "--store", store, "--json"])
    expect(final.status, final.stderr).toBe(0)
    const summary = JSON.parse(final.stdout)
    expect(summary.executed).toBe(0)
    const results = judged(store, summary)
    expect(results).toHaveLength(21)
    expect(results.every((r) => r.quality !== null && r.unscorable === null)).toBe(true)

    const perStory = okPerStory(server)
    expect(perStory.size).toBe(21)
    // Zero repeated calls for finished work: every verdict stored before the kill was never asked for again.
    const repeatedFinished = [...finished].filter((t) => (perStory.get(t) ?? 0) !== 1)
    expect(repeatedFinished).toEqual([])
    // The only repeats are calls in flight at the kill: answered by the server, killed before the client stored them.
    const repeated = [...perStory.entries()].filter(([, n]) => n > 1).map(([t]) => t)
    expect(repeated.length).toBeLessThanOrEqual(inFlight)
    expect(repeated.every((t) => !finished.has(t))).toBe(true)
    console.log(`judge resume (${backend}): killed with ${finished.size} verdicts stored (${beforeKill} answered by the server); ${[...perStory.values()].reduce((a, b) => a + b, 0)} successful calls in all for 21 stories; 0 repeated for stored verdicts, ${repeated.length} repeated that were in flight at the kill`)

    // Secret hygiene: nowhere in the store (objects, memo, node index, run logs, frozen config) or the output.
    expect(anyFileContains(store, KEY)).toBe(false)
    expect(printed + resumed.stdout + resumed.stderr + final.stdout + final.stderr).not.toContain(KEY)
    expect(readFileSync(join(summary.dir, "config.json"), "utf8")).toContain("POLARIS_TEST_GEMINI_KEY")
  }, 120_000)

  it("records unscorable stories with their reason, then judges only those on the next run", async () => {
    const server = await start(backend, { faults: { unavailable: 1 } })
    servers.push(server)
    const dir = tempDirInRepo("judge-unscorable-")
    const store = join(dir, "store")
    const file = recipe(dir, server, 4, backend)
    const first = await polaris(["run", file, "--store", store, "--json"])
    expect(first.status, first.stderr).toBe(0) // unscorable stories do not fail the run
    const down = judged(store, JSON.parse(first.stdout))
    expect(down.every((r) => r.quality === null && r.reward === null && r.unscorable?.reason === "Unavailable")).toBe(true)
    expect(down.every((r) => r.unscorable.calls === 2)).toBe(true)

    server.setFaults({})
    server.reset()
    const second = await polaris(["run", file, "--store", store, "--json"])
    expect(second.status, second.stderr).toBe(0)
    const summary = JSON.parse(second.stdout)
    expect(summary.nodes.judge.status).toBe("executed")
    const up = judged(store, summary)
    expect(up.every((r) => r.quality !== null && r.reward !== null && r.reward > 0 && r.unscorable === null)).toBe(true)
    expect(server.calls.filter((c) => c.outcome === "ok")).toHaveLength(21)

    const third = await polaris(["run", file, "--store", store, "--json"])
    expect(JSON.parse(third.stdout).executed).toBe(0) // now complete: cached, no call
    expect(server.calls).toHaveLength(21)
  }, 120_000)
})

describe("unscorable stories in what polaris prints", () => {
  it("counts them per node with their reasons in the run summary, status and the report, which shows the judge-only run's verdicts", async () => {
    // The fake judge answers prose, not the rubric's JSON, for the stories whose tag starts with 0-3:
    // Malformed on both attempts (attempts: 2), so unscorable; the others are scored.
    const refused = (req: any) => /^[0-3]/.test(tag(storyOf(req)))
    const server = await startFakeGemini({ answer: (req) => (refused(req) ? "I would rather not score this story." : answer(req)), requireKey: KEY })
    servers.push(server)
    const dir = tempDirInRepo("judge-unscorable-summary-")
    const store = join(dir, "store")
    const file = recipe(dir, server, 4, "gemini")
    const run = await polaris(["run", file, "--store", store, "--progress", "plain"])
    expect(run.status, run.stderr).toBe(0) // unscorable stories do not fail the run
    const runId = /^run (\S+): \d+ executed, \d+ cached$/m.exec(run.stdout)![1]!
    const manifest = JSON.parse(readFileSync(join(store, "runs", runId, "manifest.json"), "utf8"))
    const results: Array<any> = readObject(store, manifest.nodes.judge.object)
    const unscorable = results.filter((r) => r.unscorable !== null)
    expect(unscorable.length).toBeGreaterThan(0)
    expect(unscorable.length).toBeLessThan(21)
    expect(unscorable.every((r) => r.unscorable.reason === "Malformed")).toBe(true)
    const n = unscorable.length
    const message: string = unscorable[0].unscorable.message

    // The run's summary: the judged list's numbers, then the unscorable items per node with reasons.
    const scored = results.filter((r) => r.unscorable === null)
    const mean = (xs: Array<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
    expect(run.stdout).toContain(`judged: 21 stories, ${21 - n} scored: quality ${mean(scored.map((r) => r.quality)).toFixed(3)}  S_l ${mean(results.map((r) => r.length_score)).toFixed(1)}  reward ${mean(scored.map((r) => r.reward)).toFixed(3)}; ${n} unscorable`)
    expect(run.stdout).toContain(`unscorable: ${n} of 21 judged items unscorable in 1 node\n  judge: ${n} of 21 unscorable (Malformed ${n})\n`)

    // status, in text (with each reason's first message) and as JSON.
    const status = await polaris(["status", "--store", store])
    expect(status.stdout).toContain(`  judge: ${n} of 21 unscorable (Malformed ${n})\n    Malformed: ${message.split("\n")[0]!.slice(0, 99)}`)
    const statusJson = JSON.parse((await polaris(["status", "--store", store, "--json"])).stdout)
    expect(statusJson.unscorable).toEqual([{ node: "judge", items: 21, unscorable: n, reasons: [{ reason: "Malformed", count: n, message }] }])

    // The report: the same counts, and the verdicts of this judge-only run, story by story.
    const report = await polaris(["report", "--store", store])
    expect(report.status, report.stderr).toBe(0)
    const [htmlPath, jsonPath] = report.stdout.trim().split("\n")
    const json = JSON.parse(readFileSync(jsonPath!, "utf8"))
    const html = readFileSync(htmlPath!, "utf8")
    expect(json.unscorable).toEqual(statusJson.unscorable)
    expect(html).toContain(`<tr data-node="judge" data-reason="Malformed"><th rowspan="1">judge</th><td class="num" rowspan="1">${n} of 21</td><td>Malformed</td><td class="num">${n}</td>`)
    expect(json.judged).toHaveLength(1)
    const verdicts = json.judged[0]
    expect(verdicts).toMatchObject({ node: "judge", stories: 21, scored: 21 - n, rubric: results.find((r) => r.verdicts.length > 0).verdicts[0].rubric })
    expect(verdicts.quality_mean).toBeCloseTo(mean(scored.map((r) => r.quality)), 12)
    for (const r of results) {
      const v = verdicts.verdicts.find((x: any) => x.id === r.id)
      expect(v).toMatchObject({ words: r.words, length_score: r.length_score, quality: r.quality, reward: r.reward })
      expect(v.unscorable?.reason ?? null).toBe(r.unscorable?.reason ?? null)
      if (r.unscorable === null) expect(v.scores).toEqual(r.verdicts[0].scores) // one sample: its scores
      const row = html.slice(html.indexOf(`<tr data-story="${r.id}">`), html.indexOf("</tr>", html.indexOf(`<tr data-story="${r.id}">`)))
      expect(row).toContain(r.unscorable === null ? "<td>scored</td>" : "unscorable: Malformed")
    }
    expect(html).toContain("<h2>Verdicts</h2>")
  }, 120_000)
})
