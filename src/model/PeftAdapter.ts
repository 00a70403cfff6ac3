/**
 * LoRA adapters in PEFT's on-disk format, the one vLLM's `/v1/load_lora_adapter` reads, and the
 * conversion of a Tinker sampler checkpoint into it.
 *
 * A PEFT adapter folder (huggingface/peft@5d602fd: src/peft/utils/constants.py `CONFIG_NAME`,
 * `SAFETENSORS_WEIGHTS_NAME`; src/peft/peft_model.py `save_pretrained`):
 *
 *   adapter_config.json          {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
 *                                 "target_modules": [leaf module names], "bias": "none", …}
 *   adapter_model.safetensors    base_model.model.<module>.lora_A.weight   [r, in_features]
 *                                base_model.model.<module>.lora_B.weight   [out_features, r]
 *                                (unscaled; scaling = lora_alpha / r is applied by the server;
 *                                metadata {"format": "pt"})
 *
 * vLLM requires `r`, `lora_alpha` and `target_modules`, refuses `modules_to_save` and DoRA, and
 * checks `r <= --max-lora-rank` before reading any tensor (vllm-project/vllm
 * vllm/lora/peft_helper.py@e745baf `PEFTHelper.from_dict` / `validate_legal`).
 *
 * A Tinker archive (thinking-machines-lab/tinker src/tinker/cli/commands/checkpoint.py@d595dc2)
 * holds `adapter_config.json` (`r`, `lora_alpha`), `adapter_model.safetensors` and a
 * `checkpoint_complete` marker, with Tinker's own module names under `base_model.model.`. The
 * conversion follows tinker-cookbook's `build_lora_adapter` (tinker_cookbook/weights/_adapter.py,
 * _merge_utils.py `build_name_remaps`, _merge_qwen3_5.py `build_qwen3_5_name_remaps`, all
 * @9dfcc3a) for dense models: `model.unembed_tokens` becomes `lm_head` (or `model.embed_tokens`
 * when the base model ties its embeddings), `model.` becomes `model.language_model.` when the
 * base model's weights carry that prefix (vision-language checkpoints such as Qwen3.5), tensors
 * are kept as they are (dtype included), and `target_modules` are the leaf names. Every mapped
 * module is checked against the base model's weight names (and shapes, when its safetensors
 * headers are on disk). MoE expert tensors and the model families the cookbook remaps
 * specially are refused with a pointer to the cookbook.
 *
 * @example
 * const base = await PeftAdapter.baseModel(["Qwen/Qwen3-8B"])
 * const peft = PeftAdapter.fromTinker(await PeftAdapter.read("archive/"), base)
 * await PeftAdapter.write("/shared/adapters/run-1/sampler-3", peft)
 */
import { randomBytes } from "node:crypto"
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { basename, dirname, join } from "node:path"
import * as HubCache from "./HubCache.ts"
import * as Safetensors from "./Safetensors.ts"

export const CONFIG_FILE = "adapter_config.json"
export const WEIGHTS_FILE = "adapter_model.safetensors"
const PREFIX = "base_model.model."

/** An adapter in memory: the parsed adapter_config.json and the tensors by name. */
export interface Adapter {
  readonly config: Readonly<Record<string, unknown>>
  readonly tensors: Readonly<Record<string, Safetensors.Tensor>>
}

/** Why an adapter cannot be converted or read: `Unsupported` (a model family), `Invalid` (the files). */
export class AdapterError extends Error {
  override readonly name = "AdapterError"
  constructor(readonly reason: "Unsupported" | "Invalid" | "BaseModel", message: string) {
    super(message)
  }
}

/** What the conversion needs to know of the base model: its config.json and weight names. */
export interface BaseModel {
  /** What `base_model_name_or_path` says (the model id, or the folder). */
  readonly name: string
  readonly dir: string
  readonly config: Readonly<Record<string, unknown>>
  readonly weights: ReadonlySet<string>
  /** Shapes of the weights whose safetensors headers are on disk. */
  readonly shapes: ReadonlyMap<string, ReadonlyArray<number>>
}

