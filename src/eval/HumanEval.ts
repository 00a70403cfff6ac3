/**
 * The blinded human evaluation (the POLARIS paper's: prompt-story pairs, two annotators, win rate
 * with a 95% interval): `polaris human-eval export RUN` writes one self-contained page per
 * annotator under `runs/<id>/human-eval/`, and `polaris human-eval import RUN FILE...` turns
 * their answers into win rates, agreement and judge-human agreement, kept in
 * `runs/<id>/human-eval.json` for the run report.
 *
 * Blinding: a page holds the prompts and the stories only, under opaque item ids; which system
 * wrote story A or B, and the order of the pairs, are drawn per annotator (seeded) and written
 * to `key.json` beside the pages, which annotators never receive. Each page keeps its answers
 * in the browser (localStorage) and exports them as a JSON file.
 *
 * Statistics: an annotator's verdict on a pair is one comparison (both orders the same); win
 * rates count ties half with a percentile bootstrap over prompts (`winRate`); agreement between
 * annotators and between each annotator and the judge is Cohen's kappa over the pairs both
 * answered; the judge's verdict is its dual-position verdict from the run's pairwise node.
 */
import { mkdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect, Schema } from "effect"
import { objectPath, pathsOf } from "../dag/ArtifactStore.ts"
import { sha256 } from "../dag/Canonical.ts"
import { atomicWrite } from "../dag/internal/files.ts"
import { stripThinking } from "../grpo/Reward.ts"
import { seeded } from "../internal/random.ts"
import { cohenKappa, combine, type PairwiseComparison, type WinRate, winRate } from "./Stats.ts"

export class HumanEvalError extends Data.TaggedError("HumanEvalError")<{ readonly message: string }> {}

/** An annotator's answers, as the page exports them. */
export const Answers = Schema.Struct({
  annotator: Schema.String,
  page: Schema.String,
  answers: Schema.Array(Schema.Struct({ item: Schema.String, choice: Schema.Literals(["A", "B", "tie"]), comment: Schema.String }))
})
export type Answers = typeof Answers.Type

/** What decodes the pages: per annotator, item id -> the pair and which system is A. */
const Key = Schema.Struct({
  systems: Schema.Tuple([Schema.String, Schema.String]),
  pairs: Schema.Record(Schema.String, Schema.Struct({ prompt_id: Schema.String, sample: Schema.Int })),
  annotators: Schema.Record(Schema.String, Schema.Struct({ page: Schema.String, items: Schema.Record(Schema.String, Schema.Struct({ pair: Schema.String, A: Schema.String, B: Schema.String })) }))
})
type Key = typeof Key.Type

const readJson = async (path: string): Promise<any> => JSON.parse(await readFile(path, "utf8"))
const fail = (message: string) => new HumanEvalError({ message })

interface Pair {
  readonly key: string
  readonly prompt_id: string
  readonly sample: number
  readonly prompt: string
  readonly stories: Readonly<Record<string, string>>
}

/** The run's evaluated stories of `systems`, paired by prompt and sample (the first `samples` of each). */
const pairsOf = (store: string, runId: string, systems: readonly [string, string], samples: number) =>
  Effect.tryPromise({
    try: async (): Promise<Array<Pair>> => {
      const paths = pathsOf(store)
      const manifest = await readJson(join(paths.runs, runId, "manifest.json"))
      const groupsOf = async (system: string): Promise<Array<any>> => {
        const digest = manifest.nodes?.[`eval-${system}/rollout`]?.object
        if (typeof digest !== "string") throw new Error(`run ${runId} has no evaluated stories of system "${system}" (node eval-${system}/rollout)`)
        return readJson(objectPath(paths, digest))
      }
      const [xs, ys] = await Promise.all(systems.map(groupsOf))
      const byPrompt = new Map(ys!.map((g) => [g.prompt_id as string, g]))
      return xs!.flatMap((gx) => {
        const gy = byPrompt.get(gx.prompt_id)
        if (gy === undefined) return []
        const n = Math.min(samples, gx.samples.length, gy.samples.length)
        return Array.from({ length: n }, (_, i) => ({
          key: `${gx.prompt_id}#${i}`,
          prompt_id: gx.prompt_id as string,
          sample: i,
          prompt: gx.prompt as string,
          stories: { [systems[0]]: stripThinking(gx.samples[i].text), [systems[1]]: stripThinking(gy.samples[i].text) }
        }))
      })
    },
    catch: (e) => fail(e instanceof Error ? e.message : String(e))
  })

