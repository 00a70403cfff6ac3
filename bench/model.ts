/**
 * The embedded story model (src/model/StoryModel.ts, onnxruntime-node) against a PyTorch CPU
 * version of the same model (bench/torch/story_model.py) on the same machine, in the same run,
 * 2 threads each, default config (V=4096, d=128, L=4, H=4, dFF=352), under every PyTorch found:
 * Debian's torch 1.13 (/usr/bin/python3) and PyTorch 2 (the python of `POLARIS_TORCH2_PYTHON`,
 * default bench/torch/.venv/bin/python, made by bench/torch/setup-torch2.sh from /opt/wheels):
 *
 * 1. onnxruntime's fp32 MatMul peak ([N,N]x[N,N], N = 256, 512, 1024) through Onnx.load, 2 threads.
 * 2. Training: batch 8 × 512 tokens, StoryModel.forwardBackward (cross_entropy items) + AdamW.step.
 * 3. The same in PyTorch (`story_model.py train`).
 * 4. KV-cache sampling, batch 40, 16-token prompts, 256 new tokens each: ours on the embedded engine's
 *    sampling workers (SamplerPool, one per thread), and PyTorch's.
 * 5. Achieved GFLOP/s of 2 and 4 against the peak of 1.
 * 6. A cross-check: per-token logprobs of StoryModel.score (float32 ONNX) against
 *    `story_model.py logprobs` (float64 torch) on the same weights.
 *
 * Targets (issue 19), against PyTorch 2: training at least 1.5×, sampling at least 2× as fast;
 * against Debian's 1.13, at least as fast.
 *
 *   npm run bench -- model        (or: npx tsx bench/model.ts)
 *   POLARIS_BENCH_QUICK=1 ...     tiny config, only to check that the code runs
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { seeded } from "../src/internal/random.ts"
import { AdamW, type AdamParams } from "../src/model/AdamW.ts"
import { encodeWeights } from "../src/model/Checkpoint.ts"
import { Graph } from "../src/model/graph/Graph.ts"
import * as Onnx from "../src/model/graph/Onnx.ts"
import { defaultSamplingParams, type SamplingParams } from "../src/model/Sampling.ts"
import { SamplerPool } from "../src/model/SamplerPool.ts"
import { StoryModel, type TrainItem } from "../src/model/StoryModel.ts"
import { decays, defaultConfig, initWeights, paramCount, paramShapes, type ModelConfig } from "../src/model/Transformer.ts"
import { fmt, fmtSummary, ROOT, summarize, type Summary } from "./measure.ts"
import { markdownTable } from "./table.ts"

const THREADS = 2
const SCRIPT = join(ROOT, "bench", "torch", "story_model.py")

/** A PyTorch to compare with: its python, and the speed-ups the targets ask of polaris against it. */
interface Runtime {
  readonly name: string
  readonly python: string
  readonly target: { readonly train: number; readonly sample: number }
  readonly setup: string
}
const RUNTIMES: ReadonlyArray<Runtime> = [
  { name: "Debian torch", python: "/usr/bin/python3", target: { train: 1, sample: 1 }, setup: "apt-get install python3-torch libopenblas0-pthread" },
  {
    name: "PyTorch 2",
    python: process.env["POLARIS_TORCH2_PYTHON"] ?? join(ROOT, "bench", "torch", ".venv", "bin", "python"),
    target: { train: 1.5, sample: 2 },
    setup: "bench/torch/setup-torch2.sh (the wheel in /opt/wheels)"
  }
]

/** Options of the model benchmark. */
export interface ModelOptions {
  /** Measured repetitions of each sampling run (after one warm-up). */
  readonly repeats: number
  /** Progress lines. */
  readonly log: (line: string) => void
  /** Tiny config (default: `POLARIS_BENCH_QUICK=1`), only to check the code runs. */
  readonly quick?: boolean
}

/** The benchmark's markdown section. */
export interface ModelResult {
  readonly markdown: string
}

