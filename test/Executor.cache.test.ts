import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Redacted, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import { makeCounter } from "./support/counter.ts"
import { anyFileContains, runOk, tempDir } from "./support/store.ts"

const { count, ran, reset } = makeCounter()

const source = Stage.make({
  name: "source",
  version: "1",
  output: Schema.Array(Schema.Number),
  params: Schema.Struct({ n: Schema.Number }),
  run: (_, { n }) => Effect.sync(() => (count("source"), Array.from({ length: n }, (_, i) => i)))
})

const scale = Stage.make({
  name: "scale",
  version: "1",
  inputs: { xs: Schema.Array(Schema.Number) },
  output: Schema.Array(Schema.Number),
  params: Schema.Struct({ by: Schema.Number }),
  run: ({ xs }, { by }) => Effect.sync(() => (count("scale"), xs.map((x) => x * by)))
})

const total = Stage.make({
  name: "total",
  version: "1",
  inputs: { xs: Schema.Array(Schema.Number) },
  output: Schema.Number,
  run: ({ xs }) => Effect.sync(() => (count("total"), xs.reduce((a, b) => a + b, 0)))
})

const diamond = (n: number, a: number, b: number) =>
  Pipeline.make("diamond", (p) => {
    const xs = p.node(source, { id: "source", params: { n } })
    const left = p.node(scale, { id: "left", inputs: { xs }, params: { by: a } })
    const right = p.node(scale, { id: "right", inputs: { xs }, params: { by: b } })
    return { l: p.node(total, { id: "sum-left", inputs: { xs: left } }), r: p.node(total, { id: "sum-right", inputs: { xs: right } }) }
  })

describe("node cache", () => {
  it("runs everything once, then nothing on the same config", async () => {
    const root = tempDir()
    reset()
    const first = await runOk(root, diamond(4, 2, 3))
    expect(first.outputs).toEqual({ l: 12, r: 18 })
    expect(ran()).toEqual({ scale: 2, source: 1, total: 2 })
    expect(first.executed).toBe(5)
    reset()
    const second = await runOk(root, diamond(4, 2, 3))
    expect(ran()).toEqual({})
    expect(second.cached).toBe(5)
    expect(second.outputs).toEqual({ l: 12, r: 18 })
  })

  it("re-runs exactly the node whose param changed and its descendants", async () => {
    const root = tempDir()
    await runOk(root, diamond(4, 2, 3))
    reset()
    const result = await runOk(root, diamond(4, 2, 5))
    expect(ran()).toEqual({ scale: 1, total: 1 })
    expect(result.nodes["right"]!.status).toBe("executed")
    expect(result.nodes["sum-right"]!.status).toBe("executed")
    expect(result.nodes["left"]!.status).toBe("cached")
    expect(result.nodes["source"]!.status).toBe("cached")
    expect(result.outputs).toEqual({ l: 12, r: 30 })
  })

  it("early cutoff: a re-executed node with identical output bytes leaves descendants cached", async () => {
    const root = tempDir()
    await runOk(root, diamond(4, 2, 3))
    reset()
    // Different params for `right` (by: -3 then sum of negatives) vs a node whose output is unchanged:
    // `source` forced to re-execute produces the same bytes, so nothing downstream runs.
    const result = await runOk(root, diamond(4, 2, 3), { force: ["source"] })
    expect(ran()).toEqual({ source: 1 })
    expect(result.nodes["source"]!.status).toBe("executed")
    expect(result.nodes["left"]!.status).toBe("cached")
  })

  it("a stage whose source file changed re-runs; unchanged output cuts off its descendants", async () => {
    const root = tempDir()
    const file = join(root, "stage-module.ts")
    writeFileSync(file, 'export const variant = "A"\n')
    const edited = Stage.make({
      name: "edited",
      version: "1",
      source: file,
      inputs: { xs: Schema.Array(Schema.Number) },
      output: Schema.Array(Schema.Number),
      run: ({ xs }) => Effect.sync(() => (count("edited"), xs.map((x) => x + 1)))
    })
    const p = () =>
      Pipeline.make("edit", (b) => {
        const xs = b.node(source, { id: "source", params: { n: 3 } })
        const e = b.node(edited, { id: "edited", inputs: { xs } })
        return { t: b.node(total, { id: "total", inputs: { xs: e } }) }
      })
    await runOk(root, p())
    reset()
    await runOk(root, p())
    expect(ran()).toEqual({})
    // A comment or reformatting is not a change of code (the fingerprint hashes what runs).
    writeFileSync(file, '// a comment\nexport const variant =  "A";\n')
    await runOk(root, p())
    expect(ran()).toEqual({})
    writeFileSync(file, 'export const variant = "B" // the code changed, the output did not\n')
    const result = await runOk(root, p())
    expect(ran()).toEqual({ edited: 1 })
    expect(result.nodes["total"]!.status).toBe("cached")
  })

  it("keeps secrets out of keys and off the disk", async () => {
    const root = tempDir()
    const withKey = Stage.make({
      name: "with-key",
      version: "1",
      output: Schema.String,
      params: Schema.Struct({ model: Schema.String, apiKey: Schema.Redacted(Schema.String) }),
      run: (_, { model, apiKey }) => Effect.sync(() => (count("with-key"), `${model}:${Redacted.value(apiKey).length}`))
    })
    const p = (secret: string) =>
      Pipeline.make("secret", (b) => ({ out: b.node(withKey, { id: "call", params: { model: "m", apiKey: Redacted.make(secret) } }) }))
    reset()
    const a = await runOk(root, p("sk-SECRET-AAAA"), { config: { judge: { apiKey: Redacted.make("sk-SECRET-AAAA") } } })
    const b = await runOk(root, p("sk-SECRET-BBBB"))
    expect(ran()).toEqual({ "with-key": 1 })
    expect(a.nodes["call"]!.key).toBe(b.nodes["call"]!.key)
    expect(anyFileContains(root, "sk-SECRET")).toBe(false)
  })

  it("refuses to store an output that contains a secret", async () => {
    const root = tempDir()
    const leaky = Stage.make({
      name: "leaky",
      version: "1",
      output: Schema.Struct({ token: Schema.Redacted(Schema.String) }),
      run: () => Effect.succeed({ token: Redacted.make("sk-LEAK") })
    })
    const { runOn } = await import("./support/store.ts")
    const exit = await runOn(root, Pipeline.make("leak", (b) => ({ out: b.node(leaky, { id: "leaky" }) })))
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("secret")
    expect(anyFileContains(root, "sk-LEAK")).toBe(false)
  })
})

