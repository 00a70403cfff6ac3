/**
 * A Tinker checkpoint's archive: where the service keeps it, its files, and the sampler
 * weights as a PEFT adapter folder that vLLM servers can load (vLLM reads `lora_path` as a local
 * folder or a Hugging Face repo id, never a `tinker://` URI).
 *
 * Wire (thinking-machines-lab/tinker@d595dc2):
 * - `tinker://<training_run_id>/<weights|sampler_weights>/<name>` parses into the run id and the
 *   checkpoint id `sampler_weights/<name>` (src/tinker/types/checkpoint.py
 *   `ParsedCheckpointTinkerPath.from_tinker_path`: exactly three parts).
 * - `GET /api/v1/training_runs/{run}/checkpoints/{checkpoint_id}/archive` with
 *   `Accept: application/json`, redirects not followed: a **302** whose `Location` is a signed
 *   download URL (valid until `Expires`, 15 minutes when absent), or a **200**
 *   `{"url", "expires"}`; a 503 while the archive is being built is retried (the SDK: 6 tries,
 *   30 s apart) (src/tinker/resources/weights.py `get_checkpoint_archive_url`,
 *   src/tinker/types/checkpoint_archive_url_response.py).
 * - The signed URL is fetched with a plain GET (no API key): a tar holding
 *   `adapter_config.json`, `adapter_model.safetensors` and `checkpoint_complete`
 *   (src/tinker/cli/commands/checkpoint.py: `_download_checkpoint_archive`, `_safe_extract_tar`
 *   and the checks after it).
 *
 * @example
 * const folder = yield* Archive.toPeftFolder(
 *   { baseUrl, apiKey, adapterDir: "/shared/polaris-adapters", base },
 *   "tinker://run-1/sampler_weights/sampler-3"
 * ) // "/shared/polaris-adapters/run-1/sampler-3", with adapter_config.json + adapter_model.safetensors
 */
import { existsSync } from "node:fs"
import { mkdir } from "node:fs/promises"
import { dirname, join, posix } from "node:path"
import { Duration, Effect, Redacted } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import * as PeftAdapter from "../../model/PeftAdapter.ts"
import { attempts, classifyStatus, LlmError, trimSlash, type RemoteOptions } from "../llm/Remote.ts"
import { PolicyError } from "../PolicyEngine.ts"
import { TarError, untar } from "./internal/tar.ts"

/** A parsed `tinker://` checkpoint path. */
export interface CheckpointPath {
  readonly tinkerPath: string
  readonly trainingRunId: string
  readonly checkpointType: "training" | "sampler"
  /** `sampler_weights/<name>` or `weights/<name>`, as the archive route takes it. */
  readonly checkpointId: string
  readonly name: string
}

/** `tinker://<run>/<weights|sampler_weights>/<name>`, or undefined (the SDK's rule). */
export const parsePath = (path: string): CheckpointPath | undefined => {
  if (!path.startsWith("tinker://")) return undefined
  const parts = path.slice("tinker://".length).split("/")
  if (parts.length !== 3 || parts.some((p) => p === "")) return undefined
  const [run, kind, name] = parts as [string, string, string]
  if (kind !== "weights" && kind !== "sampler_weights") return undefined
  return { tinkerPath: path, trainingRunId: run, checkpointType: kind === "weights" ? "training" : "sampler", checkpointId: `${kind}/${name}`, name }
}

export interface ArchiveOptions extends RemoteOptions {
  /** The service root; requests go to `${baseUrl}/api/v1/...`. */
  readonly baseUrl: string
  /** Sent as `X-API-Key` to the service (never to the signed download URL). */
  readonly apiKey?: Redacted.Redacted<string>
  /** Time limit of the archive download (default 30 minutes). */
  readonly downloadTimeout?: Duration.Input
}

/** Attempts of the archive-URL call: 503 while the archive is built is retried 30 s apart, 6 tries (as the SDK). */
const URL_BACKOFF = { base: "30 seconds", factor: 1, cap: "30 seconds", attempts: 6, jitter: false } as const

const fail = (message: string, retryable = false, cause?: unknown) =>
  new PolicyError({ reason: "Checkpoint", message, retryable, ...(cause !== undefined ? { cause } : {}) })

