/**
 * Secrets whose variable is unset: an engine built from one is marked, a node that would execute
 * with it fails before it runs naming the variable, and a cached one is reused without it. The
 * remote policy engine is not even connected: a stand-in keeps its fingerprint.
 */
import { Context, Effect, Exit, Layer, Redacted, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, Executor, Pipeline, Policies, PolicyEngine, Secret, Stage } from "polaris"
import { tempDir } from "./support/store.ts"

class Oracle extends Context.Service<Oracle, { readonly fingerprint: string; readonly missingSecrets?: ReadonlyArray<string>; readonly ask: (q: string) => Effect.Effect<string> }>()("test/Oracle") {}

let calls = 0
const ask = Stage.make({
  name: "ask-oracle",
  version: "1",
  engines: [Oracle],
  params: Schema.Struct({ q: Schema.String }),
  output: Schema.String,
  run: (_, { q }) => Effect.gen(function*() {
    const o = yield* Oracle
    return yield* o.ask(q)
  })
})
const local = Stage.make({ name: "local-work", version: "1", output: Schema.Number, run: () => Effect.succeed(42) })
const pipeline = (q: string) =>
  Pipeline.make("secret-test", (p) => ({ local: p.node(local, { id: "local" }), answer: p.node(ask, { id: "answer", params: { q } }) }))

const oracle = (key: Redacted.Redacted<string>) =>
  Layer.succeed(Oracle, Secret.requiring({ fingerprint: "oracle@1", ask: (q: string) => Effect.sync(() => (calls++, `${q}: yes`)) }, Secret.unsetVariables(key)))

const layerStore = (root: string) => ArtifactStore.layer(root)

describe("Secret", () => {
  it("names unset variables; an empty value is unset", () => {
    expect(Secret.unsetVariables(Secret.unset("A"), Redacted.make("x", { label: "B" }), undefined, Secret.unset("A"), Redacted.make("", { label: "C" }))).toEqual(["A", "C"])
    expect(Secret.isUnset(Redacted.make("k"))).toBe(false)
    const marked: { readonly fingerprint: string; readonly n: number; readonly missingSecrets?: ReadonlyArray<string> } = Secret.requiring({ fingerprint: "f", n: 1 }, ["A"])
    expect(marked.missingSecrets).toEqual(["A"])
    expect(marked.n).toBe(1)
    expect(marked.fingerprint).toBe("f")
  })

  it("fails a node that would execute with an engine missing its secret, before it runs, naming the variable; other nodes run", async () => {
    const root = tempDir()
    calls = 0
    const exit = await Effect.runPromiseExit(Executor.run(pipeline("rain?"), {}).pipe(Effect.provide(oracle(Secret.unset("ORACLE_KEY"))), Effect.provide(layerStore(root))))
    expect(Exit.isFailure(exit)).toBe(true)
    const message = Exit.isFailure(exit) ? String((exit.cause.reasons[0] as any).error.message) : ""
    expect(message).toContain(`node "answer" (stage ask-oracle) failed: MissingSecret: environment variable ORACLE_KEY is not set (needed by engine test/Oracle); set it, then \`polaris resume\``)
    expect(message).not.toContain(`node "local"`)
    expect(calls).toBe(0)
  })

  it("reuses a cached node without the secret: only execution needs it", async () => {
    const root = tempDir()
    calls = 0
    const first = await Effect.runPromiseExit(Executor.run(pipeline("sun?"), {}).pipe(Effect.provide(oracle(Redacted.make("k", { label: "ORACLE_KEY" }))), Effect.provide(layerStore(root))))
    expect(Exit.isSuccess(first)).toBe(true)
    const again = await Effect.runPromiseExit(Executor.run(pipeline("sun?"), {}).pipe(Effect.provide(oracle(Secret.unset("ORACLE_KEY"))), Effect.provide(layerStore(root))))
    expect(Exit.isSuccess(again) && again.value.cached).toBe(2)
    expect(Exit.isSuccess(again) && again.value.outputs.answer).toBe("sun?: yes")
    expect(calls).toBe(1)
  })

  it("a remote policy without its api_key is not connected: a stand-in with the engine's fingerprint, marked", async () => {
    const engine = (api_key: Redacted.Redacted<string>, backend: "tinker" | "vllm", extra: object = {}) =>
      Effect.runPromise(Effect.scoped(Effect.flatMap(Layer.build(Policies.fromRecipe({ backend, model: "Qwen/Qwen3-8B", base_url: "http://127.0.0.1:9", tokenizer: "Qwen/Qwen3-8B", api_key, ...extra } as any, {})), (ctx) => Effect.succeed(Context.get(ctx, PolicyEngine)))))
    const tinker = await engine(Secret.unset("TINKER_API_KEY"), "tinker")
    expect(tinker.fingerprint).toBe("tinker:Qwen/Qwen3-8B@hosted")
    expect(tinker.missingSecrets).toEqual(["TINKER_API_KEY"])
    expect(() => tinker.tokenizer).toThrow(/environment variable TINKER_API_KEY is not set \(needed by policy.api_key, for the tinker engine's tokenizer\)/)
    const both = await engine(Secret.unset("K"), "vllm", { sampler_urls: ["http://127.0.0.1:9"], flavour: "skyrl" })
    expect(both.fingerprint).toBe("tinker:Qwen/Qwen3-8B@skyrl+vllm:Qwen/Qwen3-8B")
  })
})
