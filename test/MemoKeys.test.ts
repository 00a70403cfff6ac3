/**
 * Memo keys are the request (ARCHITECTURE.md §5): for each memo namespace of the POLARIS stages
 * (premise, group, reference-logprobs, verdict, preference), changing one thing the engine
 * would see calls the engine again, and changing only what it does not see calls it never.
 * The engines are the real embedded ones (story model, extractive writer, proxy judge), wrapped
 * to record each request they receive; the writer and judge wrappers stand in for paid engines
 * (not `local`), which are memoized. Local engines are called without a memo (last test).
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Layer, Schema } from "effect"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { ArtifactStore, Executor, Pipeline, Stage } from "polaris"
import { Judge, type JudgeShape } from "../src/engines/judge/Judge.ts"
import * as Judges from "../src/engines/judge/Judges.ts"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import { PolicyEngine, type PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { Writer, type WriterShape } from "../src/engines/Writer.ts"
import { Group, type SamplingSettings } from "../src/records/Group.ts"
import { Candidate } from "../src/records/Judgement.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { PolicyState } from "../src/records/TrainState.ts"
import { Story } from "../src/data/Story.ts"
import { derivePrompts } from "../stages/derivePrompts.ts"
import { judge } from "../stages/judge.ts"
import { pairwise } from "../stages/pairwise.ts"
import { referenceLogprobs } from "../stages/referenceLogprobs.ts"
import { rollout } from "../stages/rollout.ts"
import { ROOT } from "./support/cli.ts"
import { tempDir } from "./support/store.ts"

const MODEL = join(ROOT, "models", "story-1m")

/** A node whose output is its param: how a test hands a stage the inputs it chooses. */
const given = <A, I>(name: string, schema: Schema.Codec<A, I>) =>
  Stage.make({ name: `given-${name}`, version: "1", params: Schema.Struct({ value: schema }), output: schema, run: (_, { value }) => Effect.succeed(value) })
const givenPrompts = given("prompts", Schema.Array(PromptWithReference))
const givenPolicy = given("policy", PolicyState)
const givenCandidates = given("candidates", Schema.Array(Candidate))
const givenStories = given("stories", Schema.Array(Story))
const givenGroups = given("groups", Schema.Array(Group))

/** Every request an engine received, by method. */
const calls: Record<string, Array<unknown>> = {}
const record = (method: string, requests: ReadonlyArray<unknown>) => Effect.sync(() => void (calls[method] = [...(calls[method] ?? []), ...requests]))
afterEach(() => {
  for (const k of Object.keys(calls)) delete calls[k]
})
const count = (method: string) => calls[method]?.length ?? 0

let policy: PolicyEngineShape
beforeAll(async () => {
  policy = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: MODEL, checkpointDir: join(tempDir(), "ckpt") }))
})
const recordingPolicy = (): PolicyEngineShape => ({
  ...policy,
  sample: (requests, weights) => Effect.andThen(record("sample", requests), policy.sample(requests, weights)),
  logprobs: (items, weights) => Effect.andThen(record("logprobs", items), policy.logprobs(items, weights))
})
// `local: false` makes the wrapper stand in for a paid engine (memoized); true keeps the real engine's `local`.
const recordingJudgeOf = (local: boolean) => Layer.effect(Judge, Effect.map(Judge, (j): JudgeShape => ({
  ...j,
  local: local && j.local === true,
  score: (item) => Effect.andThen(record("score", [item]), j.score(item)),
  compare: (item) => Effect.andThen(record("compare", [item]), j.compare(item))
}))).pipe(Layer.provide(Judges.proxy()))
const recordingWriterOf = (local: boolean) => Layer.effect(Writer, Effect.map(Writer, (w): WriterShape => ({
  ...w,
  local: local && w.local === true,
  premise: (story) => Effect.andThen(record("premise", [story]), w.premise(story))
}))).pipe(Layer.provide(Writer.extractive))
const recordingJudge = recordingJudgeOf(false)
const recordingWriter = recordingWriterOf(false)