/** The sizes of one benchmark run. */
interface Settings {
  readonly config: ModelConfig
  readonly matmulSizes: ReadonlyArray<number>
  readonly matmulRuns: number
  readonly trainBatch: number
  readonly trainSeq: number
  readonly trainSteps: number
  readonly trainWarmup: number
  readonly sampleRows: number
  readonly promptLen: number
  readonly newTokens: number
  readonly checkLengths: ReadonlyArray<number>
}

const FULL: Settings = {
  config: defaultConfig,
  matmulSizes: [256, 512, 1024],
  matmulRuns: 10,
  trainBatch: 8,
  trainSeq: 512,
  trainSteps: 8,
  trainWarmup: 2,
  sampleRows: 40,
  promptLen: 16,
  newTokens: 256,
  checkLengths: [512, 256, 128, 64]
}

const QUICK: Settings = {
  config: { ...defaultConfig, vocabSize: 512, dModel: 32, nLayers: 1, nHeads: 4, dFF: 88 },
  matmulSizes: [64, 128],
  matmulRuns: 3,
  trainBatch: 2,
  trainSeq: 64,
  trainSteps: 2,
  trainWarmup: 1,
  sampleRows: 4,
  promptLen: 16,
  newTokens: 16,
  checkLengths: [64, 32]
}

/** The optimizer settings of the training step (as pretraining: Tinker's betas/eps, decay 0.1, clip 1). */
const ADAM: AdamParams = { learningRate: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-12, weightDecay: 0.1, gradClipNorm: 1 }

// ---- FLOPs ----------------------------------------------------------------------------------

/**
 * Forward FLOPs per token (a multiply-add counts 2), matmuls only (norms, RoPE, softmax, SiLU are
 * O(d) per token and left out):
 *
 *   2 · L · (4d² + 3·d·dFF)   the non-embedding matmuls: wq, wk, wv, wo (d×d each) and
 *                             w_gate, w_up, w_down (d×dFF each), per layer
 * + 2 · d · V                 the LM head (tied to the embedding; the lookup itself is free)
 * + L · 4 · d · T_att         attention: QKᵀ (2·d·T_att) and PV (2·d·T_att) summed over heads
 *
 * T_att is the number of keys each query is multiplied with. The training graph computes the full
 * T×T scores (masked, not skipped), so T_att = T there. A decode step attends to every cached
 * position, so sampling uses the mean attended length, prompt + new/2.
 */
const forwardFlopsPerToken = (c: ModelConfig, tAtt: number): number =>
  2 * c.nLayers * (4 * c.dModel * c.dModel + 3 * c.dModel * c.dFF) + 2 * c.dModel * c.vocabSize + c.nLayers * 4 * c.dModel * tAtt

/** Training per token: forward + backward, the backward counted as twice the forward (dX and dW). */
const trainFlopsPerToken = (c: ModelConfig, T: number): number => 3 * forwardFlopsPerToken(c, T)

/**
 * Sampling per generated token: one forward at the mean attended length. (The prefill of the
 * prompts, promptLen tokens per row against newTokens generated, is not counted separately: it is
 * small next to the decode steps, and leaving it out under-counts our FLOPs, not over-counts them.)
 */
const sampleFlopsPerToken = (c: ModelConfig, promptLen: number, newTokens: number): number =>
  forwardFlopsPerToken(c, promptLen + newTokens / 2)

// ---- helpers --------------------------------------------------------------------------------

const randomTokens = (random: () => number, n: number, V: number): Array<number> =>
  Array.from({ length: n }, () => Math.floor(random() * V))

/** Runs story_model.py under `python` with 2 BLAS threads; resolves with the JSON object it printed last. */
const torch = <A>(python: string, args: ReadonlyArray<string>): Promise<A> =>
  new Promise((resolve, reject) => {
    const child = spawn(python, [SCRIPT, ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, OMP_WAIT_POLICY: "PASSIVE", OPENBLAS_NUM_THREADS: String(THREADS) }
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", (e) => reject(new Error(`${python} ${args[0]}: ${e.message}`)))
    child.on("exit", (code, signal) => {
      if (code !== 0) return reject(new Error(`story_model.py ${args.join(" ")} exited with ${code ?? signal}: ${stderr.trim()}`))
      try {
        resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as A)
      } catch {
        reject(new Error(`story_model.py ${args[0]} printed no JSON line: ${stdout}${stderr}`))
      }
    })
  })

