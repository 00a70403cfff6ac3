/** Pictures of a pipeline: the text listing (with folded loops), Mermaid and DOT, pinned. */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import * as Dag from "../src/dag/Dag.ts"

const Numbers = Schema.Array(Schema.Number)
const source = Stage.make({ name: "source", version: "1", output: Numbers, run: () => Effect.succeed([1, 2, 3]) })
const init = Stage.make({ name: "init", version: "1", output: Schema.Number, run: () => Effect.succeed(0) })
const sample = Stage.make({
  name: "sample",
  version: "2",
  inputs: { data: Numbers },
  output: Numbers,
  params: Schema.Struct({ step: Schema.Number }),
  run: ({ data }) => Effect.succeed(data)
})
const update = Stage.make({
  name: "update",
  version: "1",
  resource: "policy",
  inputs: { policy: Schema.Number, batch: Numbers },
  output: Schema.Number,
  run: ({ policy, batch }) => Effect.succeed(policy + batch.length)
})
const report = Stage.make({
  name: "report",
  version: "1",
  inputs: { policy: Schema.Number },
  output: Schema.String,
  run: ({ policy }) => Effect.succeed(String(policy))
})
const clip = Stage.make({ name: "clip", version: "1", inputs: { xs: Numbers }, output: Numbers, run: ({ xs }) => Effect.succeed(xs) })

const training = (steps: number, insertions: ReadonlyArray<Pipeline.Insertion> = []) =>
  Pipeline.make("toy", (b) => {
    const data = b.node(source, { id: "data" })
    const policy = b.loop("train", {
      steps,
      init: b.node(init, { id: "init" }),
      body: (s, policy, k) => {
        const batch = s.node(sample, { id: "batch", inputs: { data }, params: { step: k } })
        return s.node(update, { id: "update", inputs: { policy, batch } })
      }
    })
    return { report: b.node(report, { id: "report", inputs: { policy } }) }
  }, { insertions })

describe("Dag.render text", () => {
  it("lists nodes in order with stage, version, resource and inputs; folds repeated loop steps", () => {
    expect(Dag.render(training(3), "text")).toBe(
      `pipeline "toy": 9 nodes
  data                     [source v1, cpu]
  init                     [init v1, cpu]
    train/step-000/batch   [sample v2, cpu]     <- data: data
    train/step-000/update  [update v1, policy]  <- policy: init, batch: train/step-000/batch
    ... train: steps 001-002 repeat this shape (update.policy <- previous step's update)
  report                   [report v1, cpu]     <- policy: train/step-002/update
  outputs: report <- report
`
    )
  })

  it("shows a step of another shape in full, and folds the later ones onto the shape they repeat", () => {
    const text = Dag.render(training(4, [{ after: "train/step-001/batch", stage: clip, id: "clip" }]), "text")
    expect(text).toBe(
      `pipeline "toy": 12 nodes
  data                     [source v1, cpu]
  init                     [init v1, cpu]
    train/step-000/batch   [sample v2, cpu]     <- data: data
    train/step-000/update  [update v1, policy]  <- policy: init, batch: train/step-000/batch
    train/step-001/batch   [sample v2, cpu]     <- data: data
    train/step-001/clip    [clip v1, cpu]       <- xs: train/step-001/batch
    train/step-001/update  [update v1, policy]  <- policy: train/step-000/update, batch: train/step-001/clip
    ... train: steps 002-003 repeat the shape of step 000 (update.policy <- previous step's update)
  report                   [report v1, cpu]     <- policy: train/step-003/update
  outputs: report <- report
`
    )
  })

  it("keeps a 160-step loop to a few lines", () => {
    const pipeline = training(160)
    expect(pipeline.nodes).toHaveLength(323)
    const lines = Dag.render(pipeline, "text").trimEnd().split("\n")
    expect(lines).toHaveLength(8)
    expect(lines[5]).toBe("    ... train: steps 001-159 repeat this shape (update.policy <- previous step's update)")
    expect(lines[6]).toBe("  report                   [report v1, cpu]     <- policy: train/step-159/update")
  })

  it("folds a loop nested in a loop step", () => {
    const inner = Pipeline.make("nested", (b) => {
      const data = b.node(source, { id: "data" })
      const final = b.loop("outer", {
        steps: 3,
        init: b.node(init, { id: "init" }),
        body: (s, policy) =>
          s.loop("inner", {
            steps: 4,
            init: policy,
            body: (t, p, k) => t.node(update, { id: "update", inputs: { policy: p, batch: t.node(sample, { id: "batch", inputs: { data }, params: { step: k } }) } })
          })
      })
      return { final }
    })
    expect(Dag.render(inner, "text")).toBe(
      `pipeline "nested": 26 nodes
  data                                      [source v1, cpu]
  init                                      [init v1, cpu]
      outer/step-000/inner/step-000/batch   [sample v2, cpu]     <- data: data
      outer/step-000/inner/step-000/update  [update v1, policy]  <- policy: init, batch: outer/step-000/inner/step-000/batch
      ... outer/step-000/inner: steps 001-003 repeat this shape (update.policy <- previous step's update)
    ... outer: steps 001-002 repeat this shape (inner/step-000/update.policy <- previous step's inner/step-003/update)
  outputs: final <- outer/step-002/inner/step-003/update
`
    )
  })
})

