/**
 * The recipe: a YAML file that selects a pipeline and fills its parameters, engines, retries
 * and concurrency. This Schema is the contract; `polaris schema` exports it as JSON Schema for
 * editors, and every recipe is validated against it with errors at `file:line:col`.
 *
 * Keys are snake_case, as in the paper's and TRL's configs. Every section but `pipeline` is
 * optional here; a pipeline checks that the sections it needs are present.
 */
import { Schema } from "effect"

const doc = <S extends Schema.Top>(schema: S, description: string): S => schema.annotate({ description }) as S

const Int = Schema.Int
const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Probability = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))

/** A secret: written as `${ENV_VAR}` in the recipe, held as a Redacted value, never stored. */
export const Secret = doc(Schema.Redacted(Schema.String), "A secret; write it as ${ENV_VAR}, never inline")

const field = <S extends Schema.Top>(schema: S, description: string) => Schema.optionalKey(doc(schema, description))

/** Which documents feed the dataset and how prompts are derived from them. */
export const Data = Schema.Struct({
  anthologies: field(Schema.Array(Schema.String), "Anthology files or folders (Gutenberg .txt, one-story-per-file folders, .jsonl, .epub)"),
  min_words: field(PositiveInt, "Drop stories shorter than this"),
  max_words: field(PositiveInt, "Drop stories longer than this"),
  heldout_fraction: field(Probability, "Share of stories held out for evaluation, chosen by id hash"),
  prompt: field(Schema.Struct({
    mode: field(Schema.Literals(["full", "excerpt"]), "full: the whole story; excerpt: its opening, cut at a paragraph boundary"),
    round_to: field(PositiveInt, "Requested words are rounded to this step"),
    max_words: field(PositiveInt, "excerpt mode: the longest reference, cut at a paragraph boundary")
  }), "Prompt derivation"),
  writer: field(Schema.Struct({
    backend: doc(Schema.Literals(["extractive", "gemini", "openai"]), "Who writes premises"),
    model: field(Schema.String, "Model name for an LLM writer"),
    base_url: field(Schema.String, "Endpoint of an OpenAI-compatible writer"),
    api_key: field(Secret, "API key"),
    price_per_million: field(Schema.Struct({ input: NonNegative, output: NonNegative }), "USD per million tokens, for plans, budgets and the ledger")
  }), "Premise writer"),
  buckets: field(Schema.Struct({
    edges: doc(Schema.Array(NonNegative), "Requested-word bucket edges, increasing"),
    weights: field(Schema.Array(NonNegative), "Sampling weight per bucket")
  }), "Length-stratified sampling")
})

/** The policy engine: where sampling and updates run. */
export const Policy = Schema.Struct({
  backend: doc(Schema.Literals(["embedded", "tinker", "vllm", "simulated"]), "embedded: the small onnxruntime model; tinker: a Tinker-compatible service; vllm: sampling on vLLM; simulated: paper-scale GPU time emulated (docs/engines.md)"),
  model: doc(Schema.String, "Model: a local model directory, or the served model name"),
  base_url: field(Schema.String, "Tinker-compatible service URL"),
  sampler_urls: field(Schema.Array(Schema.String), "vLLM server URLs, load-balanced"),
  api_key: field(Secret, "API key"),
  lora_rank: field(PositiveInt, "LoRA rank on remote trainers"),
  price_per_million: field(Schema.Struct({ prefill: NonNegative, sample: NonNegative, train: NonNegative }), "Remote engines: USD per million tokens of prompt (prefill), of sampled output and of training, for plans and budgets"),
  tokenizer: field(Schema.String, "Remote engines: a folder with the model's tokenizer.json (+ tokenizer_config.json), or a Hugging Face model id in the local cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)"),
  adapter_dir: field(Schema.String, "vllm with a trainer: a folder every vLLM host reads at the same path; each Tinker sampler checkpoint is downloaded and written there as a PEFT adapter for /v1/load_lora_adapter"),
  flavour: field(Schema.Literals(["hosted", "skyrl"]), "tinker: hosted Tinker or self-hosted SkyRL tx (loss normalisation differs; see docs/engines.md)"),
  max_context: field(PositiveInt, "vllm without base_url: the served model's context length (default 32768)"),
  // simulated backend (issue 16 point 5)
  time_scale: field(NonNegative, "simulated: real seconds per simulated second (0.001: 1000x faster than the paper's GPUs; default 1)")
})