/** The torch version of `python`, or why it has none. */
const torchVersion = (python: string): Promise<{ readonly version: string } | { readonly missing: string }> =>
  new Promise((resolve) => {
    const child = spawn(python, ["-c", "import torch, numpy; print(torch.__version__)"], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    child.on("error", (e) => resolve({ missing: e.message }))
    child.on("exit", (code) => resolve(code === 0 ? { version: out.trim() } : { missing: err.trim().split("\n").at(-1) ?? `exit ${code}` }))
  })

interface TorchRuntime {
  readonly torch_version: string
  readonly threads: number
  readonly blas: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
}

interface TorchTrain extends TorchRuntime {
  readonly tokens_per_s: number
  readonly ms_per_step: number
}

interface TorchSample extends TorchRuntime {
  readonly tokens_per_s: number
  readonly ms_per_step: number
  readonly prefill_ms: number
  readonly total_ms: number
}

// ---- 1. onnxruntime MatMul peak -------------------------------------------------------------

export interface MatmulPoint {
  readonly n: number
  readonly bestMs: number
  readonly gflops: number
}

/**
 * onnxruntime's fp32 MatMul [n,n]×[n,n] on `threads` threads (2n³ FLOP), best of `runs` after 3
 * warm-ups: the host's speed at that moment, for this benchmark's peak and for the quickstart's.
 */
export const matmulPoint = async (n: number, runs: number, threads: number = THREADS): Promise<MatmulPoint> => {
  const g = new Graph()
  const a = g.input("a", "float32", [n, n])
  const b = g.input("b", "float32", [n, n])
  g.output("c", g.matmul(a, b))
  const run = await Onnx.load(g, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all" })
  const random = seeded(`bench:matmul:${n}`)
  const feeds = {
    a: { data: Float32Array.from({ length: n * n }, () => random() - 0.5), dims: [n, n] },
    b: { data: Float32Array.from({ length: n * n }, () => random() - 0.5), dims: [n, n] }
  }
  for (let i = 0; i < 3; i++) await run(feeds)
  let best = Infinity
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    await run(feeds)
    best = Math.min(best, performance.now() - t0)
  }
  return { n, bestMs: best, gflops: (2 * n ** 3) / (best / 1000) / 1e9 }
}

const matmulPeak = async (s: Settings, log: ModelOptions["log"]): Promise<Array<MatmulPoint>> => {
  const out: Array<MatmulPoint> = []
  for (const n of s.matmulSizes) {
    const p = await matmulPoint(n, s.matmulRuns)
    log(`model: ORT MatMul ${n}×${n}: best ${fmt(p.bestMs, 2)} ms, ${fmt(p.gflops, 1)} GFLOP/s`)
    out.push(p)
  }
  return out
}

// ---- 2. training, ours ----------------------------------------------------------------------

interface TrainTiming {
  readonly stepMs: Summary
  readonly tokensPerS: Summary
}

const trainOurs = async (s: Settings, log: ModelOptions["log"]): Promise<TrainTiming> => {
  const c = s.config
  const model = StoryModel.create(c, { threads: THREADS })
  const weights = initWeights(c, "bench")
  const grads = new Map(paramShapes(c).map(([name, shape]) => [name, new Float32Array(shape.reduce((p, q) => p * q, 1))]))
  const optimizer = new AdamW(new Map([...weights].map(([name, w]) => [name, w.length])), { decay: decays })
  const random = seeded("bench:train")
  const tokens = s.trainBatch * s.trainSeq
  const batches = Array.from({ length: Math.min(s.trainSteps + s.trainWarmup, 8) }, (): Array<TrainItem> =>
    Array.from({ length: s.trainBatch }, () => {
      const seq = randomTokens(random, s.trainSeq + 1, c.vocabSize)
      return {
        input: seq.slice(0, s.trainSeq),
        targets: seq.slice(1),
        weights: new Float32Array(s.trainSeq).fill(1 / tokens),
        oldLogprobs: new Float32Array(s.trainSeq),
        advantages: new Float32Array(s.trainSeq)
      }
    }))
  const step = async (i: number) => {
    for (const g of grads.values()) g.fill(0)
    await model.forwardBackward(weights, batches[i % batches.length]!, { low: 0, high: 1e30 }, grads)
    optimizer.step(weights, grads, ADAM)
  }
  for (let i = 0; i < s.trainWarmup; i++) await step(i)
  const ms: Array<number> = []
  for (let i = 0; i < s.trainSteps; i++) {
    const t0 = performance.now()
    await step(s.trainWarmup + i)
    ms.push(performance.now() - t0)
    log(`model: polaris training step ${i + 1}/${s.trainSteps}: ${fmt(ms.at(-1)!)} ms (${fmt(tokens / (ms.at(-1)! / 1000))} tokens/s)`)
  }
  return { stepMs: summarize(ms), tokensPerS: summarize(ms.map((m) => tokens / (m / 1000))) }
}

// ---- 4. sampling, ours ----------------------------------------------------------------------

/**
 * The embedded engine's path: a SamplerPool of one worker per thread (THREADS), the rows split
 * into one request per worker, each decoding its rows in one batch on one onnxruntime thread.
 * The pool and the weights' sessions are made by the warm-up run, as the engine makes them once
 * per policy version.
 */
const sampleOurs = async (s: Settings, repeats: number, log: ModelOptions["log"]): Promise<Summary> => {
  const c = s.config
  const pool = new SamplerPool(THREADS)
  const weights = initWeights(c, "bench")
  const random = seeded("bench:sample")
  const prompts = Array.from({ length: s.sampleRows }, () => randomTokens(random, s.promptLen, c.vocabSize))
  if (new Set(prompts.map((p) => p.join(","))).size !== prompts.length) throw new Error("sampling prompts must be distinct")
  const share = Math.ceil(s.sampleRows / THREADS)
  const requests = Array.from({ length: THREADS }, (_, i) => prompts.slice(i * share, (i + 1) * share)).filter((r) => r.length > 0)
  const params: SamplingParams = { ...defaultSamplingParams, maxTokens: s.newTokens, temperature: 1, seed: 1 }
  const once = async (): Promise<number> => {
    const t0 = performance.now()
    const rows = (await Promise.all(requests.map((r) => pool.generate(c, weights, r, params, [])))).flat()
    const ms = performance.now() - t0
    const generated = rows.reduce((n, r) => n + r.tokens.length, 0)
    if (generated !== s.sampleRows * s.newTokens) throw new Error(`sampling: expected ${s.sampleRows * s.newTokens} tokens, got ${generated}`)
    return generated / (ms / 1000)
  }
  try {
    await once()
    const rates: Array<number> = []
    for (let i = 0; i < repeats; i++) {
      rates.push(await once())
      log(`model: polaris sampling run ${i + 1}/${repeats}: ${fmt(rates.at(-1)!)} tokens/s`)
    }
    return summarize(rates)
  } finally {
    await pool.close()
  }
}

// ---- 6. cross-check -------------------------------------------------------------------------

interface CrossCheck {
  readonly maxDiff: number
  readonly tokens: number
  readonly meanLogprob: number
}

/**
 * Weights are initWeights scaled up (×8 for the decayed matrices) so the distributions are far from
 * uniform and the check means something; per-token logprobs of a few random sequences from both.
 */
const crossCheck = async (s: Settings, dir: string, configPath: string, python: string): Promise<CrossCheck> => {
  const c = s.config
  const weights = initWeights(c, "bench:check")
  for (const [name, w] of weights) if (decays(name)) for (let i = 0; i < w.length; i++) w[i]! *= 8
  const weightsPath = join(dir, "check.safetensors")
  writeFileSync(weightsPath, encodeWeights(c, weights))
  const random = seeded("bench:check")
  const seqs = s.checkLengths.map((n) => randomTokens(random, n, c.vocabSize))
  const tokensPath = join(dir, "tokens.json")
  writeFileSync(tokensPath, JSON.stringify(seqs))
  const model = StoryModel.create(c, { threads: THREADS })
  const ours = await model.score(weights, seqs.map((q) => ({ input: q.slice(0, -1), targets: q.slice(1) })))
  const ref = await torch<{ logprobs: ReadonlyArray<ReadonlyArray<number>> }>(python, [
    "logprobs", "--config", configPath, "--weights", weightsPath, "--tokens", tokensPath, "--dtype", "float64", "--threads", String(THREADS)
  ])
  let maxDiff = 0
  let sum = 0
  let n = 0
  seqs.forEach((q, i) => {
    const a = ours[i]!.logprobs
    const b = ref.logprobs[i]!
    if (a.length !== q.length - 1 || b.length !== q.length - 1) throw new Error(`cross-check: sequence ${i}: ${a.length} vs ${b.length} logprobs, expected ${q.length - 1}`)
    for (let t = 0; t < a.length; t++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[t]! - b[t]!))
      sum += b[t]!
      n++
    }
  })
  if (!Number.isFinite(maxDiff)) throw new Error("cross-check: non-finite logprobs")
  return { maxDiff, tokens: n, meanLogprob: sum / n }
}

