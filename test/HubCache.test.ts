/**
 * `policy.tokenizer` by Hugging Face model id, through a cache laid out by the test as
 * huggingface_hub lays it out (test/support/hubCache.ts), with the cache chosen by the variables
 * huggingface_hub reads (src/huggingface_hub/constants.py@ee0a451: HF_HUB_CACHE, else
 * HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface,
 * else ~/.cache/huggingface); a local folder still works; a miss names every place looked at.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as Policies from "../src/engines/Policies.ts"
import * as HubCache from "../src/model/HubCache.ts"
import * as RecipeLoader from "../src/recipe/RecipeLoader.ts"
import { writeSnapshot } from "./support/hubCache.ts"

const ID = "Qwen/Qwen3.5-9B"
const TOKENIZER = { "tokenizer.json": "{\"version\":\"1.0\"}", "tokenizer_config.json": "{}" }
const temp = (prefix: string) => mkdtempSync(join(tmpdir(), prefix))

describe("HubCache.cacheDir", () => {
  it("is HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub", () => {
    expect(HubCache.cacheDir({ HF_HUB_CACHE: "/a/hub", HUGGINGFACE_HUB_CACHE: "/b", HF_HOME: "/c" })).toBe("/a/hub")
    expect(HubCache.cacheDir({ HUGGINGFACE_HUB_CACHE: "/b", HF_HOME: "/c" })).toBe("/b")
    expect(HubCache.cacheDir({ HF_HOME: "/c", XDG_CACHE_HOME: "/x" })).toBe("/c/hub")
    expect(HubCache.cacheDir({ XDG_CACHE_HOME: "/x", HOME: "/home/u" })).toBe("/x/huggingface/hub")
    expect(HubCache.cacheDir({ HOME: "/home/u" })).toBe("/home/u/.cache/huggingface/hub")
    expect(HubCache.cacheDir({ HF_HOME: "~/hf", HOME: "/home/u" })).toBe("/home/u/hf/hub")
    expect(HubCache.repoFolder(ID)).toBe("models--Qwen--Qwen3.5-9B")
  })
})

describe("HubCache.tokenizerDir", () => {
  it("finds refs/main's snapshot under HF_HUB_CACHE", () => {
    const cache = temp("polaris-hub-")
    const snapshot = writeSnapshot(cache, ID, TOKENIZER)
    expect(HubCache.tokenizerDir(ID, { HF_HUB_CACHE: cache, HF_HOME: temp("polaris-other-") })).toBe(snapshot)
  })

  it("finds it under $HF_HOME/hub, and under ~/.cache/huggingface/hub", () => {
    const home = temp("polaris-hfhome-")
    const snapshot = writeSnapshot(join(home, "hub"), ID, TOKENIZER, "abc123")
    expect(HubCache.tokenizerDir(ID, { HF_HOME: home })).toBe(snapshot)
    const user = temp("polaris-user-")
    const inHome = writeSnapshot(join(user, ".cache", "huggingface", "hub"), ID, TOKENIZER)
    expect(HubCache.tokenizerDir(ID, { HOME: user })).toBe(inHome)
  })

  it("takes a local folder, by path or by a name that is a folder", () => {
    const dir = temp("polaris-tok-")
    writeFileSync(join(dir, "tokenizer.json"), "{}")
    expect(HubCache.tokenizerDir(dir, {})).toBe(dir)
    expect(HubCache.tokenizerDir(`${dir}/`, {})).toBe(dir)
  })

  it("fails naming every place it looked and how to fetch the files", () => {
    const cache = temp("polaris-hub-")
    const looked = (spec: string, env: HubCache.HubEnv) => {
      try {
        HubCache.tokenizerDir(spec, env)
      } catch (e) {
        expect(e).toBeInstanceOf(HubCache.HubCacheError)
        return (e as Error).message
      }
      throw new Error("expected a miss")
    }
    // Not in the cache at all.
    const none = looked(ID, { HF_HUB_CACHE: cache })
    expect(none).toContain(`tokenizer "${ID}": tokenizer.json not found`)
    expect(none).toContain(join(cache, "models--Qwen--Qwen3.5-9B"))
    expect(none).toContain(`hf download ${ID} tokenizer.json tokenizer_config.json`)
    // refs/main missing (a download by commit only).
    mkdirSync(join(cache, "models--Qwen--Qwen3.5-9B", "snapshots", "abc"), { recursive: true })
    expect(looked(ID, { HF_HUB_CACHE: cache })).toContain(join(cache, "models--Qwen--Qwen3.5-9B", "refs", "main"))
    // A snapshot without the tokenizer (config.json only).
    const snapshot = writeSnapshot(cache, ID, { "config.json": "{}" }, "abc")
    expect(looked(ID, { HF_HUB_CACHE: cache })).toContain(`${snapshot}: no tokenizer.json`)
    // A path that is not there.
    const missing = looked("./no/such/tokenizer", { HF_HUB_CACHE: cache })
    expect(missing).toContain("no such folder")
    expect(missing).not.toContain("hf download")
  })

  it("identifies a cached tokenizer by its snapshot's commit (the eval-length cache key), a folder by its path", () => {
    const cache = temp("polaris-hub-")
    writeSnapshot(cache, ID, TOKENIZER, "c0ffee")
    expect(HubCache.tokenizerIdentity(ID, { HF_HUB_CACHE: cache })).toEqual({ id: `${ID}@c0ffee` })
    writeSnapshot(cache, ID, TOKENIZER, "beef01") // refs/main moved: a new key
    expect(HubCache.tokenizerIdentity(ID, { HF_HUB_CACHE: cache })).toEqual({ id: `${ID}@beef01` })
    const dir = temp("polaris-tok-")
    writeFileSync(join(dir, "tokenizer.json"), "{}")
    expect(HubCache.tokenizerIdentity(dir, {})).toEqual({ folder: dir })
    expect(HubCache.tokenizerIdentity("Qwen/Absent", { HF_HUB_CACHE: cache })).toEqual({ id: "Qwen/Absent" })
  })

  it("is what Policies uses for policy.tokenizer, with the error as a BadInput PolicyError", async () => {
    const cache = temp("polaris-hub-")
    const snapshot = writeSnapshot(cache, ID, TOKENIZER)
    expect(await Effect.runPromise(Policies.resolveTokenizer(ID, { HF_HUB_CACHE: cache }))).toBe(snapshot)
    const r = await Effect.runPromise(Effect.result(Policies.resolveTokenizer("Qwen/Missing", { HF_HUB_CACHE: cache })))
    expect(r._tag).toBe("Failure")
    if (r._tag === "Failure") {
      expect([r.failure.reason, r.failure.retryable]).toEqual(["BadInput", false])
      expect(r.failure.message).toContain("policy.tokenizer: tokenizer \"Qwen/Missing\"")
    }
  })
})

describe("RecipeLoader and policy.tokenizer", () => {
  const load = async (files: Record<string, string>) => {
    const dir = temp("polaris-recipe-")
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, ".."), { recursive: true })
      writeFileSync(join(dir, name), text)
    }
    const r = await Effect.runPromise(Effect.result(RecipeLoader.load(join(dir, "recipe.yaml"), { env: {} })))
    if (r._tag === "Failure") throw new Error(r.failure.message)
    return { dir, policy: r.success.recipe.policy! }
  }
  const recipe = (tokenizer: string, extra = "") => `pipeline: grpo\npolicy: { backend: tinker, model: ${ID}, base_url: http://t, tokenizer: ${tokenizer}${extra} }\n`

  it("keeps a model id an id, and anchors paths (./, ../, an existing folder) and adapter_dir at the recipe", async () => {
    expect((await load({ "recipe.yaml": recipe(ID) })).policy.tokenizer).toBe(ID)
    const rel = await load({ "recipe.yaml": recipe("./tok", ", adapter_dir: shared/adapters") })
    expect(rel.policy.tokenizer).toBe(join(rel.dir, "tok"))
    expect(rel.policy.adapter_dir).toBe(join(rel.dir, "shared", "adapters"))
    const existing = await load({ "recipe.yaml": recipe("models/qwen"), "models/qwen/tokenizer.json": "{}" })
    expect(existing.policy.tokenizer).toBe(join(existing.dir, "models", "qwen"))
  })
})