describe("Pipeline loop: earlier states", () => {
  const lagged = Stage.make({
    name: "lagged-update",
    version: "1",
    inputs: { policy: Schema.Number, sampler: Schema.Number },
    output: Schema.Number,
    run: ({ policy }) => Effect.succeed(policy + 1)
  })

  it("gives step k every state so far: init first, the state it receives last; a lagged step is listed in full", () => {
    const seen: Array<ReadonlyArray<string>> = []
    const pipeline = Pipeline.make("lag", (b) => {
      const final = b.loop("train", {
        steps: 4,
        init: b.node(init, { id: "init" }),
        body: (s, state, k, states) => {
          seen.push(states.map((r) => r.id))
          expect(states.at(-1)).toBe(state)
          return s.node(lagged, { id: "update", inputs: { policy: state, sampler: states[Math.max(0, k - 1)]! } })
        }
      })
      return { final }
    })
    expect(seen).toEqual([
      ["init"],
      ["init", "train/step-000/update"],
      ["init", "train/step-000/update", "train/step-001/update"],
      ["init", "train/step-000/update", "train/step-001/update", "train/step-002/update"]
    ])
    expect(Dag.render(pipeline, "text")).toBe(
      `pipeline "lag": 5 nodes
  init                     [init v1, cpu]
    train/step-000/update  [lagged-update v1, cpu]  <- policy: init, sampler: init
    ... train: step 001 repeats this shape (update.policy <- previous step's update)
    train/step-002/update  [lagged-update v1, cpu]  <- policy: train/step-001/update, sampler: train/step-000/update
    train/step-003/update  [lagged-update v1, cpu]  <- policy: train/step-002/update, sampler: train/step-001/update
  outputs: final <- train/step-003/update
`
    )
  })
})

describe("Dag.render graphs", () => {
  it("mermaid: a flowchart with sanitised ids, a subgraph per loop step and edges named by input", () => {
    expect(Dag.render(training(2), "mermaid")).toBe(
      `flowchart TD
  data["data<br/>source"]
  init["init<br/>init"]
  subgraph train_step_000 ["train/step-000"]
    train_step_000_batch["train/step-000/batch<br/>sample"]
    train_step_000_update["train/step-000/update<br/>update"]
  end
  subgraph train_step_001 ["train/step-001"]
    train_step_001_batch["train/step-001/batch<br/>sample"]
    train_step_001_update["train/step-001/update<br/>update"]
  end
  report["report<br/>report"]
  data -->|data| train_step_000_batch
  init -->|policy| train_step_000_update
  train_step_000_batch -->|batch| train_step_000_update
  data -->|data| train_step_001_batch
  train_step_000_update -->|policy| train_step_001_update
  train_step_001_batch -->|batch| train_step_001_update
  train_step_001_update -->|policy| report
`
    )
  })

  it("mermaid: ids that are keywords or collide after sanitising are made unique", () => {
    const p = Pipeline.make("ids", (b) => {
      const end = b.node(source, { id: "end" })
      const a = b.node(clip, { id: "a-b", inputs: { xs: end } })
      return { out: b.node(clip, { id: "a_b", inputs: { xs: a } }) }
    })
    expect(Dag.render(p, "mermaid")).toBe(
      `flowchart TD
  n_end["end<br/>source"]
  a_b["a-b<br/>clip"]
  a_b_2["a_b<br/>clip"]
  n_end -->|xs| a_b
  a_b -->|xs| a_b_2
`
    )
  })

  it("dot: a digraph with quoted ids and a cluster per loop step", () => {
    expect(Dag.render(training(2), "dot")).toBe(
      `digraph "toy" {
  rankdir=TB;
  node [shape=box];
  "data" [label="data\\nsource"];
  "init" [label="init\\ninit"];
  subgraph "cluster_train/step-000" {
    label="train/step-000";
    "train/step-000/batch" [label="train/step-000/batch\\nsample"];
    "train/step-000/update" [label="train/step-000/update\\nupdate"];
  }
  subgraph "cluster_train/step-001" {
    label="train/step-001";
    "train/step-001/batch" [label="train/step-001/batch\\nsample"];
    "train/step-001/update" [label="train/step-001/update\\nupdate"];
  }
  "report" [label="report\\nreport"];
  "data" -> "train/step-000/batch" [label="data"];
  "init" -> "train/step-000/update" [label="policy"];
  "train/step-000/batch" -> "train/step-000/update" [label="batch"];
  "data" -> "train/step-001/batch" [label="data"];
  "train/step-000/update" -> "train/step-001/update" [label="policy"];
  "train/step-001/batch" -> "train/step-001/update" [label="batch"];
  "train/step-001/update" -> "report" [label="policy"];
}
`
    )
  })
})