const toPolicy = (what: string) => (e: LlmError | PolicyError): PolicyError =>
  e instanceof PolicyError ? e : new PolicyError({ reason: e.retryable ? "Unavailable" : "Checkpoint", message: `${what}: ${e.origin}: ${e.message}`, retryable: e.retryable, cause: e })

/** A URL for messages: no query string (a signed URL's query is its credential). */
const withoutQuery = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return url.split("?")[0] ?? url
  }
}

const segment = (s: string) => encodeURIComponent(s).replace(/%3A/gi, ":")

/** The signed URL of a checkpoint's archive (and when it expires, if the service said). */
export const archiveUrl = (options: ArchiveOptions, path: CheckpointPath): Effect.Effect<{ readonly url: string; readonly expires?: string }, PolicyError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const url = `${trimSlash(options.baseUrl)}/api/v1/training_runs/${segment(path.trainingRunId)}/checkpoints/${path.checkpointId.split("/").map(segment).join("/")}/archive`
    const origin = `GET ${url}`
    const headers: Record<string, string> = {
      accept: "application/json",
      ...(options.apiKey !== undefined ? { "x-api-key": Redacted.value(options.apiKey) } : {})
    }
    const once = client.execute(HttpClientRequest.get(url).pipe(HttpClientRequest.setHeaders(headers))).pipe(
      Effect.provideService(FetchHttpClient.RequestInit, { redirect: "manual" }),
      Effect.flatMap((response) => Effect.map(response.text, (text) => ({ status: response.status, headers: response.headers, text }))),
      Effect.flatMap(({ status, headers, text }): Effect.Effect<{ url: string; expires?: string }, LlmError> => {
        if (status >= 300 && status < 400 && headers["location"] !== undefined) {
          const expires = headers["expires"]
          return Effect.succeed({ url: new URL(headers["location"], url).toString(), ...(expires !== undefined ? { expires } : {}) })
        }
        if (status === 200) {
          try {
            const body = JSON.parse(text) as { url?: unknown; expires?: unknown }
            if (typeof body.url === "string") return Effect.succeed({ url: body.url, ...(typeof body.expires === "string" ? { expires: body.expires } : {}) })
          } catch {
            // fall through
          }
          return Effect.fail(new LlmError({ reason: "Malformed", origin, message: `expected a redirect or {"url", "expires"}, got ${text.slice(0, 120)}`, retryable: false }))
        }
        return Effect.fail(classifyStatus(origin, status, headers, text))
      })
    )
    return yield* attempts({ ...options, backoff: { ...URL_BACKOFF, ...options.backoff }, attempts: options.attempts ?? URL_BACKOFF.attempts }, origin, once).pipe(
      Effect.mapError((e) =>
        e.status === 404
          ? fail(`tinker archive of ${path.tinkerPath}: ${origin}: 404: the service has no archive for this checkpoint (${e.message})`, false, e)
          : toPolicy(`tinker archive of ${path.tinkerPath}`)(e)
      )
    )
  })

/** Downloads a signed archive URL (no API key; redirects followed). */
export const download = (options: ArchiveOptions, url: string): Effect.Effect<Uint8Array, PolicyError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const origin = `GET ${withoutQuery(url)}`
    const once = client.execute(HttpClientRequest.get(url)).pipe(
      Effect.flatMap((response) =>
        response.status >= 200 && response.status < 300
          ? Effect.map(response.arrayBuffer, (b) => new Uint8Array(b))
          : Effect.flatMap(response.text, (text) => Effect.fail(classifyStatus(origin, response.status, response.headers, text)))
      )
    )
    return yield* attempts({ ...options, timeout: options.downloadTimeout ?? "30 minutes" }, origin, once).pipe(Effect.mapError(toPolicy("tinker archive download")))
  })

