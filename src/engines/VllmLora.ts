/**
 * Setting vLLM servers up for runtime LoRA adapters: the settings a trainer's adapters need, how
 * polaris sees each one over HTTP at start-up, vLLM's messages when a load cannot succeed, and
 * the server setting that fixes each (`LORA_FIXES`). Used by VllmSampler.ts.
 *
 * Start-up checks, per server (`checkServers`), each failing at once, naming the server and the fix:
 * 1. `POST /v1/load_lora_adapter {}` answering 404: the LoRA routes are mounted only with
 *    `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` (vllm-project/vllm
 *    vllm/entrypoints/serve/lora/api_router.py@27873ca `attach_router`); when mounted, the empty
 *    body is refused as invalid (lora_name and lora_path are required,
 *    vllm/entrypoints/serve/lora/protocol.py@7fd1b43 `LoadLoRAAdapterRequest`).
 * 2. `GET /server_info?config_format=json`, mounted with `VLLM_SERVER_DEV_MODE=1`
 *    (vllm/entrypoints/serve/instrumentator/server_info.py@4652ef5: `vllm_config` as JSON):
 *    `lora_config` null (no `--enable-lora`), `lora_config.max_lora_rank` below the rank,
 *    `model_config.logprobs_mode` other than `processed_logprobs`. Without dev mode nothing over
 *    HTTP shows the logprobs mode, and a warning says so.
 * 3. With `probeDir`: a probe adapter, an adapter_config.json with `r` = the rank and no tensors,
 *    is loaded from a temporary folder there. vLLM resolves an absolute path as is
 *    (vllm/lora/utils.py@0fd1570 `get_adapter_absolute_path`), reads the config ("No adapter found"
 *    when it cannot: the host does not see the folder), checks the rank before any tensor
 *    (vllm/lora/peft_helper.py@e745baf `validate_legal`: "LoRA rank R is greater than
 *    max_lora_rank M."), then looks for the tensors ("<dir> doesn't contain tensors",
 *    vllm/lora/lora_model.py@532cc25): that last answer is the expected one. Without
 *    `--enable-lora` the model runner answers "LoRA is not enabled.".
 * 4. With `uris`: a `tinker://` probe path; "No adapter found" means the server cannot load the
 *    trainer's URIs (every real vLLM: a URI is neither an absolute path nor a Hub repo id).
 *
 * Status codes: vLLM ≤ 0.10 answers a failed load with 400 (404 for "No adapter found",
 * vllm/entrypoints/openai/serving_models.py@075e9ba), newer versions with 500 (404 for
 * "No adapter found", vllm/frontend/entrypoints/openai/models/serving.py@055e47c); so the
 * message, not the status, says whether retrying can help.
 *
 * @example
 * yield* VllmLora.checkServers([{ url, send }], { rank: 32, probeDir: "/shared/adapters" }, settings)
 * VllmLora.loraFailure("LoRA rank 32 is greater than max_lora_rank 16.", { rank: 32, path })
 * // "start vLLM with --max-lora-rank 32 (at least policy.lora_rank 32; ...)"
 */
