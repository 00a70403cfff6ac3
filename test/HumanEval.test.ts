/**
 * The blinded human evaluation: pages exported from a run (no model names in their HTML or
 * script), driven in headless Chromium as an annotator would (answer every pair, reload: the
 * answers are still there, export), the exports imported, and the win rates and kappa pinned
 * against a hand-computed example; the judge's agreement checked against its stored verdicts;
 * the result in the run report.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { cohenKappa } from "../src/eval/Stats.ts"
import { openPage } from "./support/browser.ts"
import { polaris } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

describe("Cohen's kappa", () => {
  it("matches a hand computation", () => {
    // p_o = 3/4; p_e = 0.5*0.25 + 0.25*0.5 + 0.25*0.25 = 0.3125; (0.75 - 0.3125) / 0.6875
    expect(cohenKappa(["a", "a", "b", "tie"], ["a", "b", "b", "tie"])).toBeCloseTo((0.75 - 0.3125) / 0.6875, 12)
    expect(cohenKappa(["a", "a"], ["a", "a"])).toBe(1)
  })
})

const SMALL = ["--set", "grpo.steps=1", "--set", "grpo.groups_per_step=1", "--set", "eval.prompts_per_bucket=4", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

describe("polaris human-eval", () => {
  it("exports blinded pages, collects answers in Chromium, and imports them into win rates, kappa and judge agreement", async () => {
    const store = tempDirInRepo("human-")
    const run = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--store", store, "--json"])
    expect(run.status, run.stderr).toBe(0)
    const runId = JSON.parse(run.stdout).runId
    const exported = await polaris(["human-eval", "export", runId, "--annotators", "ann1,ann2", "--store", store])
    expect(exported.status, exported.stderr).toBe(0)
    const dir = join(store, "runs", runId, "human-eval")
    const key = JSON.parse(readFileSync(join(dir, "key.json"), "utf8"))
    const pairs = Object.keys(key.pairs).sort()
    expect(pairs).toHaveLength(4)

    // Blind: the page's data holds prompts and stories under opaque ids; no system name anywhere else.
    for (const annotator of ["ann1", "ann2"]) {
      const html = readFileSync(join(dir, `${annotator}.html`), "utf8")
      const items = JSON.parse(/ITEMS = (\[.*?\]);\n/s.exec(html)![1]!) as Array<Record<string, string>>
      expect(items.every((it) => Object.keys(it).sort().join() === "A,B,item,prompt")).toBe(true)
      let rest = html
      for (const it of items) for (const text of [it.prompt!, it.A!, it.B!]) rest = rest.split(JSON.stringify(text).slice(1, -1).replace(/</g, "\\u003c")).join("")
      expect(rest).not.toMatch(/final|initial/)
    }
    // Annotators' orders and sides differ (drawn per annotator).
    const sides = (a: string) => pairs.map((p) => Object.values(key.annotators[a].items).find((x: any) => x.pair === p) as any).map((x) => x.A)
    expect(sides("ann1").join() === sides("ann2").join() && Object.keys(key.annotators.ann1.items).join() === Object.keys(key.annotators.ann2.items).join()).toBe(false)

    // What each annotator says about each pair (sorted): final wins, initial wins, or a tie.
    const plan: Record<string, ReadonlyArray<"final" | "initial" | "tie">> = { ann1: ["final", "final", "final", "tie"], ann2: ["final", "final", "initial", "initial"] }
    const files: Array<string> = []
    for (const annotator of ["ann1", "ann2"]) {
      const page = await openPage(`file://${join(dir, `${annotator}.html`)}`, "document.querySelectorAll('.pair').length === 4")
      try {
        for (const [i, pair] of pairs.entries()) {
          const [item, decode] = Object.entries(key.annotators[annotator].items).find(([, x]: any) => x.pair === pair) as [string, any]
          const choice = plan[annotator]![i] === "tie" ? "tie" : decode.A === plan[annotator]![i] ? "A" : "B"
          await page.evaluate(`document.querySelector('input[name="choice-${item}"][value="${choice}"]').click()`)
          await page.evaluate(`(() => { const t = document.querySelector('[data-item="${item}"] textarea.comment'); t.value = "note ${i}"; t.dispatchEvent(new Event("input")); })()`)
        }
        expect(await page.evaluate("document.getElementById('progress').textContent")).toBe("4 of 4 answered")
        await page.reload()
        expect(await page.evaluate("document.querySelectorAll('input[type=radio]:checked').length")).toBe(4)
        await page.evaluate("document.getElementById('export-button').click()")
        const text = await page.evaluate<string>("document.getElementById('export').value")
        const file = join(store, `answers-${annotator}.json`)
        writeFileSync(file, text)
        files.push(file)
        expect(JSON.parse(text).answers.map((a: any) => a.comment).sort()).toEqual(["note 0", "note 1", "note 2", "note 3"])
      } finally {
        await page.close()
      }
    }

    const imported = await polaris(["human-eval", "import", runId, ...files, "--store", store])
    expect(imported.status, imported.stderr).toBe(0)
    const result = JSON.parse(readFileSync(join(store, "runs", runId, "human-eval.json"), "utf8"))
    expect(result.systems).toEqual(["final", "initial"])
    const ann = (name: string) => result.annotators.find((a: any) => a.name === name)
    // ann1: 3 wins, 1 tie -> (3 + 0.5) / 4; ann2: 2 wins, 2 losses -> 0.5; pooled (3.5 + 2) / 8.
    expect(ann("ann1").rate).toMatchObject({ wins: 3, ties: 1, losses: 0, rate: 0.875 })
    expect(ann("ann2").rate).toMatchObject({ wins: 2, ties: 0, losses: 2, rate: 0.5 })
    expect(result.pooled.rate).toBeCloseTo(5.5 / 8, 12)
    // Labels a,a,a,tie against a,a,b,b: p_o 0.5, p_e 0.75*0.5 = 0.375 -> 0.2.
    expect(result.kappa).toEqual([{ a: "ann1", b: "ann2", pairs: 4, kappa: expect.closeTo(0.2, 12) }])

    // The judge's dual-position verdicts on the same pairs, read from the run's pairwise node.
    const manifest = JSON.parse(readFileSync(join(store, "runs", runId, "manifest.json"), "utf8"))
    const comparisons = JSON.parse(readFileSync(join(store, "objects", manifest.nodes.pairwise.object.slice(0, 2), manifest.nodes.pairwise.object), "utf8"))
    const judge = new Map(comparisons.filter((c: any) => c.ab !== null && c.sample === 0).map((c: any) => {
      const v = c.ab === c.ba ? c.ab : "tie"
      const winner = v === "tie" ? "tie" : v === "a" ? c.a : c.b
      return [`${c.prompt_id}#0`, winner]
    }))
    const agreement = (name: string) => pairs.filter((p, i) => judge.has(p) && judge.get(p) === plan[name]![i]).length / pairs.filter((p) => judge.has(p)).length
    expect(ann("ann1").judgeAgreement).toBeCloseTo(agreement("ann1"), 12)
    expect(ann("ann2").judgeAgreement).toBeCloseTo(agreement("ann2"), 12)

    const out = join(store, "report")
    expect((await polaris(["report", runId, "--store", store, "--out", out])).status).toBe(0)
    expect(JSON.parse(readFileSync(join(out, "report.json"), "utf8")).humanEval.pooled.rate).toBeCloseTo(5.5 / 8, 12)
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain('<table class="human">')
  }, 300_000)
})
