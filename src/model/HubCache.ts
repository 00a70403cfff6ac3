/**
 * Model files by Hugging Face model id, from the standard Hugging Face cache on disk (what
 * `huggingface_hub`, `transformers` and vLLM download into), or from a local folder.
 *
 * Layout (huggingface/huggingface_hub src/huggingface_hub/file_download.py@ee0a451,
 * `repo_folder_name` and `try_to_load_from_cache`):
 *
 *   <cache>/models--<Org>--<Name>/refs/main          the commit the `main` ref points at
 *   <cache>/models--<Org>--<Name>/snapshots/<commit>/tokenizer.json, config.json, …
 *
 * and `<cache>` is `$HF_HUB_CACHE`, else the legacy `$HUGGINGFACE_HUB_CACHE`, else
 * `$HF_HOME/hub`, with `$HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface`, else
 * `~/.cache/huggingface` (src/huggingface_hub/constants.py@ee0a451).
 *
 * A value that starts with `/`, `.` or `~`, or names an existing folder, is a folder; anything
 * else shaped like a model id (`Qwen/Qwen3.5-9B`) is looked up in the cache. Nothing is
 * downloaded: a miss fails with every place looked at and the command that fetches the files.
 *
 * @example
 * const dir = HubCache.tokenizerDir("Qwen/Qwen3.5-9B")       // …/snapshots/<commit>
 * Tokenizer.fromFile(join(dir, "tokenizer.json"))
 * HubCache.tokenizerDir("./models/qwen3.5-9b")               // the folder itself
 */
import { existsSync, readFileSync, statSync } from "node:fs"
import { homedir } from "node:os"
import { join, resolve } from "node:path"

/** The environment variables the cache location depends on. */
export type HubEnv = Readonly<Record<string, string | undefined>>

/** A lookup that found nothing: `looked` lists each place and why it did not serve. */
export class HubCacheError extends Error {
  override readonly name = "HubCacheError"
  constructor(message: string, readonly looked: ReadonlyArray<string>) {
    super(message)
  }
}

const expandHome = (p: string, env: HubEnv): string =>
  p === "~" || p.startsWith("~/") ? join(env.HOME ?? homedir(), p.slice(1)) : p

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === "" ? undefined : v)

/** The hub cache folder the environment selects (huggingface_hub's `HF_HUB_CACHE` constant). */
export const cacheDir = (env: HubEnv = process.env): string => {
  const hub = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE)
  if (hub !== undefined) return expandHome(hub, env)
  const home = nonEmpty(env.HF_HOME) ?? join(nonEmpty(env.XDG_CACHE_HOME) ?? join(env.HOME ?? homedir(), ".cache"), "huggingface")
  return join(expandHome(home, env), "hub")
}

/** `Qwen/Qwen3.5-9B` -> `models--Qwen--Qwen3.5-9B`. */
export const repoFolder = (repoId: string): string => ["models", ...repoId.split("/")].join("--")

/** A Hugging Face model id: `name` or `org/name`, letters, digits, `-`, `_`, `.`. */
export const isModelId = (s: string): boolean =>
  /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/.test(s) && !s.includes("..") && !s.endsWith(".")

/** Whether a recipe value is written as a path (so it is resolved against the recipe's folder). */
export const isPathLike = (s: string): boolean => s.startsWith("/") || s.startsWith(".") || s.startsWith("~")

const isDir = (p: string) => statSync(p, { throwIfNoEntry: false })?.isDirectory() === true
const isFile = (p: string) => statSync(p, { throwIfNoEntry: false })?.isFile() === true

/** Where a model's files were found. */
export interface Located {
  readonly dir: string
  readonly source: "folder" | "cache"
  /** The snapshot commit, for the cache. */
  readonly revision?: string
}

/**
 * The snapshot folder of `repoId` at `refs/main` in the cache, or why not (one line per reason).
 * Files may still be missing from it: callers check the ones they need.
 */