import { randomBytes } from "node:crypto"
import { mkdir, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { type Duration, Effect, type Schedule } from "effect"
import * as Retry from "../dag/Retry.ts"
import { classifyStatus, type LlmError } from "./llm/Remote.ts"
import * as Wire from "./openai/Wire.ts"
import { PolicyError } from "./PolicyEngine.ts"

/** vLLM's accepted `--max-lora-rank` values (vllm-project/vllm vllm/config/lora.py@a78dc92 `MaxLoRARanks`; default 16). */
export const MAX_LORA_RANKS = [1, 8, 16, 32, 64, 128, 256, 320, 512] as const

/** The smallest `--max-lora-rank` vLLM accepts that holds `rank`. */
export const maxLoraRankFor = (rank: number): number => MAX_LORA_RANKS.find((r) => r >= rank) ?? rank

/** The server setting each start-up check or load failure calls for. */
export const LORA_FIXES = {
  runtimeUpdating: "start vLLM with the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (without it POST /v1/load_lora_adapter is not mounted)",
  enableLora: "start vLLM with --enable-lora",
  rank: (rank: number) =>
    `start vLLM with --max-lora-rank ${maxLoraRankFor(rank)} (at least policy.lora_rank ${rank}; vLLM's default is 16; accepted: ${MAX_LORA_RANKS.join(", ")})`,
  logprobsMode:
    "start vLLM with --logprobs-mode processed_logprobs, so sampler logprobs are those of the distribution sampled from (after temperature, top-p, top-k), as the importance ratio assumes; the default raw_logprobs are taken before them",
  storage: (dir: string) =>
    `the server cannot read ${dir}: policy.adapter_dir must be a folder every vLLM host reads at the same path (a shared mount)`,
  uris:
    "vLLM reads lora_path as a local folder or a Hugging Face repo id: set policy.adapter_dir to a folder every vLLM host reads at the same path, and polaris downloads each Tinker sampler checkpoint's archive and writes it there as a PEFT adapter"
} as const

/**
 * vLLM's messages for a LoRA load that cannot succeed by retrying, and the fix of each
 * (vllm/lora/peft_helper.py@e745baf, vllm/lora/worker_manager.py, vllm/lora/lora_model.py@532cc25,
 * the model runners' "LoRA is not enabled."). Retrying these would only repeat them.
 */
const LOAD_FAILURES: ReadonlyArray<{ readonly pattern: RegExp; readonly fix: (ctx: { rank: number; path: string }, message: string) => string }> = [
  { pattern: /max_lora_rank/, fix: ({ rank }, message) => LORA_FIXES.rank(Number(/LoRA rank (\d+)/.exec(message)?.[1] ?? rank)) },
  { pattern: /LoRA is not enabled/i, fix: () => LORA_FIXES.enableLora },
  { pattern: /No adapter found/, fix: ({ path }) => (URI.test(path) ? LORA_FIXES.uris : LORA_FIXES.storage(path)) },
  { pattern: /doesn't contain tensors|expected target modules|is unsupported LoRA weight/, fix: () => "the adapter folder is not one vLLM can load for this model (see engines/tinker/Archive.ts)" }
]

/** The permanent LoRA failure `message` describes, with its fix, if it is one. */
export const loraFailure = (message: string, ctx: { rank: number; path: string }): string | undefined => {
  const known = LOAD_FAILURES.find((f) => f.pattern.test(message))
  return known === undefined ? undefined : known.fix(ctx, message)
}

/** FastAPI's answer for a route that is not mounted. */
export const isUnmounted = (status: number, text: string) => status === 404 && /^\s*\{\s*"detail"\s*:\s*"Not Found"\s*\}\s*$/.test(text)

/** `scheme://…`: a URI, which vLLM cannot load as an adapter. */
export const URI = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * The LoRA and logprobs settings in a `/server_info?config_format=json` body (`vllm_config` is
 * the VllmConfig as JSON: `lora_config` null without `--enable-lora`, else `max_lora_rank`;
 * `model_config.logprobs_mode`). Undefined when the body is not that.
 */
export const engineConfig = (
  text: string
): { readonly lora: null | undefined | { readonly maxRank: number | undefined }; readonly logprobsMode: string | undefined } | undefined => {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return undefined
  }
  const config = (body as { vllm_config?: unknown } | null)?.vllm_config
  if (typeof config !== "object" || config === null) return undefined
  const { lora_config: lora, model_config: model } = config as { lora_config?: unknown; model_config?: unknown }
  const mode = typeof model === "object" && model !== null ? (model as { logprobs_mode?: unknown }).logprobs_mode : undefined
  const maxRank = typeof lora === "object" && lora !== null ? (lora as { max_lora_rank?: unknown }).max_lora_rank : undefined
  return {
    lora: lora === null ? null : typeof lora === "object" ? { maxRank: typeof maxRank === "number" ? maxRank : undefined } : undefined,
    logprobsMode: typeof mode === "string" ? mode : undefined
  }
}

/** A LoRA set-up failure that retrying cannot fix: the server, what it said, and the fix. */
export const misconfigured = (url: string, what: string, fix: string): PolicyError =>
  new PolicyError({ reason: "Backend", retryable: false, message: `vllm @ ${url}: ${what}; ${fix}` })

/** One HTTP exchange's outcome. */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly text: string
}

/** A server to check: its URL and how to send it one request (time-limited; transport errors as LlmError). */
export interface CheckedServer {
  readonly url: string
  readonly send: (method: "GET" | "POST", path: string, body: unknown, limit: Duration.Duration) => Effect.Effect<Answer, LlmError>
}

/** What the adapters need of the servers. */
export interface Requirements {
  /** The adapters' LoRA rank (policy.lora_rank). */
  readonly rank: number
  /** The folder adapters are written to; every server must read it at the same path. */
  readonly probeDir?: string
  /** The trainer's `tinker://` paths are loaded as they are (a server that resolves them). */
  readonly uris?: boolean
}

const toPolicy = (e: LlmError | PolicyError): PolicyError =>
  e instanceof PolicyError
    ? e
    : new PolicyError({ reason: e.retryable ? "Unavailable" : "Backend", retryable: e.retryable, message: `${e.origin}: ${e.reason}: ${e.message}`, cause: e })