const shuffled = <A>(xs: ReadonlyArray<A>, seed: string): Array<A> => {
  const out = [...xs]
  const rng = seeded(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
// JSON inside <script>: `</` would end the element.
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c")

/** The annotation page: prompts and stories only (no system names), answers kept in localStorage, exported as JSON. */
export const page = (annotator: string, pageId: string, items: ReadonlyArray<{ readonly item: string; readonly prompt: string; readonly A: string; readonly B: string }>): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Story comparison — ${escape(annotator)}</title><style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
.pair{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1.5rem 0}.stories{display:flex;gap:1rem}
.story{flex:1;min-width:0}.story pre{white-space:pre-wrap;font-family:Georgia,serif;background:#fafafa;padding:.6rem;max-height:30rem;overflow:auto}
.prompt{font-style:italic}.done{color:#05703a}textarea{width:100%}#bar{position:sticky;top:0;background:#fff;padding:.5rem 0;border-bottom:1px solid #ddd}
</style></head><body>
<div id="bar"><strong>${escape(annotator)}</strong>: <span id="progress"></span> <button id="export-button" type="button">Export answers</button>
<a id="download" download="answers-${escape(annotator)}.json" hidden>download</a></div>
<p>For each prompt, read both stories and choose the better story for the prompt (or a tie). Your answers are kept in this browser; export them when done and send the file back.</p>
<div id="pairs"></div>
<textarea id="export" rows="4" readonly placeholder="The exported answers appear here too."></textarea>
<script>
const ANNOTATOR = ${scriptJson(annotator)}, PAGE = ${scriptJson(pageId)}, ITEMS = ${scriptJson(items)};
const STORE = "polaris-human-eval:" + PAGE;
const saved = JSON.parse(localStorage.getItem(STORE) || "{}");
const save = () => { localStorage.setItem(STORE, JSON.stringify(saved)); progress(); };
const progress = () => { const n = ITEMS.filter((it) => saved[it.item] && saved[it.item].choice).length; document.getElementById("progress").textContent = n + " of " + ITEMS.length + " answered"; };
const root = document.getElementById("pairs");
ITEMS.forEach((it, i) => {
  const div = document.createElement("div"); div.className = "pair"; div.dataset.item = it.item;
  const h = document.createElement("h3"); h.textContent = "Pair " + (i + 1) + " of " + ITEMS.length; div.appendChild(h);
  const p = document.createElement("p"); p.className = "prompt"; p.textContent = it.prompt; div.appendChild(p);
  const stories = document.createElement("div"); stories.className = "stories";
  for (const side of ["A", "B"]) {
    const s = document.createElement("div"); s.className = "story";
    const t = document.createElement("h4"); t.textContent = "Story " + side; s.appendChild(t);
    const pre = document.createElement("pre"); pre.textContent = it[side]; s.appendChild(pre); stories.appendChild(s);
  }
  div.appendChild(stories);
  const form = document.createElement("div");
  for (const [value, label] of [["A", "Story A is better"], ["B", "Story B is better"], ["tie", "Tie"]]) {
    const l = document.createElement("label"); const r = document.createElement("input");
    r.type = "radio"; r.name = "choice-" + it.item; r.value = value; r.checked = saved[it.item] && saved[it.item].choice === value;
    r.addEventListener("change", () => { saved[it.item] = { ...(saved[it.item] || {}), choice: value }; save(); });
    l.appendChild(r); l.append(" " + label + " "); form.appendChild(l);
  }
  const c = document.createElement("textarea"); c.rows = 2; c.placeholder = "Comment (optional)"; c.className = "comment";
  c.value = (saved[it.item] && saved[it.item].comment) || "";
  c.addEventListener("input", () => { saved[it.item] = { ...(saved[it.item] || {}), comment: c.value }; save(); });
  form.appendChild(c); div.appendChild(form); root.appendChild(div);
});
document.getElementById("export-button").addEventListener("click", () => {
  const answers = ITEMS.filter((it) => saved[it.item] && saved[it.item].choice).map((it) => ({ item: it.item, choice: saved[it.item].choice, comment: saved[it.item].comment || "" }));
  const text = JSON.stringify({ annotator: ANNOTATOR, page: PAGE, answers }, null, 2);
  document.getElementById("export").value = text;
  const a = document.getElementById("download"); a.href = URL.createObjectURL(new Blob([text], { type: "application/json" })); a.click();
});
progress();
</script></body></html>
`

/**
 * Writes one page per annotator and the key into `runs/<id>/human-eval/`: the first `samples`
 * stories of each evaluated prompt of systems `[x, y]` (default the run's final and initial
 * policy), in an order and an A/B assignment drawn per annotator from `seed`.
 */
export const exportPages = (store: string, runId: string, options: { readonly annotators: ReadonlyArray<string>; readonly systems?: readonly [string, string]; readonly samples?: number; readonly seed?: string }) =>
  Effect.gen(function*() {
    const systems = options.systems ?? (["final", "initial"] as const)
    if (options.annotators.length === 0 || new Set(options.annotators).size !== options.annotators.length) return yield* fail("name each annotator once (--annotators a,b)")
    const pairs = yield* pairsOf(store, runId, systems, options.samples ?? 1)
    if (pairs.length === 0) return yield* fail(`run ${runId}: no prompt has stories of both ${systems.join(" and ")}`)
    const seed = options.seed ?? runId
    const dir = join(pathsOf(store).runs, runId, "human-eval")
    yield* Effect.promise(() => mkdir(dir, { recursive: true }))
    const decoding: Record<string, Key["annotators"][string]> = {}
    const files: Array<string> = []
    for (const annotator of options.annotators) {
      const pageId = sha256(`${seed}:${annotator}:page`).slice(0, 16)
      const items = shuffled(pairs, `${seed}:${annotator}:order`).map((p) => {
        const flip = seeded(`${seed}:${annotator}:${p.key}:side`)() < 0.5
        const [A, B] = flip ? [systems[1], systems[0]] : [systems[0], systems[1]]
        return { item: sha256(`${seed}:${annotator}:${p.key}:item`).slice(0, 12), pair: p.key, A, B, prompt: p.prompt, textA: p.stories[A]!, textB: p.stories[B]! }
      })
      decoding[annotator] = { page: pageId, items: Object.fromEntries(items.map((it) => [it.item, { pair: it.pair, A: it.A, B: it.B }])) }
      const file = join(dir, `${annotator.replace(/[^A-Za-z0-9._-]/g, "_")}.html`)
      yield* Effect.promise(() => atomicWrite(dir, file, page(annotator, pageId, items.map((it) => ({ item: it.item, prompt: it.prompt, A: it.textA, B: it.textB }))), { durable: false }))
      files.push(file)
    }
    const key: Key = { systems: [systems[0], systems[1]], pairs: Object.fromEntries(pairs.map((p) => [p.key, { prompt_id: p.prompt_id, sample: p.sample }])), annotators: decoding }
    const keyFile = join(dir, "key.json")
    yield* Effect.promise(() => atomicWrite(dir, keyFile, JSON.stringify(key, null, 2) + "\n", { durable: false }))
    return { pages: files, key: keyFile, pairs: pairs.length }
  })

/** A win rate of the first system against the second, ties half, with its 95% interval over prompts. */
export interface Rate extends WinRate {
  readonly pairs: number
}

export interface HumanEvalResult {
  /** [x, y]: rates are x's against y. */
  readonly systems: readonly [string, string]
  readonly annotators: ReadonlyArray<{ readonly name: string; readonly answered: number; readonly rate: Rate; readonly judgeAgreement: number; readonly judgeKappa: number }>
  readonly pooled: Rate
  /** Cohen's kappa of each pair of annotators over the pairs both answered. */
  readonly kappa: ReadonlyArray<{ readonly a: string; readonly b: string; readonly pairs: number; readonly kappa: number }>
  /** The judge on the same pairs (its dual-position verdicts), when the run judged them. */
  readonly judge: Rate | null
}

const rateOf = (verdicts: ReadonlyArray<{ readonly prompt: string; readonly verdict: "a" | "b" | "tie" }>, systems: readonly [string, string], seed: string): Rate => {
  const cs: Array<PairwiseComparison> = verdicts.map((v) => ({ prompt: v.prompt, a: systems[0], b: systems[1], ab: v.verdict, ba: v.verdict }))
  const w = winRate(cs, systems[0], systems[1], { seed })
  return { pairs: cs.length, wins: w.wins, ties: w.ties, losses: w.losses, rate: w.rate, low: w.low, high: w.high }
}

/** Decodes the answer files with the key, computes the statistics, and writes `runs/<id>/human-eval.json`. */
export const importAnswers = (store: string, runId: string, files: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const runDir = join(pathsOf(store).runs, runId)
    const key = yield* Effect.tryPromise({ try: () => readJson(join(runDir, "human-eval", "key.json")), catch: () => fail(`run ${runId} has no human-eval/key.json: export the pages first (polaris human-eval export ${runId})`) }).pipe(
      Effect.flatMap((k) => Effect.mapError(Schema.decodeUnknownEffect(Key)(k), (e) => fail(`human-eval/key.json: ${e.message}`)))
    )
    const systems = key.systems
    const verdictsOf = new Map<string, Map<string, "a" | "b" | "tie">>()
    for (const file of files) {
      const answers = yield* Effect.tryPromise({ try: () => readJson(file), catch: (e) => fail(`${file}: ${e instanceof Error ? e.message : String(e)}`) }).pipe(
        Effect.flatMap((a) => Effect.mapError(Schema.decodeUnknownEffect(Answers)(a), (e) => fail(`${file}: not an answers file: ${e.message}`)))
      )
      const mine = key.annotators[answers.annotator]
      if (mine === undefined || mine.page !== answers.page) return yield* fail(`${file}: answers of "${answers.annotator}" for a page this run's key does not hold`)
      const verdicts = new Map<string, "a" | "b" | "tie">()
      for (const a of answers.answers) {
        const item = mine.items[a.item]
        if (item === undefined) return yield* fail(`${file}: item ${a.item} is not on ${answers.annotator}'s page`)
        const chosen = a.choice === "tie" ? undefined : a.choice === "A" ? item.A : item.B
        verdicts.set(item.pair, chosen === undefined ? "tie" : chosen === systems[0] ? "a" : "b")
      }
      verdictsOf.set(answers.annotator, verdicts)
    }
    const promptOf = (pair: string) => key.pairs[pair]!.prompt_id
    // The judge's verdicts on the same pairs, from the run's pairwise node (either orientation).
    const judgeVerdicts = new Map<string, "a" | "b" | "tie">()
    const comparisons = yield* Effect.promise(async () => {
      const manifest = await readJson(join(runDir, "manifest.json"))
      const digest = manifest.nodes?.pairwise?.object
      return typeof digest === "string" ? ((await readJson(objectPath(pathsOf(store), digest))) as Array<any>) : []
    })
    for (const c of comparisons) {
      if (c.ab === null || c.ba === null) continue
      const pair = `${c.prompt_id}#${c.sample}`
      if (key.pairs[pair] === undefined) continue
      const v = combine({ prompt: c.prompt_id, a: c.a, b: c.b, ab: c.ab, ba: c.ba })
      const winner = v === "tie" ? "tie" : v === "a" ? c.a : c.b
      if (c.a === systems[0] && c.b === systems[1] || c.a === systems[1] && c.b === systems[0]) {
        judgeVerdicts.set(pair, winner === "tie" ? "tie" : winner === systems[0] ? "a" : "b")
      }
    }
    const annotators = [...verdictsOf].map(([name, verdicts]) => {
      const shared = [...verdicts.keys()].filter((p) => judgeVerdicts.has(p))
      const human = shared.map((p) => verdicts.get(p)!)
      const judge = shared.map((p) => judgeVerdicts.get(p)!)
      return {
        name,
        answered: verdicts.size,
        rate: rateOf([...verdicts].map(([pair, verdict]) => ({ prompt: promptOf(pair), verdict })), systems, `human:${runId}:${name}`),
        judgeAgreement: shared.length === 0 ? NaN : human.filter((v, i) => v === judge[i]).length / shared.length,
        judgeKappa: cohenKappa(human, judge)
      }
    })
    const names = [...verdictsOf.keys()]
    const kappa = names.flatMap((a, i) => names.slice(i + 1).map((b) => {
      const va = verdictsOf.get(a)!
      const vb = verdictsOf.get(b)!
      const both = [...va.keys()].filter((p) => vb.has(p))
      return { a, b, pairs: both.length, kappa: cohenKappa(both.map((p) => va.get(p)!), both.map((p) => vb.get(p)!)) }
    }))
    const result: HumanEvalResult = {
      systems,
      annotators,
      pooled: rateOf([...verdictsOf.values()].flatMap((v) => [...v].map(([pair, verdict]) => ({ prompt: promptOf(pair), verdict }))), systems, `human:${runId}:pooled`),
      kappa,
      judge: judgeVerdicts.size === 0 ? null : rateOf([...judgeVerdicts].map(([pair, verdict]) => ({ prompt: promptOf(pair), verdict })), systems, `human:${runId}:judge`)
    }
    const file = join(runDir, "human-eval.json")
    yield* Effect.promise(() => atomicWrite(runDir, file, JSON.stringify(result, null, 2) + "\n", { durable: false }))
    return { result, file }
  })