/** Runs `pipeline` on the store at `root` with the recording engines. */
const run = <O>(root: string, pipeline: Pipeline.Pipeline<any, O>) =>
  Effect.runPromise(Executor.run(pipeline as Pipeline.Pipeline<never, O>).pipe(
    Effect.provide(Layer.mergeAll(ArtifactStore.layer(root), Layer.succeed(PolicyEngine, recordingPolicy()), recordingJudge, recordingWriter))
  ))

const SAMPLING: SamplingSettings = { temperature: 1, top_p: 1, top_k: -1, repetition_penalty: 1, presence_penalty: 0, max_tokens: 6, tokens_per_word: 3.5, thinking: false }

const prompt = (id: string, premise: string): PromptWithReference => ({
  id, story_id: id.slice(0, 16).padEnd(16, "0"), premise, requested_words: 40, reference: `A reference story for ${id}. It has two sentences.`
})
const PROMPTS = [prompt("aaaaaaaaaaaaaaaa-full", "a fox who learns to sing"), prompt("bbbbbbbbbbbbbbbb-full", "a lighthouse keeper and a storm")]

describe("memo keys are the request", () => {
  it("group: a changed premise, checkpoint or sampling setting samples anew; a change the engine does not see samples nothing", async () => {
    const root = tempDir()
    const pipeline = (prompts: ReadonlyArray<PromptWithReference>, checkpoint: string, sampling: SamplingSettings) =>
      Pipeline.make("memo-group", (b) => ({
        groups: b.node(rollout, {
          id: "rollout",
          inputs: {
            prompts: b.node(givenPrompts, { id: "prompts", params: { value: prompts } }),
            policy: b.node(givenPolicy, { id: "policy", params: { value: { checkpoint, step: 0, initial: checkpoint } } })
          },
          params: { group_size: 3, seed: 7, sampling }
        })
      }))
    const groupsOf = async (prompts: ReadonlyArray<PromptWithReference>, checkpoint = MODEL, sampling = SAMPLING) =>
      (await run(root, pipeline(prompts, checkpoint, sampling))).outputs.groups

    const first = await groupsOf(PROMPTS)
    expect(count("sample")).toBe(2)
    // Another premise for the first prompt, under the same id: only that group is sampled, and its record carries the new text.
    const changed = [prompt(PROMPTS[0]!.id, "a fox who learns to whistle"), PROMPTS[1]!]
    const second = await groupsOf(changed)
    expect(count("sample")).toBe(3)
    expect(second[0]!.prompt).toContain("whistle")
    expect(second[0]!.prompt_tokens).not.toEqual(first[0]!.prompt_tokens)
    expect(second[1]).toEqual(first[1])
    // What the engine does not see (the reference story, the story id): nothing sampled, the same groups.
    const unseen = PROMPTS.map((p) => ({ ...p, reference: "Another reference altogether.", story_id: "ffffffffffffffff" }))
    expect(await groupsOf(unseen)).toEqual(first)
    expect(count("sample")).toBe(3)
    // A sampling setting the engine receives: both groups again.
    await groupsOf(PROMPTS, MODEL, { ...SAMPLING, temperature: 0.7 })
    expect(count("sample")).toBe(5)
    // Another checkpoint identity (the same folder under another name is another checkpoint to the key).
    await groupsOf(PROMPTS, `${MODEL}/`)
    expect(count("sample")).toBe(7)
  }, 60_000)

  it("reference-logprobs: keyed by the scored tokens and the checkpoint, not by sampling settings the scoring ignores", async () => {
    const root = tempDir()
    const pipeline = (prompts: ReadonlyArray<PromptWithReference>, sampling: SamplingSettings) =>
      Pipeline.make("memo-reference", (b) => ({
        references: b.node(referenceLogprobs, {
          id: "reference",
          inputs: {
            prompts: b.node(givenPrompts, { id: "prompts", params: { value: prompts } }),
            policy: b.node(givenPolicy, { id: "policy", params: { value: { checkpoint: MODEL, step: 0, initial: MODEL } } })
          },
          params: { sampling }
        })
      }))
    const refs = async (prompts: ReadonlyArray<PromptWithReference>, sampling = SAMPLING) =>
      (await run(root, pipeline(prompts, sampling))).outputs.references
    const first = await refs(PROMPTS)
    expect(count("logprobs")).toBe(2)
    const second = await refs([{ ...PROMPTS[0]!, reference: "A different human story. Short." }, PROMPTS[1]!])
    expect(count("logprobs")).toBe(3)
    expect(second[1]).toEqual(first[1])
    expect(second[0]!.text).toContain("different human story")
    // Temperature and top_p shape sampling only: the teacher-forced scores are the same request.
    expect(await refs(PROMPTS, { ...SAMPLING, temperature: 0.3, top_p: 0.9 })).toEqual(first)
    expect(count("logprobs")).toBe(3)
    // The token cap cuts the completion: another request.
    await refs(PROMPTS, { ...SAMPLING, max_tokens: 5 })
    expect(count("logprobs")).toBe(5)
  }, 60_000)

  it("verdict: keyed by the prompt and story the judge reads; a story's id or requested length is not the request", async () => {
    const root = tempDir()
    const candidate = (id: string, text: string, requested = 40): Candidate => ({ id, prompt: "Write a 40-word story about a fox.", text, requested_words: requested })
    const STORIES = [candidate("s1", "The fox sang at dawn. The hens listened."), candidate("s2", "Rain fell on the old lighthouse all night.")]
    const pipeline = (stories: ReadonlyArray<Candidate>) =>
      Pipeline.make("memo-verdict", (b) => ({
        judged: b.node(judge, { id: "judge", inputs: { stories: b.node(givenCandidates, { id: "stories", params: { value: stories } }) }, params: { samples: 1, length_factor: "longwriter" as const, concurrency: 2 } })
      }))
    const judged = async (stories: ReadonlyArray<Candidate>) => (await run(root, pipeline(stories))).outputs.judged
    await judged(STORIES)
    expect(count("score")).toBe(2)
    await judged([candidate("s1", "The fox sang at noon. The hens listened."), STORIES[1]!])
    expect(count("score")).toBe(3)
    await judged(STORIES.map((s, i) => ({ ...s, id: `renamed-${i}`, requested_words: 80 })))
    expect(count("score")).toBe(3)
    await judged(STORIES.map((s) => ({ ...s, prompt: "Write a 40-word story about a hen." })))
    expect(count("score")).toBe(5)
  }, 60_000)

  it("premise: keyed by the title and text the writer reads, not by the story's id or anthology", async () => {
    const root = tempDir()
    const story = (anthology: string, title: string, text: string): Story => ({ id: `${anthology}${title}`.padEnd(16, "0").slice(0, 16).replace(/[^0-9a-f]/g, "a"), anthology, title, text, words: text.split(/\s+/).length })
    const STORIES = [story("a1", "THE FOX", "The fox sang at dawn while the hens listened from the barn."), story("a1", "THE LIGHT", "Rain fell on the old lighthouse all night and the keeper waited.")]
    const pipeline = (stories: ReadonlyArray<Story>) =>
      Pipeline.make("memo-premise", (b) => ({
        prompts: b.node(derivePrompts, { id: "prompts", inputs: { stories: b.node(givenStories, { id: "stories", params: { value: stories } }) }, params: { round_to: 10, mode: "full" as const } })
      }))
    const prompts = async (stories: ReadonlyArray<Story>) => (await run(root, pipeline(stories))).outputs.prompts
    await prompts(STORIES)
    expect(count("premise")).toBe(2)
    await prompts([STORIES[0]!, story("a1", "THE LIGHT", "Snow fell on the old lighthouse all night and the keeper waited.")])
    expect(count("premise")).toBe(3)
    await prompts(STORIES.map((s) => ({ ...s, anthology: "b2", id: "bbbbbbbbbbbbbbbb" })))
    expect(count("premise")).toBe(3)
    await prompts([STORIES[0]!, { ...STORIES[1]!, title: "THE LAMP" }])
    expect(count("premise")).toBe(4)
  }, 60_000)

  it("preference: keyed by the prompt and the two stories in their order, not by which systems wrote them", async () => {
    const root = tempDir()
    const group = (id: string, text: string): Group => ({ prompt_id: id, prompt: "Write a 40-word story about a fox.", requested_words: 40, prompt_tokens: [1, 2], samples: [{ tokens: [3], logprobs: [-1], text, stop_reason: "stop" }] })
    const pipeline = (a: ReadonlyArray<Group>, bSide: ReadonlyArray<Group>, names: readonly [string, string]) =>
      Pipeline.make("memo-preference", (b) => ({
        comparisons: b.node(pairwise(names), {
          id: "pairwise",
          inputs: {
            prompts: b.node(givenPrompts, { id: "prompts", params: { value: [prompt("p1", "a fox")] } }),
            [names[0]]: b.node(givenGroups, { id: names[0], params: { value: a } }),
            [names[1]]: b.node(givenGroups, { id: names[1], params: { value: bSide } })
          } as any,
          params: { baseline: names[0], pairs: "baseline" as const, samples: 1, concurrency: 2 }
        })
      }))
    const compare = async (a: ReadonlyArray<Group>, bSide: ReadonlyArray<Group>, names: readonly [string, string] = ["base", "tuned"]) =>
      (await run(root, pipeline(a, bSide, names))).outputs.comparisons
    const A = [group("p1", "The fox sang at dawn. The hens listened.")]
    const B = [group("p1", "A fox, a song, and a long cold morning in the barn.")]
    await compare(A, B)
    expect(count("compare")).toBe(2) // both orders
    await compare(A, B, ["old", "new"])
    expect(count("compare")).toBe(2)
    await compare(A, [group("p1", "A fox, a song, and a long warm morning in the barn.")])
    expect(count("compare")).toBe(4)
  }, 60_000)

  it("local engines (the extractive writer, the proxy judge) are called directly: no memo item is stored, each execution calls again", async () => {
    const root = tempDir()
    const stories: ReadonlyArray<Story> = [
      { id: "aaaaaaaaaaaaaaaa", anthology: "a1", title: "THE FOX", text: "The fox sang at dawn while the hens listened from the barn.", words: 12 },
      { id: "bbbbbbbbbbbbbbbb", anthology: "a1", title: "THE LIGHT", text: "Rain fell on the old lighthouse all night and the keeper waited.", words: 12 }
    ]
    const candidates = stories.map((s) => ({ id: s.id, prompt: "Write a 10-word story about a fox.", text: s.text, requested_words: 10 }))
    const pipeline = Pipeline.make("local-engines", (b) => ({
      prompts: b.node(derivePrompts, { id: "prompts", inputs: { stories: b.node(givenStories, { id: "stories", params: { value: stories } }) }, params: { round_to: 10, mode: "full" as const } }),
      judged: b.node(judge, { id: "judge", inputs: { stories: b.node(givenCandidates, { id: "candidates", params: { value: candidates } }) }, params: { samples: 1, length_factor: "longwriter" as const, concurrency: 2 } })
    }))
    const go = (force: ReadonlyArray<string>) =>
      Effect.runPromise(Executor.run(pipeline, { force }).pipe(Effect.provide(Layer.mergeAll(ArtifactStore.layer(root), recordingWriterOf(true), recordingJudgeOf(true)))))
    const first = await go([])
    expect([count("premise"), count("score")]).toEqual([2, 2])
    const again = await go(["prompts", "judge"])
    expect([count("premise"), count("score")]).toEqual([4, 4])
    expect(again.outputs).toEqual(first.outputs)
    const memoEvents = readFileSync(join(again.dir, "events.jsonl"), "utf8").split("\n").filter((l) => l.includes('"memo_stored"') || l.includes('"memo_hit"'))
    expect(memoEvents).toEqual([])
  }, 60_000)
})