/** The adapter files of an unpacked archive (at its root, or in its one folder). */
export const adapterOf = (files: ReadonlyMap<string, Uint8Array>, origin: string): PeftAdapter.Adapter => {
  const marker = [...files.keys()].find((n) => posix.basename(n) === "checkpoint_complete")
  const dir = marker === undefined ? "" : posix.dirname(marker)
  const at = (file: string) => files.get(dir === "." || dir === "" ? file : `${dir}/${file}`)
  const config = at(PeftAdapter.CONFIG_FILE)
  const weights = at(PeftAdapter.WEIGHTS_FILE)
  const listing = [...files.keys()].slice(0, 12).join(", ")
  if (config === undefined || weights === undefined) {
    throw new PeftAdapter.AdapterError("Invalid", `${origin}: the archive holds no LoRA adapter (${PeftAdapter.CONFIG_FILE} + ${PeftAdapter.WEIGHTS_FILE}); it has: ${listing}`)
  }
  if (marker === undefined) throw new PeftAdapter.AdapterError("Invalid", `${origin}: the archive has no checkpoint_complete marker: the adapter may be incomplete (it has: ${listing})`)
  return PeftAdapter.decode({ config, weights }, origin)
}

const notAPath = (path: string) =>
  new PolicyError({ reason: "BadInput", retryable: false, message: `tinker archive: ${JSON.stringify(path)} is not tinker://<run>/<weights|sampler_weights>/<name>` })

/** A checkpoint's adapter as Tinker stores it: archive URL, download, unpack. */
export const fetchAdapter = (options: ArchiveOptions, tinkerPath: string): Effect.Effect<PeftAdapter.Adapter, PolicyError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const path = parsePath(tinkerPath)
    if (path === undefined) return yield* Effect.fail(notAPath(tinkerPath))
    const { url } = yield* archiveUrl(options, path)
    const bytes = yield* download(options, url)
    return yield* Effect.try({
      try: () => adapterOf(untar(bytes), `archive of ${tinkerPath}`),
      catch: (e) => fail(`tinker archive of ${tinkerPath}: ${e instanceof TarError || e instanceof PeftAdapter.AdapterError ? e.message : String(e)}`, false, e)
    })
  })

export interface PeftFolderOptions extends ArchiveOptions {
  /** Where adapters are written: a folder every vLLM host reads at the same path. */
  readonly adapterDir: string
  /** The base model the adapter applies to (names and shapes of its weights). */
  readonly base: PeftAdapter.BaseModel
}

/** `adapterDir/<run>/<name>`; characters other than letters, digits, `.`, `_`, `-` become `_`. */
export const folderOf = (adapterDir: string, path: CheckpointPath): string => {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_")
  return join(adapterDir, safe(path.trainingRunId), safe(path.name))
}

/**
 * A sampler checkpoint as a PEFT adapter folder under `adapterDir` (downloaded and converted
 * once: an existing folder for the same checkpoint is reused, since a checkpoint never changes).
 */
export const toPeftFolder = (options: PeftFolderOptions, tinkerPath: string): Effect.Effect<string, PolicyError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const path = parsePath(tinkerPath)
    if (path === undefined) return yield* Effect.fail(notAPath(tinkerPath))
    const dir = folderOf(options.adapterDir, path)
    if (existsSync(join(dir, PeftAdapter.CONFIG_FILE)) && existsSync(join(dir, PeftAdapter.WEIGHTS_FILE))) return dir
    const tinker = yield* fetchAdapter(options, tinkerPath)
    const peft = yield* Effect.try({
      try: () => PeftAdapter.fromTinker(tinker, options.base),
      catch: (e) =>
        e instanceof PeftAdapter.AdapterError
          ? new PolicyError({ reason: e.reason === "Unsupported" ? "Unsupported" : "Checkpoint", retryable: false, message: `${tinkerPath} as a PEFT adapter: ${e.message}`, cause: e })
          : fail(`${tinkerPath} as a PEFT adapter: ${String(e)}`, false, e)
    })
    yield* Effect.tryPromise({
      try: async () => {
        await mkdir(dirname(dir), { recursive: true })
        try {
          await PeftAdapter.write(dir, peft)
        } catch (e) {
          if (!existsSync(join(dir, PeftAdapter.WEIGHTS_FILE))) throw e // else: written meanwhile by another writer
        }
      },
      catch: (e) => fail(`writing the adapter of ${tinkerPath} to ${dir}: ${(e as Error).message}`, false, e)
    })
    return dir
  })