// ---- the benchmark --------------------------------------------------------------------------

const ratio = (a: number, b: number) => `${fmt(a / b, 2)}×`
const gflops = (tokensPerS: number, flopsPerToken: number) => (tokensPerS * flopsPerToken) / 1e9

/** One PyTorch's measurements. */
interface TorchRun {
  readonly runtime: Runtime
  readonly version: string
  readonly train: TorchTrain
  readonly samples: ReadonlyArray<TorchSample>
  readonly sample: Summary
}

/** Runs the benchmark: ORT matmul peak, training and sampling (ours, then each PyTorch's), the cross-check. */
export const run = async (options: ModelOptions): Promise<ModelResult> => {
  const quick = options.quick ?? process.env["POLARIS_BENCH_QUICK"] === "1"
  const s = quick ? QUICK : FULL
  const c = s.config
  const log = options.log
  const found = await Promise.all(RUNTIMES.map(async (runtime) => ({ runtime, found: await torchVersion(runtime.python) })))
  const runtimes = found.flatMap((f) => ("version" in f.found ? [{ runtime: f.runtime, version: f.found.version }] : []))
  const missing = found.flatMap((f) => ("missing" in f.found ? [`${f.runtime.name} (${f.runtime.python}: ${f.found.missing}; install: ${f.runtime.setup})`] : []))
  if (runtimes.length === 0) throw new Error(`the model benchmark needs PyTorch (see bench/torch/README.md); none found: ${missing.join("; ")}`)
  for (const m of missing) log(`model: not compared with ${m}`)
  log(`model: ${quick ? "QUICK (tiny config) " : ""}V=${c.vocabSize} d=${c.dModel} L=${c.nLayers} H=${c.nHeads} dFF=${c.dFF}, ${fmt(paramCount(c))} params; ${runtimes.map((r) => `${r.runtime.name} ${r.version}`).join(", ")}`)
  const dir = mkdtempSync(join(tmpdir(), "polaris-bench-model-"))
  try {
    const configPath = join(dir, "config.json")
    writeFileSync(configPath, JSON.stringify(c))

    const peak = await matmulPeak(s, log)
    const peakGflops = Math.max(...peak.map((p) => p.gflops))

    log(`model: polaris training, ${s.trainBatch} × ${s.trainSeq} tokens, ${s.trainWarmup} warm-up + ${s.trainSteps} steps`)
    const train = await trainOurs(s, log)
    log(`model: polaris sampling, ${s.sampleRows} rows × ${s.newTokens} new tokens, 1 warm-up + ${options.repeats} runs`)
    const sample = await sampleOurs(s, options.repeats, log)

    const torchRuns: Array<TorchRun> = []
    for (const { runtime, version } of runtimes) {
      log(`model: ${runtime.name} training`)
      const torchTrain = await torch<TorchTrain>(runtime.python, [
        "train", "--config", configPath, "--batch", String(s.trainBatch), "--seq", String(s.trainSeq),
        "--steps", String(s.trainSteps), "--warmup", String(s.trainWarmup), "--threads", String(THREADS)
      ])
      log(`model: ${runtime.name} training: ${fmt(torchTrain.tokens_per_s)} tokens/s, ${fmt(torchTrain.ms_per_step)} ms/step (blas ${torchTrain.blas.join(", ") || "none found"})`)
      const samples: Array<TorchSample> = []
      for (let i = 0; i < options.repeats; i++) {
        samples.push(await torch<TorchSample>(runtime.python, [
          "sample", "--config", configPath, "--batch", String(s.sampleRows), "--prompt-len", String(s.promptLen),
          "--new-tokens", String(s.newTokens), "--warmup", "1", "--threads", String(THREADS), "--seed", String(i)
        ]))
        log(`model: ${runtime.name} sampling run ${i + 1}/${options.repeats}: ${fmt(samples.at(-1)!.tokens_per_s)} tokens/s`)
      }
      torchRuns.push({ runtime, version, train: torchTrain, samples, sample: summarize(samples.map((t) => t.tokens_per_s)) })
    }

    log("model: cross-check against float64 torch")
    const check = await crossCheck(s, dir, configPath, runtimes[0]!.runtime.python)
    log(`model: cross-check: max |Δ logprob| ${check.maxDiff.toExponential(2)} over ${check.tokens} tokens`)

    const trainFlops = trainFlopsPerToken(c, s.trainSeq)
    const sampleFlops = sampleFlopsPerToken(c, s.promptLen, s.newTokens)
    const trainGflops = gflops(train.tokensPerS.median, trainFlops)
    const sampleGflops = gflops(sample.median, sampleFlops)
    const pct = (x: number) => `${fmt((100 * x) / peakGflops, 1)}%`
    // The last two path components (e.g. `openblas-pthread/libblas.so.3`) say which BLAS it is.
    const blasOf = (t: TorchRun) => {
      const blas = [...new Set([...t.train.blas, ...t.samples.flatMap((x) => x.blas)])]
      return blas.length > 0 ? blas.map((b) => `\`${b.split("/").slice(-2).join("/")}\``).join(", ") : "no separate BLAS library in its memory map"
    }
    const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`
    const met = (ours: number, theirs: number, target: number) => `${ratio(ours, theirs)} (target ${fmt(target, 1)}×: ${ours >= target * theirs ? "met" : "missed"})`

    const table = markdownTable(
      ["tokens/s, median (min–max)", "polaris (onnxruntime-node)", ...torchRuns.map((t) => `${t.runtime.name} ${t.version}`), ...torchRuns.map((t) => `polaris / ${t.runtime.name}`)],
      [
        [
          `training, tokens/s (${s.trainBatch} × ${s.trainSeq}, fwd+bwd+AdamW)`,
          fmtSummary(train.tokensPerS),
          ...torchRuns.map((t) => fmt(t.train.tokens_per_s)),
          ...torchRuns.map((t) => met(train.tokensPerS.median, t.train.tokens_per_s, t.runtime.target.train))
        ],
        [
          `sampling, tokens/s (batch ${s.sampleRows}, ${s.promptLen} + ${s.newTokens} tokens, KV cache)`,
          fmtSummary(sample),
          ...torchRuns.map((t) => fmtSummary(t.sample)),
          ...torchRuns.map((t) => met(sample.median, t.sample.median, t.runtime.target.sample))
        ],
        ["training, ms per step", fmtSummary(train.stepMs), ...torchRuns.map((t) => fmt(t.train.ms_per_step)), ...torchRuns.map(() => "")]
      ]
    )
    const flopsTable = markdownTable(
      ["achieved throughput", "FLOP per token", "GFLOP/s", "% of ORT matmul peak"],
      [
        ...peak.map((p) => [
          `onnxruntime MatMul ${p.n}×${p.n} (fp32, best of ${s.matmulRuns})${p.gflops === peakGflops ? " = peak" : ""}`,
          "",
          fmt(p.gflops, 1),
          pct(p.gflops)
        ]),
        ["polaris training (median step)", fmt(trainFlops), fmt(trainGflops, 1), pct(trainGflops)],
        ["polaris sampling (median run)", fmt(sampleFlops), fmt(sampleGflops, 1), pct(sampleGflops)],
        ...torchRuns.flatMap((t) => [
          [`${t.runtime.name} training (for context)`, fmt(trainFlops), fmt(gflops(t.train.tokens_per_s, trainFlops), 1), pct(gflops(t.train.tokens_per_s, trainFlops))],
          [`${t.runtime.name} sampling (for context, median run)`, fmt(sampleFlops), fmt(gflops(t.sample.median, sampleFlops), 1), pct(gflops(t.sample.median, sampleFlops))]
        ])
      ]
    )

    const markdown = [
      ...(quick ? ["**QUICK MODE (`POLARIS_BENCH_QUICK=1`): tiny config, numbers mean nothing.**", ""] : []),
      `The embedded story model (${plural(c.nLayers, "layer")}, d=${c.dModel}, ${c.nHeads} heads, dFF=${c.dFF}, vocabulary`,
      `${fmt(c.vocabSize)}, ${fmt(paramCount(c))} parameters) run by polaris through onnxruntime-node, against the same model`,
      `written in PyTorch (\`bench/torch/story_model.py\`, CPU) under ${torchRuns.map((t) => `${t.runtime.name} ${t.version} (\`${t.runtime.python.replace(`${ROOT}/`, "")}\`, BLAS: ${blasOf(t)})`).join(" and ")},`,
      `on the same machine in the same run, ${THREADS} threads each: for polaris training, onnxruntime intra-op threads; for polaris`,
      `sampling, the embedded engine's ${THREADS} sampling workers of one onnxruntime thread each, the rows split into one request per`,
      `worker; torch \`set_num_threads(${THREADS})\` with \`OPENBLAS_NUM_THREADS=${THREADS}\` and \`OMP_WAIT_POLICY=PASSIVE\`.${missing.length > 0 ? ` Not compared (not installed): ${missing.join("; ")}.` : ""}`,
      "Training is one step of next-token cross-entropy forward + backward and an AdamW update (polaris",
      `also clips the gradient norm to 1; torch does not) over ${s.trainBatch} random sequences of ${s.trainSeq} tokens:`,
      `${plural(s.trainWarmup, "warm-up step")}, then ${s.trainSteps} timed steps; polaris gives the median step with the range`,
      `(min–max), PyTorch its mean over the ${s.trainSteps} steps. Sampling generates exactly ${s.newTokens} tokens for each of`,
      `${s.sampleRows} distinct random ${s.promptLen}-token prompts (temperature 1, no stop token) with a key/value cache; tokens/s`,
      `is generated tokens over the whole call, prefill included, for both; polaris: one warm-up, then ${options.repeats} runs;`,
      `PyTorch: ${options.repeats} processes, each timing one run after an untimed warm-up run; median (min–max). Sampling`,
      "cost does not depend on the weight values, since every row runs to its full length.",
      "",
      table,
      "",
      "Targets (issue 19): against PyTorch 2, training at least 1.5× and sampling at least 2× as fast; against Debian's torch, at least as fast.",
      "",
      `How close each gets to onnxruntime's own fp32 MatMul peak on ${THREADS} threads ([N,N]×[N,N], 2N³ FLOP, best of`,
      `${s.matmulRuns} runs after 3 warm-ups). FLOP per token counts the matmuls: forward = 2·L·(4d² + 3·d·dFF) + 2·d·V + 4·L·d·T_att,`,
      `training = 3 × forward with T_att = ${s.trainSeq} (the training graph computes the full T×T scores), sampling = one forward with`,
      `T_att = ${s.promptLen} + ${s.newTokens}/2 (the mean attended length; the prompts' prefill is not counted).`,
      "",
      flopsTable,
      "",
      `**Cross-check:** per-token logprobs of polaris's float32 ONNX scoring graph and ${runtimes[0]!.runtime.name} in float64, same weights`,
      `(initialisation ×8, mean logprob ${fmt(check.meanLogprob, 2)}), ${check.tokens} tokens in ${s.checkLengths.length} random sequences`,
      `of ${s.checkLengths.join(", ")} tokens: max |difference| ${check.maxDiff.toExponential(2)}.`
    ].join("\n")
    return { markdown }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({ repeats: 3, log: (l) => console.log(l) })
  console.log(`\n${result.markdown}`)
}