export const snapshot = (repoId: string, env: HubEnv = process.env): { dir: string; revision: string } | { why: string } => {
  const cache = cacheDir(env)
  const repo = join(cache, repoFolder(repoId))
  if (!isDir(repo)) return { why: `${repo}: not in the cache` }
  const ref = join(repo, "refs", "main")
  if (!isFile(ref)) return { why: `${ref}: missing (no snapshot of the main branch)` }
  const revision = readFileSync(ref, "utf8").trim()
  const dir = join(repo, "snapshots", revision)
  if (!isDir(dir)) return { why: `${dir}: refs/main names ${revision}, which has no snapshot folder` }
  return { dir, revision }
}

/**
 * The folder holding every file of `need` for `spec` (a folder or a model id), or a
 * HubCacheError naming each place looked at.
 */
export const locate = (
  spec: string,
  need: ReadonlyArray<string>,
  options: { readonly env?: HubEnv; readonly what?: string; readonly download?: ReadonlyArray<string> } = {}
): Located => {
  const env = options.env ?? process.env
  const what = options.what ?? "model"
  const looked: Array<string> = []
  const missing = (dir: string) => need.filter((f) => !isFile(join(dir, f)))

  const folder = resolve(expandHome(spec, env))
  if (isPathLike(spec) || isDir(folder)) {
    if (isDir(folder)) {
      const lack = missing(folder)
      if (lack.length === 0) return { dir: folder, source: "folder" }
      looked.push(`${folder}: no ${lack.join(", ")}`)
    } else looked.push(`${folder}: no such folder`)
  }
  if (!isPathLike(spec) && isModelId(spec)) {
    const snap = snapshot(spec, env)
    if ("why" in snap) looked.push(snap.why)
    else {
      const lack = missing(snap.dir)
      if (lack.length === 0) return { dir: snap.dir, source: "cache", revision: snap.revision }
      looked.push(`${snap.dir}: no ${lack.join(", ")}`)
    }
  }
  const files = options.download ?? need
  const hint = isModelId(spec) && !isPathLike(spec)
    ? `; fetch with \`hf download ${spec} ${files.join(" ")}\` (into $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; cache here: ${cacheDir(env)}), or give a local folder`
    : "; give a folder that holds them, or a Hugging Face model id in the local cache"
  throw new HubCacheError(`${what} ${JSON.stringify(spec)}: ${need.join(" + ")} not found. Looked in: ${looked.join("; ")}${hint}`, looked)
}

/** The tokenizer files a model repository ships; tokenizer_config.json is optional. */
export const TOKENIZER_FILES = ["tokenizer.json"] as const

/**
 * The folder with `tokenizer.json` (and, when present, `tokenizer_config.json`) for a recipe's
 * `policy.tokenizer`: a local folder, or a model id in the Hugging Face cache.
 *
 * @example
 * Tokenizer.fromFile(join(tokenizerDir(policy.tokenizer), "tokenizer.json"))
 */
export const tokenizerDir = (spec: string, env: HubEnv = process.env): string =>
  locate(spec, TOKENIZER_FILES, { env, what: "tokenizer", download: ["tokenizer.json", "tokenizer_config.json"] }).dir

/**
 * What a tokenizer spec names, for a cache key: a folder's path (the caller keys it by content),
 * or `<id>@<commit>` for a snapshot in the cache (the commit fixes the files), else the spec.
 */
export const tokenizerIdentity = (spec: string, env: HubEnv = process.env): { readonly folder: string } | { readonly id: string } => {
  try {
    const located = locate(spec, TOKENIZER_FILES, { env, what: "tokenizer" })
    return located.source === "folder" ? { folder: located.dir } : { id: `${spec}@${located.revision}` }
  } catch {
    return { id: spec }
  }
}

/** Reads a JSON file of a located folder. */
export const readJson = (dir: string, file: string): unknown => JSON.parse(readFileSync(join(dir, file), "utf8"))

/** Whether a located folder has `file`. */
export const has = (dir: string, file: string): boolean => existsSync(join(dir, file))