/** Sampling settings for rollouts; never left to server defaults. */
export const Sampling = Schema.Struct({
  temperature: field(NonNegative, "Sampling temperature"),
  top_p: field(Probability, "Nucleus sampling mass"),
  top_k: field(Int, "Top-k (0 or -1: off)"),
  repetition_penalty: field(NonNegative, "Repetition penalty (1.0: off); not with presence_penalty"),
  presence_penalty: field(Schema.Finite, "Presence penalty (0: off); not with repetition_penalty"),
  max_tokens: field(PositiveInt, "Most new tokens per rollout"),
  thinking: field(Schema.Boolean, "Enable the chat template's thinking mode")
})

/** Pretraining the embedded story model from scratch (the `pretrain` pipeline). */
export const Pretrain = Schema.Struct({
  model: field(Schema.Struct({
    d_model: field(PositiveInt, "Residual width"),
    n_layers: field(PositiveInt, "Transformer blocks"),
    n_heads: field(PositiveInt, "Attention heads (d_model must divide evenly)"),
    d_ff: field(PositiveInt, "SwiGLU hidden width"),
    max_context: field(PositiveInt, "Longest sequence the model accepts (RoPE positions)")
  }), "Architecture"),
  vocab_size: field(PositiveInt, "Byte-level BPE vocabulary size"),
  seq_len: field(PositiveInt, "Tokens per training window"),
  batch_size: field(PositiveInt, "Windows per step"),
  steps: field(PositiveInt, "Optimizer steps"),
  segment_steps: field(PositiveInt, "Steps per cached segment: a crash loses at most one segment"),
  learning_rate: field(NonNegative, "Peak learning rate"),
  warmup_steps: field(Int, "Linear warmup steps"),
  min_lr_ratio: field(Probability, "Cosine decay floor, as a fraction of the peak"),
  weight_decay: field(NonNegative, "AdamW decoupled weight decay (not on norm gains)"),
  grad_clip: field(NonNegative, "Global gradient-norm clip (0: off)"),
  chat_max_words: field(PositiveInt, "Chat examples: story openings of up to 1/4, 1/2 and all of this many words after their prompt"),
  output: field(Schema.String, "Folder the trained checkpoint is written to")
})

/** The judge: who scores stories, on which rubric, at what rate and price. */
export const Judge = Schema.Struct({
  backend: doc(Schema.Literals(["proxy", "gemini", "openai", "simulated"]), "proxy: measurable text statistics, no network; simulated: Gemini's latency and rate limit with made-up scores (docs/engines.md)"),
  model: field(Schema.String, "Judge model"),
  rubric: field(Schema.String, "Rubric id or YAML file"),
  base_url: field(Schema.String, "OpenAI-compatible endpoint"),
  api_key: field(Secret, "API key"),
  temperature: field(NonNegative, "Judge temperature"),
  thinking_level: field(Schema.String, "Judge thinking level"),
  requests_per_minute: field(PositiveInt, "Rate limit: requests per minute"),
  tokens_per_minute: field(PositiveInt, "Rate limit: tokens per minute"),
  max_in_flight: field(PositiveInt, "Most judge calls in flight"),
  price_per_million: field(Schema.Struct({ input: NonNegative, output: NonNegative }), "USD per million tokens, for cost accounting"),
  expected_output_tokens: field(PositiveInt, "Tokens a verdict is expected to produce (default 2000): the tokens/min limiter's and the budget's estimate before the real count is known"),
  samples: field(PositiveInt, "Judgements per story, averaged (1 online; 2-3 for evaluation)"),
  timeout_s: field(PositiveInt, "Time limit of one judge call, seconds (default 120)"),
  attempts: field(PositiveInt, "Attempts per judgement before it is recorded unscorable (default 6)"),
  batch: field(Schema.Boolean, "gemini: submit through the Batch API (evaluation only: half price, results in hours)"),
  batch_poll_s: field(Schema.Finite.check(Schema.isGreaterThan(0)), "gemini batch: seconds between polls of a running job (default 30)"),
  // simulated backend (issue 16 point 5)
  time_scale: field(NonNegative, "simulated: real seconds per simulated second (default 1)")
})

/** How rewards are made from judge scores and lengths. */
export const Reward = Schema.Struct({
  length_factor: field(Schema.Literals(["longwriter", "none"]), "Length factor L in r = Q_norm * L"),
  reference: field(Schema.Struct({
    mode: doc(Schema.Literals(["judge", "fixed", "max_of_group_plus"]), "Reward of the injected human reference"),
    value: field(Schema.Finite, "The fixed reward, or the margin over the group's best")
  }), "Reference reward")
})