// Model types the cookbook converts with remaps this module does not implement (or refuses).
const UNSUPPORTED: Readonly<Record<string, string>> = {
  deepseek_v3: "vLLM has no LoRA for DeepSeek V3 (tinker-cookbook refuses it too); merge the adapter with tinker-cookbook's build_hf_model instead",
  gpt_oss: "GPT-OSS adapters need the .attn -> .self_attn remap and interleaved experts",
  nemotron_h: "Nemotron adapters need the backbone.* prefix remap and fused Mamba projections",
  kimi_k25: "Kimi-K2.5 adapters need the language_model.model.* prefix"
}
const COOKBOOK = "convert it with tinker-cookbook's `tinker_cookbook.weights.build_lora_adapter` and point vLLM at that folder"

const SPLIT_QKV = /\.in_proj_[qkv]$/

/** The weight names (and shapes, where headers are local) of a model folder. */
const readWeights = async (dir: string): Promise<{ weights: Set<string>; shapes: Map<string, ReadonlyArray<number>> } | undefined> => {
  const shapes = new Map<string, ReadonlyArray<number>>()
  const headerOf = async (file: string) => {
    const { tensors } = await Safetensors.readHeader(join(dir, file))
    for (const [name, info] of Object.entries(tensors)) shapes.set(name, info.shape)
    return Object.keys(tensors)
  }
  if (HubCache.has(dir, "model.safetensors.index.json")) {
    const index = HubCache.readJson(dir, "model.safetensors.index.json") as { weight_map?: Record<string, string> }
    const map = index.weight_map ?? {}
    for (const shard of new Set(Object.values(map))) if (HubCache.has(dir, shard)) await headerOf(shard)
    return { weights: new Set(Object.keys(map)), shapes }
  }
  if (HubCache.has(dir, "model.safetensors")) return { weights: new Set(await headerOf("model.safetensors")), shapes }
  return undefined
}

/**
 * The base model's config.json and weight names, from the first of `specs` (model ids in the
 * Hugging Face cache, or folders) that has config.json and model.safetensors.index.json (or
 * model.safetensors). Only headers are read, never the weights.
 */