describe("typed edges", () => {
  it("rejects wiring an output into an input of another type at compile time", () => {
    const build = () =>
      Pipeline.make("bad", (b) => {
        const n = b.node(total, { id: "total", inputs: { xs: b.node(source, { id: "source", params: { n: 1 } }) } })
        // @ts-expect-error a number is not an array of numbers
        return { bad: b.node(scale, { id: "scale", inputs: { xs: n }, params: { by: 2 } }) }
      })
    expect(build).not.toThrow()
  })
})

describe("source fingerprints", () => {
  it("take the file that defines the stage", () => {
    expect(source.source).toBe(import.meta.filename)
    expect(scale.source).toBe(import.meta.filename)
  })
})

describe("source fingerprints of imported helpers", () => {
  it("change when a module the stage imports changes, not when the framework does", async () => {
    const { tempDirInRepo } = await import("./support/store.ts")
    const { fingerprintFile } = await import("../src/dag/Fingerprint.ts")
    const dir = tempDirInRepo("fp-")
    const stage = join(dir, "stage.ts")
    writeFileSync(join(dir, "helper.ts"), "export const k = 1\n")
    writeFileSync(stage, 'import { k } from "./helper.ts"\nimport { Stage } from "../../src/index.ts"\nexport const x = [k, Stage]\n')
    const before = fingerprintFile(stage, new Map())
    expect(fingerprintFile(stage, new Map())).toBe(before)
    writeFileSync(join(dir, "helper.ts"), "export const k = 2\n")
    expect(fingerprintFile(stage, new Map())).not.toBe(before)
  })
})

describe("cacheIf", () => {
  it("an output the stage declines to cache feeds this run, and the next run executes the node again", async () => {
    const root = tempDir()
    let partial = true
    const flaky = Stage.make({
      name: "flaky-total",
      version: "1",
      inputs: { xs: Schema.Array(Schema.Number) },
      output: Schema.Struct({ sum: Schema.Number, complete: Schema.Boolean }),
      cacheIf: (out) => out.complete,
      run: ({ xs }) => Effect.sync(() => (count("flaky"), { sum: xs.reduce((a, b) => a + b, 0), complete: !partial }))
    })
    const pipeline = Pipeline.make("partial", (p) => {
      const xs = p.node(source, { id: "source", params: { n: 3 } })
      return { out: p.node(total, { id: "after", inputs: { xs: p.node(scale, { id: "x2", inputs: { xs }, params: { by: 2 } }) } }), f: p.node(flaky, { id: "flaky", inputs: { xs } }) }
    })
    reset()
    const first = await runOk(root, pipeline)
    expect(first.outputs).toEqual({ out: 6, f: { sum: 3, complete: false } })
    reset()
    await runOk(root, pipeline)
    expect(ran()).toEqual({ flaky: 1 }) // not cached: runs again; everything else is reused
    partial = false
    await runOk(root, pipeline)
    reset()
    await runOk(root, pipeline)
    expect(ran()).toEqual({}) // complete now: cached
  })
})