/** GRPO with human-reference injection (ARCHITECTURE.md §7). */
export const Grpo = Schema.Struct({
  steps: field(PositiveInt, "Training steps"),
  groups_per_step: field(PositiveInt, "Prompts (groups) per step"),
  group_size: field(Schema.Int.check(Schema.isGreaterThanOrEqualTo(2)), "Members per group: group_size - 1 rollouts + 1 reference"),
  loss_type: field(Schema.Literals(["grpo", "bnpo", "dapo", "dr_grpo"]), "Token-loss aggregation, as TRL defines it"),
  scale_rewards: field(Schema.Literals(["group", "batch", "none"]), "Advantage scaling"),
  reference_in_stats: field(Schema.Boolean, "Count the reference in group mean/std"),
  reference_loss: field(Schema.Literals(["on_policy", "luffy", "sft"]), "Token loss of the reference"),
  luffy_gamma: field(Schema.Finite.check(Schema.isGreaterThan(0)), "gamma of f(p) = p / (p + gamma)"),
  epsilon_low: field(NonNegative, "PPO clip, low side"),
  epsilon_high: field(NonNegative, "PPO clip, high side"),
  beta: field(NonNegative, "KL (k3) coefficient to the initial policy"),
  learning_rate: field(Schema.Finite.check(Schema.isGreaterThan(0)), "AdamW learning rate"),
  weight_decay: field(NonNegative, "AdamW weight decay"),
  max_grad_norm: field(Schema.Finite.check(Schema.isGreaterThan(0)), "Gradient clipping"),
  inner_iterations: field(PositiveInt, "Optimizer passes per step"),
  mismatch_correction: field(Schema.Literals(["none", "token", "sequence_geometric"]), "Sampler/trainer mismatch correction"),
  off_policy_steps: field(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)), "Steps the sampling policy lags the trained one (default 0: synchronous)"),
  truncated: field(Schema.Literals(["mask", "penalize", "keep"]), "What to do with truncated completions")
})

/** Evaluation by requested length. */
export const Eval = Schema.Struct({
  buckets: field(Schema.Array(Schema.Struct({
    name: Schema.String,
    min_words: NonNegative,
    max_words: NonNegative
  })), "Requested-length buckets (paper: 1-4k, 4-8k, 8-12k)"),
  prompts_per_bucket: field(PositiveInt, "Held-out prompts per bucket"),
  samples: field(PositiveInt, "Stories per prompt and system (default 2)"),
  pairwise: field(Schema.Boolean, "Dual-position pairwise judging of the systems (default true)"),
  pairs: field(Schema.Literals(["baseline", "all"]), "Which systems meet: each against the baseline (default), or every pair"),
  bootstrap: field(PositiveInt, "Bootstrap resamples for CIs (default 1000)"),
  systems: field(Schema.Array(Schema.Struct({
    name: doc(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9][\w.-]*$/)), "Name in tables and node ids (letters, digits, '.', '_', '-')"),
    policy: doc(Policy, "The engine and model that writes this system's stories")
  })), "eval-length: the models under test"),
  baseline: field(Schema.String, "eval-length: the system every rating is anchored on (default the first)"),
  checkpoints: field(Schema.Array(PositiveInt), "polaris: training steps whose checkpoints are evaluated too, besides the initial and the final policy")
})

/** Retry policy of one resource class. */
export const RetryPolicy = Schema.Struct({
  attempts: field(PositiveInt, "Total attempts, the first included"),
  base_ms: field(NonNegative, "First back-off delay"),
  cap_ms: field(NonNegative, "Longest back-off delay")
})