export const baseModel = async (specs: ReadonlyArray<string>, env: HubCache.HubEnv = process.env): Promise<BaseModel> => {
  const looked: Array<string> = []
  for (const spec of specs) {
    let located: HubCache.Located
    try {
      located = HubCache.locate(spec, ["config.json"], { env, what: "base model" })
    } catch (e) {
      looked.push(...(e instanceof HubCache.HubCacheError ? e.looked : [String(e)]))
      continue
    }
    const files = await readWeights(located.dir)
    if (files === undefined) {
      looked.push(`${located.dir}: no model.safetensors.index.json or model.safetensors`)
      continue
    }
    const config = HubCache.readJson(located.dir, "config.json") as Record<string, unknown>
    return { name: located.source === "cache" ? spec : located.dir, dir: located.dir, config, ...files }
  }
  const id = specs.find((s) => HubCache.isModelId(s) && !HubCache.isPathLike(s))
  throw new AdapterError(
    "BaseModel",
    `the base model's config.json and weight names are needed to name the adapter's modules as vLLM expects; looked in: ${looked.join("; ")}` +
      (id === undefined ? "" : `; fetch them with \`hf download ${id} config.json model.safetensors.index.json\``)
  )
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The `(old, new)` prefix rewrites of one base model, in order (cookbook `build_name_remaps`). */
const remaps = (base: BaseModel): Array<readonly [string, string]> => {
  const names = [...base.weights]
  const languageModel = names.some((k) => k.startsWith("model.language_model."))
  const qwen35 = base.config.model_type === "qwen3_5" || base.config.model_type === "qwen3_5_moe"
  if (qwen35 && languageModel) {
    const topLevelHead = names.some((k) => k === "lm_head.weight" || k.startsWith("lm_head."))
    return [["model.", "model.language_model."], ["model.language_model.unembed_tokens", topLevelHead ? "lm_head" : "model.language_model.embed_tokens"]]
  }
  if (qwen35) return [["model.unembed_tokens", "lm_head"]]
  const head = names.some((k) => k === "lm_head.weight" || k.endsWith(".lm_head.weight"))
  return [["model.unembed_tokens", head ? "lm_head" : "model.embed_tokens"], ...(languageModel ? [["model.", "model.language_model."] as const] : [])]
}

const remap = (module: string, rules: ReadonlyArray<readonly [string, string]>): string =>
  rules.reduce((name, [from, to]) => (name === from || name.startsWith(`${from}.`) || (from.endsWith(".") && name.startsWith(from)) ? to + name.slice(from.length) : name), module)

const shapeText = (s: ReadonlyArray<number>) => `[${s.join(", ")}]`

/**
 * A Tinker sampler checkpoint's adapter (its adapter_config.json and tensors) as a PEFT adapter
 * for `base`. Throws AdapterError naming the tensor or module that does not fit.
 *
 * @example
 * const peft = fromTinker({ config: { r: 32, lora_alpha: 32 }, tensors }, base)
 * peft.config.target_modules // ["down_proj", "gate_proj", "k_proj", "lm_head", ...]
 */
export const fromTinker = (tinker: Adapter, base: BaseModel): Adapter => {
  const modelType = typeof base.config.model_type === "string" ? base.config.model_type : ""
  const why = UNSUPPORTED[modelType]
  if (why !== undefined) throw new AdapterError("Unsupported", `model_type ${JSON.stringify(modelType)}: ${why}; ${COOKBOOK}`)
  const r = tinker.config.r
  const alpha = tinker.config.lora_alpha
  if (!(Number.isInteger(r) && (r as number) > 0)) throw new AdapterError("Invalid", `${CONFIG_FILE}: r must be a positive integer, got ${JSON.stringify(r)}`)
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw new AdapterError("Invalid", `${CONFIG_FILE}: lora_alpha must be a number, got ${JSON.stringify(alpha)}`)

  // Pair the tensors: <module>.lora_A.weight + <module>.lora_B.weight.
  const modules = new Map<string, { a?: Safetensors.Tensor; b?: Safetensors.Tensor }>()
  for (const [name, tensor] of Object.entries(tinker.tensors)) {
    const m = /^(.*)\.lora_([AB])\.weight$/.exec(name)
    if (m === null || !m[1]!.startsWith(PREFIX)) {
      throw new AdapterError("Invalid", `${WEIGHTS_FILE}: tensor ${JSON.stringify(name)} is not base_model.model.<module>.lora_{A,B}.weight`)
    }
    const module = m[1]!.slice(PREFIX.length)
    if (module.includes(".experts.") || module.endsWith(".experts") || tensor.shape.length === 3) {
      throw new AdapterError("Unsupported", `${WEIGHTS_FILE}: ${JSON.stringify(name)} is a mixture-of-experts LoRA (3-D, one slice per expert), which this converter does not expand; ${COOKBOOK}`)
    }
    const pair = modules.get(module) ?? {}
    if (m[2] === "A") pair.a = tensor
    else pair.b = tensor
    modules.set(module, pair)
  }
  if (modules.size === 0) throw new AdapterError("Invalid", `${WEIGHTS_FILE}: no LoRA tensors`)

  const rules = remaps(base)
  const tensors: Record<string, Safetensors.Tensor> = {}
  const targets = new Set<string>()
  for (const [module, { a, b }] of [...modules].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    const from = `${PREFIX}${module}`
    if (a === undefined || b === undefined) throw new AdapterError("Invalid", `${WEIGHTS_FILE}: ${from} has lora_${a === undefined ? "A" : "B"} missing`)
    if (a.shape.length !== 2 || b.shape.length !== 2) {
      throw new AdapterError("Invalid", `${WEIGHTS_FILE}: ${from}: lora_A ${shapeText(a.shape)} and lora_B ${shapeText(b.shape)} must be 2-D`)
    }
    const [ra, inDim] = a.shape as [number, number]
    const [outDim, rb] = b.shape as [number, number]
    if (ra !== r || rb !== r) {
      throw new AdapterError("Invalid", `${WEIGHTS_FILE}: ${from}: lora_A ${shapeText(a.shape)} / lora_B ${shapeText(b.shape)} do not have rank r = ${r} (lora_A is [r, in], lora_B [out, r])`)
    }
    const target = remap(module, rules)
    const splitQkv = SPLIT_QKV.test(target) && base.weights.has(target.replace(SPLIT_QKV, ".in_proj_qkv") + ".weight")
    if (!base.weights.has(`${target}.weight`) && !splitQkv) {
      throw new AdapterError("Invalid", `${WEIGHTS_FILE}: ${from} maps to ${target}.weight, which the base model ${base.name} does not have (wrong base model?)`)
    }
    const baseShape = base.shapes.get(`${target}.weight`)
    if (baseShape !== undefined && !splitQkv && (baseShape[0] !== outDim || baseShape[1] !== inDim)) {
      throw new AdapterError("Invalid", `${WEIGHTS_FILE}: ${from} is a [${outDim}, ${inDim}] update but ${target}.weight is ${shapeText(baseShape)} in ${base.name}`)
    }
    const key = `${PREFIX}${target}`
    if (tensors[`${key}.lora_A.weight`] !== undefined) throw new AdapterError("Invalid", `${WEIGHTS_FILE}: two modules map to ${target}`)
    tensors[`${key}.lora_A.weight`] = a
    tensors[`${key}.lora_B.weight`] = b
    targets.add(target.slice(target.lastIndexOf(".") + 1))
  }
  return {
    config: {
      // tinker-cookbook _adapter.py `_build_peft_config`, plus PEFT's use_rslora / use_dora (both off).
      peft_type: "LORA",
      auto_mapping: null,
      base_model_name_or_path: base.name,
      bias: "none",
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: alpha,
      lora_dropout: 0,
      modules_to_save: null,
      r,
      rank_pattern: {},
      alpha_pattern: {},
      target_modules: [...targets].sort(),
      task_type: "CAUSAL_LM",
      use_dora: false,
      use_rslora: false
    },
    tensors
  }
}

/** Reads an adapter folder (adapter_config.json + adapter_model.safetensors). */
export const read = async (dir: string): Promise<Adapter> => {
  let config: unknown
  try {
    config = JSON.parse(await readFile(join(dir, CONFIG_FILE), "utf8"))
  } catch (e) {
    throw new AdapterError("Invalid", `${join(dir, CONFIG_FILE)}: ${(e as Error).message}`)
  }
  if (!isRecord(config)) throw new AdapterError("Invalid", `${join(dir, CONFIG_FILE)}: not a JSON object`)
  try {
    return { config, tensors: Safetensors.decode(await readFile(join(dir, WEIGHTS_FILE))).tensors }
  } catch (e) {
    throw new AdapterError("Invalid", `${join(dir, WEIGHTS_FILE)}: ${(e as Error).message}`)
  }
}

/** An adapter from its two files' bytes (an unpacked archive). */
export const decode = (files: { readonly config: Uint8Array; readonly weights: Uint8Array }, origin: string): Adapter => {
  let config: unknown
  try {
    config = JSON.parse(new TextDecoder().decode(files.config))
  } catch (e) {
    throw new AdapterError("Invalid", `${origin} ${CONFIG_FILE}: ${(e as Error).message}`)
  }
  if (!isRecord(config)) throw new AdapterError("Invalid", `${origin} ${CONFIG_FILE}: not a JSON object`)
  try {
    return { config, tensors: Safetensors.decode(files.weights).tensors }
  } catch (e) {
    throw new AdapterError("Invalid", `${origin} ${WEIGHTS_FILE}: ${(e as Error).message}`)
  }
}

/**
 * Writes `adapter` as the folder `dir`, whole or not at all: the files go to a sibling temp
 * folder that is then renamed, so a server never reads a half-written adapter. `dir` must not
 * exist yet.
 */
export const write = async (dir: string, adapter: Adapter): Promise<void> => {
  const tmp = join(dirname(dir), `.${basename(dir)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`)
  await mkdir(tmp, { recursive: true })
  try {
    await writeFile(join(tmp, WEIGHTS_FILE), Safetensors.encode(adapter.tensors, { format: "pt" }))
    await writeFile(join(tmp, CONFIG_FILE), `${JSON.stringify(adapter.config, null, 2)}\n`)
    await rename(tmp, dir)
  } catch (e) {
    await rm(tmp, { recursive: true, force: true })
    throw e
  }
}
