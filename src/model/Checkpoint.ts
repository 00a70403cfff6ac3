/**
 * A model checkpoint as a folder, laid out like a Hugging Face model repository so other tools
 * can read it: `config.json` (ModelConfig), `model.safetensors` (weights), `tokenizer.json` and
 * `tokenizer_config.json`, and optionally `optimizer.safetensors` (AdamW moments and step) so
 * training resumes exactly. `exportOnnx` writes it as a standard ONNX decoder export instead.
 *
 * @example
 * const ckpt = await Checkpoint.read("models/story-1m")
 * await Checkpoint.write("out/step-10", { ...ckpt, weights: trained })
 */
import { Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { mkdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { atomicWrite } from "../dag/internal/files.ts"
import { byFileIdentity } from "../dag/Location.ts"
import * as Safetensors from "./Safetensors.ts"
import { Tokenizer } from "./tokenizer/Tokenizer.ts"
import { ModelConfig, paramShapes, standardDecoderGraph } from "./Transformer.ts"
import * as Onnx from "./graph/Onnx.ts"

export interface Checkpoint {
  readonly config: ModelConfig
  readonly weights: ReadonlyMap<string, Float32Array>
  /** The two tokenizer files, verbatim. */
  readonly tokenizer: { readonly json: string; readonly config: string }
  /** AdamW state (`AdamW.state()`), when the checkpoint can resume training. */
  readonly optimizer?: { readonly tensors: Record<string, Safetensors.Tensor>; readonly metadata: Record<string, string> }
}

export const FILES = {
  config: "config.json",
  weights: "model.safetensors",
  optimizer: "optimizer.safetensors",
  tokenizer: "tokenizer.json",
  tokenizerConfig: "tokenizer_config.json"
} as const

/** Raised for a folder that is not a usable checkpoint; names the file and what is wrong. */
export class CheckpointError extends Error {
  override readonly name = "CheckpointError"
}

const decodeConfig = Schema.decodeUnknownSync(Schema.fromJsonString(ModelConfig))

/** Weights as safetensors bytes (shapes from the config). */
export const encodeWeights = (config: ModelConfig, weights: ReadonlyMap<string, Float32Array>): Uint8Array =>
  Safetensors.encode(...weightTensors(config, weights))

const weightTensors = (config: ModelConfig, weights: ReadonlyMap<string, Float32Array>) =>
  [
    Object.fromEntries(paramShapes(config).map(([name, shape]) => {
      const data = weights.get(name)
      if (data === undefined) throw new CheckpointError(`weights: missing ${name}`)
      return [name, { dtype: "F32", shape, data } satisfies Safetensors.Tensor]
    })),
    { format: "pt", producer: "polaris" }
  ] as const

/** Weights from safetensors bytes, checked against the config: every name present, shapes equal, no extras. */
export const decodeWeights = (config: ModelConfig, bytes: Uint8Array, where: string = FILES.weights): Map<string, Float32Array> => {
  const { tensors } = Safetensors.decode(bytes)
  const expected = paramShapes(config)
  const out = new Map<string, Float32Array>()
  for (const [name, shape] of expected) {
    const t = tensors[name]
    if (t === undefined) throw new CheckpointError(`${where}: missing tensor ${name}`)
    if (t.dtype !== "F32" || t.shape.join(",") !== shape.join(",")) {
      throw new CheckpointError(`${where}: ${name} is ${t.dtype}[${t.shape.join(",")}], the config needs F32[${shape.join(",")}]`)
    }
    out.set(name, t.data as Float32Array)
  }
  const extra = Object.keys(tensors).filter((n) => !out.has(n))
  if (extra.length > 0) throw new CheckpointError(`${where}: unexpected tensors ${extra.slice(0, 5).join(", ")}`)
  return out
}

/**
 * Writes the folder; each file atomically, and durably (fsync) unless `durable` is false: for a
 * folder that is only a step on the way into the artifact store, whose copy is the durable one.
 * Tensors are written from their own memory (Safetensors.encodeChunks): they must not change
 * until the returned promise settles.
 */
export const write = async (dir: string, ckpt: Checkpoint, options: { readonly durable?: boolean } = {}): Promise<void> => {
  await mkdir(dir, { recursive: true })
  const put = (name: string, bytes: ReadonlyArray<Uint8Array> | string) =>
    atomicWrite(dir, join(dir, name), typeof bytes === "string" ? Buffer.from(bytes) : bytes, { durable: options.durable !== false })
  // All files at once: their writes overlap on the thread pool (measured: the checkpoint written
  // and stored in 0.72-0.80x the time of one file after another, bench notes). Every write has
  // ended, done or failed, before this returns, so a retried save never races a stale one.
  const writes = await Promise.allSettled([
    put(FILES.config, `${JSON.stringify(ckpt.config, null, 2)}\n`),
    put(FILES.weights, Safetensors.encodeChunks(...weightTensors(ckpt.config, ckpt.weights))),
    put(FILES.tokenizer, ckpt.tokenizer.json),
    put(FILES.tokenizerConfig, ckpt.tokenizer.config),
    ...(ckpt.optimizer !== undefined ? [put(FILES.optimizer, Safetensors.encodeChunks(ckpt.optimizer.tensors, ckpt.optimizer.metadata))] : [])
  ])
  for (const w of writes) if (w.status === "rejected") throw w.reason
}

const unreadable = (path: string, e: unknown) =>
  new CheckpointError(`${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : String(e)}`)

const fileIn = (dir: string) => async (name: string): Promise<Buffer> => {
  try {
    return await readFile(join(dir, name))
  } catch (e) {
    throw unreadable(join(dir, name), e)
  }
}

/** A checkpoint folder's model config. */
export const readConfig = async (dir: string): Promise<ModelConfig> => {
  const bytes = await fileIn(dir)(FILES.config)
  try {
    return decodeConfig(bytes.toString("utf8"))
  } catch (e) {
    throw new CheckpointError(`${join(dir, FILES.config)}: not a polaris model config (${String(e).split("\n")[0]})`)
  }
}

/** A checkpoint folder's config and weights only: what sampling needs (no tokenizer, no optimizer state). */
export const readWeights = async (dir: string): Promise<Pick<Checkpoint, "config" | "weights">> => {
  const config = await readConfig(dir)
  return { config, weights: decodeWeights(config, await fileIn(dir)(FILES.weights), join(dir, FILES.weights)) }
}

/** A checkpoint folder's tokenizer files, read at once (they are small; an engine's tokenizer getter is synchronous). */
export const readTokenizerFiles = (dir: string): Checkpoint["tokenizer"] => {
  const text = (name: string) => {
    try {
      return readFileSync(join(dir, name), "utf8")
    } catch (e) {
      throw unreadable(join(dir, name), e)
    }
  }
  return { json: text(FILES.tokenizer), config: existsSync(join(dir, FILES.tokenizerConfig)) ? text(FILES.tokenizerConfig) : "{}" }
}

/** Reads and validates a checkpoint folder (the optimizer state when present). */
export const read = async (dir: string): Promise<Checkpoint> => {
  const file = fileIn(dir)
  const { config, weights } = await readWeights(dir)
  const tokenizer = readTokenizerFiles(dir)
  // A function of the tokenizer's files, remembered by their identities: making the tokenizer to
  // count its ids costs ~10 ms, and an engine that plans only never makes it otherwise.
  const tokenizerFiles = [FILES.tokenizer, FILES.tokenizerConfig].map((f) => join(dir, f)).filter((f) => existsSync(f))
  const vocab = byFileIdentity("tokenizer-vocab-sizes", tokenizerFiles, () => Tokenizer.fromJson(JSON.parse(tokenizer.json), JSON.parse(tokenizer.config)).vocabSize)
  if (vocab > config.vocabSize) throw new CheckpointError(`${dir}: the tokenizer has ${vocab} ids, the model ${config.vocabSize}`)
  const optimizer = existsSync(join(dir, FILES.optimizer)) ? Safetensors.decode(await file(FILES.optimizer)) : undefined
  return { config, weights, tokenizer, ...(optimizer !== undefined ? { optimizer } : {}) }
}

/** The checkpoint's tokenizer through THE loader. */
export const tokenizerOf = (ckpt: Pick<Checkpoint, "tokenizer">): Tokenizer =>
  Tokenizer.fromJson(JSON.parse(ckpt.tokenizer.json), JSON.parse(ckpt.tokenizer.config))

/**
 * Writes the checkpoint as a standard decoder-only ONNX export (`model.onnx` with the weights
 * inside, Optimum's `text-generation-with-past` layout) plus its tokenizer and a Hugging Face
 * style `config.json`: what ExternalModel.ts and other ONNX runtimes load.
 */
export const exportOnnx = async (dir: string, ckpt: Checkpoint): Promise<void> => {
  const c = ckpt.config
  await mkdir(dir, { recursive: true })
  await atomicWrite(dir, join(dir, "model.onnx"), Onnx.toModelProto(standardDecoderGraph(c), ckpt.weights))
  await atomicWrite(dir, join(dir, FILES.tokenizer), ckpt.tokenizer.json)
  await atomicWrite(dir, join(dir, FILES.tokenizerConfig), ckpt.tokenizer.config)
  const hf = {
    architectures: ["PolarisLlamaForCausalLM"],
    model_type: "polaris-llama",
    vocab_size: c.vocabSize,
    hidden_size: c.dModel,
    intermediate_size: c.dFF,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nHeads,
    max_position_embeddings: c.maxContext,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.normEps,
    tie_word_embeddings: true
  }
  await atomicWrite(dir, join(dir, FILES.config), `${JSON.stringify(hf, null, 2)}\n`)
}
