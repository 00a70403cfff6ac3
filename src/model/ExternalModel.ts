/**
 * Runs a standard decoder-only ONNX export (Hugging Face Optimum's `text-generation-with-past`
 * layout: `input_ids`, `attention_mask`, optional `position_ids`, `past_key_values.<l>.key/value`
 * in; `logits`, `present.<l>.key/value` out; float32) with its `tokenizer.json`, for sampling and
 * teacher-forced logprobs. Inference only: there is no backward pass for a graph we did not build.
 *
 * A folder holds `model.onnx` (or `onnx/model.onnx`), `tokenizer.json`, optionally
 * `tokenizer_config.json` (its chat template is used) and `config.json`
 * (`max_position_embeddings` gives the context; default 2048).
 *
 * @example
 * const model = await ExternalModel.load("exports/tiny-llama")
 * const [lp] = await model.score([{ input: ids.slice(0, -1), targets: ids.slice(1) }])
 * const rows = await model.generate([model.tokenizer.encode("Once")], params, [])
 */
import type * as ort from "onnxruntime-node"
import { onnxruntime } from "./graph/OnnxRuntime.ts"
import { existsSync, readFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { join } from "node:path"
import { generate, rowsOf, type Decoder, type Generated, type RowParams } from "./Generate.ts"
import type { SamplingParams } from "./Sampling.ts"
import type { Scored } from "./StoryModel.ts"
import { Tokenizer } from "./tokenizer/Tokenizer.ts"

const PAST = /^past_key_values\.(\d+)\.key$/

/** Log-softmax of `row` at `index`, stable. */
const logSoftmaxAt = (row: Float32Array, index: number): number => {
  let max = -Infinity
  for (const v of row) if (v > max) max = v
  let sum = 0
  for (const v of row) sum += Math.exp(v - max)
  return row[index]! - max - Math.log(sum)
}

export class ExternalModel {
  private constructor(
    private readonly ort: typeof import("onnxruntime-node"),
    private readonly session: ort.InferenceSession,
    readonly tokenizer: Tokenizer,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly vocabSize: number,
    readonly maxContext: number,
    private readonly hasPositions: boolean
  ) {}

  static async load(dir: string, options: { readonly threads?: number } = {}): Promise<ExternalModel> {
    const file = [join(dir, "model.onnx"), join(dir, "onnx", "model.onnx")].find((f) => existsSync(f))
    if (file === undefined) throw new Error(`${dir}: no model.onnx (nor onnx/model.onnx)`)
    const ort = onnxruntime()
    const session = await ort.InferenceSession.create(file, {
      intraOpNumThreads: options.threads ?? availableParallelism(),
      graphOptimizationLevel: "all"
    })
    const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]))
    for (const needed of ["input_ids", "attention_mask"]) {
      if (!inputs.has(needed)) throw new Error(`${file}: not a decoder export (no input ${needed}); inputs: ${session.inputNames.join(", ")}`)
    }
    const layers = session.inputNames.filter((n) => PAST.test(n)).length
    if (layers === 0) throw new Error(`${file}: no past_key_values.<l>.key inputs: export with past (text-generation-with-past)`)
    const past = inputs.get("past_key_values.0.key")!
    const shape = past.isTensor ? past.shape : []
    const [kvHeads, headDim] = [shape[1], shape[3]]
    if (typeof kvHeads !== "number" || typeof headDim !== "number") {
      throw new Error(`${file}: past_key_values.0.key needs static heads and head size, has [${shape.join(", ")}]`)
    }
    if (past.isTensor && past.type !== "float32") throw new Error(`${file}: only float32 exports are supported, this one is ${past.type}`)
    const tokenizer = Tokenizer.fromFile(join(dir, "tokenizer.json"))
    const logits = session.outputMetadata.find((m) => m.name === "logits")
    const v = logits?.isTensor === true ? logits.shape.at(-1) : undefined
    const config = existsSync(join(dir, "config.json")) ? (JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>) : {}
    const maxContext = typeof config["max_position_embeddings"] === "number" ? config["max_position_embeddings"] : 2048
    return new ExternalModel(ort, session, tokenizer, layers, kvHeads, headDim, typeof v === "number" ? v : tokenizer.vocabSize, maxContext, inputs.has("position_ids"))
  }

  private emptyPast(rows: number): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {}
    for (let l = 0; l < this.layers; l++) {
      for (const kv of ["key", "value"]) feeds[`past_key_values.${l}.${kv}`] = new this.ort.Tensor("float32", new Float32Array(0), [rows, this.kvHeads, 0, this.headDim])
    }
    return feeds
  }

  /** One run: `ids` [rows, S] after `past`, with the full attention mask and positions. */
  private async run(ids: ReadonlyArray<number>, rows: number, mask: ReadonlyArray<number>, positions: ReadonlyArray<number>, past: Record<string, ort.Tensor>) {
    const S = ids.length / rows
    const feeds: Record<string, ort.Tensor> = {
      ...past,
      input_ids: new this.ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [rows, S]),
      attention_mask: new this.ort.Tensor("int64", BigInt64Array.from(mask, BigInt), [rows, mask.length / rows])
    }
    if (this.hasPositions) feeds["position_ids"] = new this.ort.Tensor("int64", BigInt64Array.from(positions, BigInt), [rows, S])
    const out = await this.session.run(feeds)
    const present: Record<string, ort.Tensor> = {}
    for (let l = 0; l < this.layers; l++) {
      for (const kv of ["key", "value"]) present[`past_key_values.${l}.${kv}`] = out[`present.${l}.${kv}`]!
    }
    return { logits: out["logits"]!.data as Float32Array, present }
  }

  /** Teacher-forced logprobs of `targets` after each prefix of `input`, one sequence per run. */
  async score(items: ReadonlyArray<Scored>): Promise<Array<Float32Array>> {
    const V = this.vocabSize
    const out: Array<Float32Array> = []
    for (const { input, targets } of items) {
      if (input.length > this.maxContext) throw new Error(`sequence of ${input.length} tokens exceeds the model's context of ${this.maxContext}`)
      const n = input.length
      const { logits } = await this.run(input, 1, new Array<number>(n).fill(1), input.map((_, i) => i), this.emptyPast(1))
      out.push(Float32Array.from({ length: n }, (_, t) => logSoftmaxAt(logits.subarray(t * V, (t + 1) * V), targets[t]!)))
    }
    return out
  }

  /** Samples one continuation per prompt (the loop of Generate.ts). */
  generate(prompts: ReadonlyArray<ReadonlyArray<number>>, params: SamplingParams | ReadonlyArray<RowParams>, stop: ReadonlyArray<number>): Promise<Array<Generated>> {
    return generate(this.decoder(), prompts, params, { stop, vocabSize: this.vocabSize, maxContext: this.maxContext })
  }

  /**
   * Rows are left-padded to the longest prompt (mask 0 on padding, positions counted from each
   * row's first real token), as Hugging Face batches generation; every row stays in the batch,
   * finished rows fed a dummy token, so the cache the export returns is used as it is.
   */
  private decoder(): Decoder {
    const V = this.vocabSize
    let rowsTotal = 0
    let mask: Array<Array<number>> = []
    let lengths: Array<number> = []
    let past: Record<string, ort.Tensor> = {}
    return {
      start: async (prompts) => {
        rowsTotal = prompts.length
        const T = Math.max(...prompts.map((p) => p.length))
        mask = prompts.map((p) => Array.from({ length: T }, (_, t) => (t < T - p.length ? 0 : 1)))
        lengths = prompts.map((p) => p.length)
        const ids = prompts.flatMap((p) => [...new Array<number>(T - p.length).fill(0), ...p])
        const positions = prompts.flatMap((p) => Array.from({ length: T }, (_, t) => Math.max(0, t - (T - p.length))))
        const res = await this.run(ids, rowsTotal, mask.flat(), positions, this.emptyPast(rowsTotal))
        past = res.present
        const out = new Float32Array(rowsTotal * V)
        for (let r = 0; r < rowsTotal; r++) out.set(res.logits.subarray(((r + 1) * T - 1) * V, (r + 1) * T * V), r * V)
        return rowsOf(V, out)
      },
      step: async (rows, tokens) => {
        const token = new Map(rows.map((r, i) => [r, tokens[i]!]))
        const ids = Array.from({ length: rowsTotal }, (_, r) => token.get(r) ?? 0)
        const positions = lengths.slice()
        mask.forEach((m) => m.push(1))
        const res = await this.run(ids, rowsTotal, mask.flat(), positions, past)
        past = res.present
        for (const r of rows) lengths[r]!++
        return { logits: (i) => res.logits.subarray(rows[i]! * V, (rows[i]! + 1) * V) }
      }
    }
  }
}