/** The start-up checks of the module doc, on every server at once; the probe folder is always removed. */
export const checkServers = (
  servers: ReadonlyArray<CheckedServer>,
  options: Requirements,
  settings: { readonly timeout: Duration.Duration; readonly healthTimeout: Duration.Duration; readonly schedule: Schedule.Schedule<unknown, unknown> }
): Effect.Effect<void, PolicyError> =>
  Effect.gen(function*() {
    const { rank, probeDir } = options
    const { timeout, healthTimeout, schedule } = settings
    const unseen: Array<string> = []
    const probe = probeDir === undefined ? undefined : { name: `polaris-probe-${randomBytes(6).toString("hex")}`, dir: join(probeDir, `.polaris-probe-${randomBytes(6).toString("hex")}`) }
    const writeProbe = probe === undefined
      ? Effect.void
      : Effect.tryPromise({
        try: async () => {
          await mkdir(probe.dir, { recursive: true })
          await writeFile(join(probe.dir, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: rank, lora_alpha: rank, target_modules: ["q_proj"], bias: "none" }))
        },
        catch: (e) => new PolicyError({ reason: "BadInput", retryable: false, message: `vllm: cannot write a probe adapter under policy.adapter_dir ${probeDir}: ${(e as Error).message}` })
      })
    const removeProbe = probe === undefined ? Effect.void : Effect.promise(() => rm(probe.dir, { recursive: true, force: true }))
    const check = (server: CheckedServer) =>
      Effect.gen(function*() {
        // 1. The runtime LoRA routes exist (an empty body, deliberately not a LoadLoraAdapterRequest:
        //    vLLM answers 400/422 when mounted).
        const routes = yield* Retry.transient(server.send("POST", "/v1/load_lora_adapter", {}, healthTimeout), schedule)
        if (routes.status === 404) return yield* Effect.fail(misconfigured(server.url, "POST /v1/load_lora_adapter is not mounted (404)", LORA_FIXES.runtimeUpdating))
        // 2. The engine config, where the server shows it (dev mode).
        const info = yield* Effect.result(server.send("GET", "/server_info?config_format=json", undefined, healthTimeout))
        const config = info._tag === "Success" && info.success.status === 200 ? engineConfig(info.success.text) : undefined
        if (config === undefined) unseen.push(server.url)
        else {
          if (config.lora === null) return yield* Effect.fail(misconfigured(server.url, "LoRA is not enabled (/server_info: lora_config is null)", LORA_FIXES.enableLora))
          if (config.lora !== undefined && config.lora.maxRank !== undefined && config.lora.maxRank < rank) {
            return yield* Effect.fail(misconfigured(server.url, `--max-lora-rank is ${config.lora.maxRank} (/server_info), below the adapters' rank ${rank}`, LORA_FIXES.rank(rank)))
          }
          if (config.logprobsMode !== undefined && config.logprobsMode !== "processed_logprobs") {
            return yield* Effect.fail(misconfigured(server.url, `--logprobs-mode is ${config.logprobsMode} (/server_info)`, LORA_FIXES.logprobsMode))
          }
        }
        // 3. A probe adapter from the adapter folder: readable there, rank accepted.
        if (probe !== undefined) {
          const origin = `vllm /v1/load_lora_adapter @ ${server.url}`
          const load: typeof Wire.LoadLoraAdapterRequest.Encoded = { lora_name: probe.name, lora_path: probe.dir }
          const answer = yield* Retry.transient(server.send("POST", "/v1/load_lora_adapter", load, timeout), schedule)
          if (answer.status >= 200 && answer.status < 300) {
            yield* Effect.ignore(server.send("POST", "/v1/unload_lora_adapter", { lora_name: probe.name } satisfies typeof Wire.UnloadLoraAdapterRequest.Encoded, healthTimeout))
            return
          }
          const message = classifyStatus(origin, answer.status, answer.headers, answer.text, Wire.errorMessage).message
          if (/doesn't contain tensors/.test(message)) return // read the config, accepted the rank, found no tensors: as meant
          const fix = loraFailure(message, { rank, path: probe.dir })
          if (fix !== undefined) return yield* Effect.fail(misconfigured(server.url, `a probe adapter of rank ${rank} in ${probeDir}: ${message}`, fix))
          yield* Effect.logWarning(`vllm @ ${server.url}: unexpected answer to a probe adapter in ${probeDir} (${message}); continuing`)
        }
        // 4. The trainer's URIs, when they are to be loaded as they are.
        if (options.uris === true) {
          const origin = `vllm /v1/load_lora_adapter @ ${server.url}`
          const name = `polaris-probe-${randomBytes(6).toString("hex")}`
          const uri = `tinker://polaris-probe/sampler_weights/${name}`
          const load: typeof Wire.LoadLoraAdapterRequest.Encoded = { lora_name: name, lora_path: uri }
          const answer = yield* Retry.transient(server.send("POST", "/v1/load_lora_adapter", load, timeout), schedule)
          if (answer.status >= 200 && answer.status < 300) {
            yield* Effect.ignore(server.send("POST", "/v1/unload_lora_adapter", { lora_name: name } satisfies typeof Wire.UnloadLoraAdapterRequest.Encoded, healthTimeout))
          } else {
            const message = classifyStatus(origin, answer.status, answer.headers, answer.text, Wire.errorMessage).message
            if (/No adapter found/.test(message)) {
              return yield* Effect.fail(misconfigured(server.url, `it cannot load a tinker:// checkpoint (${message})`, LORA_FIXES.uris))
            }
          }
        }
      }).pipe(Effect.mapError(toPolicy))
    yield* Effect.andThen(writeProbe, Effect.forEach(servers, check, { concurrency: "unbounded", discard: true })).pipe(Effect.ensuring(removeProbe))
    if (unseen.length > 0) {
      yield* Effect.logWarning(
        `vllm: cannot see --logprobs-mode on ${unseen.join(", ")} (GET /server_info needs VLLM_SERVER_DEV_MODE=1); make sure the servers run with --logprobs-mode processed_logprobs`
      )
    }
  })