/** A custom stage from a TypeScript file, inserted after a node of the pipeline. */
export const CustomStage = Schema.Struct({
  uses: doc(Schema.String.check(Schema.isPattern(/^[^#]+\.ts#[A-Za-z_$][\w$]*$/)), "FILE.ts#exportName, relative to the recipe"),
  after: doc(Schema.String, "Node id it follows; it takes that node's output and feeds that node's consumers"),
  id: field(Schema.String, "Node id (default: the export name)"),
  params: field(Schema.Record(Schema.String, Schema.Unknown), "The stage's params")
})

/**
 * Where a run's metrics go besides `metrics.jsonl`, by tracker name (src/tracking/Trackers.ts).
 * Not part of any cache key: adding or moving a tracker re-runs nothing.
 */
export const Trackers = Schema.Struct({
  tensorboard: field(Schema.Struct({
    dir: doc(Schema.String, "Log directory, relative to the recipe; each run writes event files under <dir>/<run id>/ (view: tensorboard --logdir <dir>)")
  }), "TensorBoard event files (scalars), written as nodes finish")
})

/** A whole recipe. */
/** The variants `polaris sweep` runs: a grid (every combination) and/or a list. */
export const Sweep = Schema.Struct({
  grid: field(Schema.Record(Schema.String, Schema.Array(Schema.Unknown).check(Schema.isMinLength(1))), "Dotted recipe keys (as for --set) and the values each takes; every combination is a variant"),
  variants: field(Schema.Array(Schema.Record(Schema.String, Schema.Unknown)), "Further variants, each a map of dotted recipe keys to values"),
  concurrency: field(PositiveInt, "Variants run at once (default: all); the engines' limits hold across the whole sweep either way")
})
export type Sweep = typeof Sweep.Type

const EqBenchSection = Schema.Struct({
  dir: field(Schema.String, "A copy of EQ-Bench Creative Writing v3's data/ folder (github.com/EQ-bench/creative-writing-bench), relative to the recipe"),
  iterations: field(PositiveInt, "Iterations per prompt, each with the next seed modifier (the benchmark: 3)"),
  prompts: field(PositiveInt, "Only the first N prompts (default all 32)"),
  max_tokens: field(PositiveInt, "Most tokens per response (default 4096)"),
  temperature: field(Schema.Number, "Sampling temperature (the benchmark: 0.7)")
})

const Audit = Schema.Struct({
  stories: field(PositiveInt, "Held-out human stories to audit the judge on (default 12)"),
  samples: field(PositiveInt, "Verdicts per story version, for test-retest noise (default 3)"),
  second_judge: field(Judge, "A second judge on the same stories: their agreement (rank correlation)")
})

const Alarms = Schema.Struct({
  reward_length_corr: field(Schema.Number, "Trips when the Pearson correlation of reward with story length exceeds this (e.g. 0.5)"),
  best_vs_reference: field(Schema.Number, "Trips when the best rollout's reward exceeds the human reference's by more than this, on average over groups"),
  zero_spread: field(Schema.Number, "Trips when more than this share of groups have all-equal rewards"),
  unscorable_rate: field(Schema.Number, "Trips when more than this share of the step's stories are unscorable"),
  length_ratio_drift: field(Schema.Number, "Trips when the mean length ratio (words / requested) moved by more than this since the first step"),
  stop: field(Schema.Boolean, "A tripped alarm stops the run before the step trains (resumable); default false: warn only")
})

export const Recipe = Schema.Struct({
  $schema: field(Schema.String, "JSON Schema of recipes (for editors)"),
  extends: field(Schema.String, "A recipe this one builds on (deep merge; lists replaced)"),
  pipeline: doc(Schema.String, "A built-in pipeline name, or a path to a .ts pipeline file"),
  seed: field(Int, "Seed of all randomness"),
  store: field(Schema.String, "Artifact store directory (default .polaris)"),
  data: field(Data, "Dataset"),
  policy: field(Policy, "Policy engine"),
  pretrain: field(Pretrain, "Pretraining of the embedded model"),
  sampling: field(Sampling, "Rollout sampling"),
  judge: field(Judge, "Judge"),
  reward: field(Reward, "Reward"),
  grpo: field(Grpo, "GRPO"),
  eval: field(Eval, "Evaluation"),
  retries: field(Schema.Record(Schema.String, RetryPolicy), "Retry policy per resource class (cpu, policy, judge...)"),
  concurrency: field(Schema.Record(Schema.String, PositiveInt), "Most nodes in flight per resource class"),
  stages: field(Schema.Array(CustomStage), "Custom stages inserted into the pipeline"),
  trackers: field(Trackers, "Metric trackers the run also writes to (docs/tracking.md)"),
  params: field(Schema.Record(Schema.String, Schema.Unknown), "Free-form parameters for a user pipeline"),
  sweep: field(Sweep, "Variants for `polaris sweep` (`polaris run` ignores this)"),
  budget: field(Schema.Struct({ usd: NonNegative }), "A cap on what the run's paid calls cost (judge, priced remote policy); the run stops cleanly before a call that would pass it"),
  eqbench: field(EqBenchSection, "EQ-Bench Creative Writing v3 (pipeline eqbench): where its files are, iterations, length"),
  audit: field(Audit, "The judge audit (pipeline judge-audit): how many stories, verdicts per story, an optional second judge"),
  alarms: field(Alarms, "Reward-hacking alarms per training step: a threshold per alarm (docs/evaluation.md); a tripped one is shown live, in the summary and the report")
})
export type Recipe = typeof Recipe.Type
