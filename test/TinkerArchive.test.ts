/**
 * A Tinker sampler checkpoint to a PEFT adapter folder vLLM can load: the archive route and the
 * signed download (a local service written from the SDK, test/support/fakeTinkerArchive.ts),
 * the tar, and the conversion, against archives and expected PEFT adapters built by
 * test/fixtures/tinker-archive/make_fixture.py with Python's standard library from the SDK's and
 * tinker-cookbook's definitions (polaris serve saves full-weight checkpoints, not LoRA archives).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gzipSync } from "node:zlib"
import { createHash } from "node:crypto"
import { Effect, Redacted } from "effect"
import { FetchHttpClient, type HttpClient } from "effect/http"
import { afterEach, describe, expect, it } from "vitest"
import * as Archive from "../src/engines/tinker/Archive.ts"
import { untar } from "../src/engines/tinker/internal/tar.ts"
import type { PolicyError } from "../src/engines/PolicyEngine.ts"
import * as PeftAdapter from "../src/model/PeftAdapter.ts"
import * as Safetensors from "../src/model/Safetensors.ts"
import { ARCHIVE_KEY, SIGNATURE, startArchiveFake, type ArchiveFake } from "./support/fakeTinkerArchive.ts"
import { writeSnapshot } from "./support/hubCache.ts"
import { failure, value } from "./support/exit.ts"

const FIXTURES = new URL("./fixtures/tinker-archive/", import.meta.url)
const fixture = (name: string) => new Uint8Array(readFileSync(new URL(name, FIXTURES)))
type Variant = "untied" | "tied" | "vl"
interface Expected {
  readonly bases: Record<Variant, { config: Record<string, unknown>; weights: Array<string> }>
  readonly archives: Record<string, {
    tinker_tensors: Array<string>
    converted: Record<Variant, { config: Record<string, unknown>; tensors: Record<string, { dtype: string; shape: Array<number>; sha256: string }> }>
  }>
}
const expected: Expected = JSON.parse(readFileSync(new URL("expected.json", FIXTURES), "utf8"))

const RUN = "8c1f2d3e-0000-5a5a-9b9b-123456789abc:train:0"
const F32 = "qwen3-tiny-f32.tar"
const BF16 = "qwen3-tiny-bf16.tar.gz"

const fakes: Array<ArchiveFake> = []
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()))
})
const startFake = async (options: Parameters<typeof startArchiveFake>[0]) => {
  const fake = await startArchiveFake(options)
  fakes.push(fake)
  return fake
}

/** A hub cache with the fixture's base model `variant` as `polaris-test/qwen3-tiny-<variant>` (config.json + index). */
const cacheWith = (variant: Variant) => {
  const cache = mkdtempSync(join(tmpdir(), "polaris-hub-"))
  const base = expected.bases[variant]
  writeSnapshot(cache, `polaris-test/qwen3-tiny-${variant}`, {
    "config.json": JSON.stringify(base.config),
    "model.safetensors.index.json": JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(base.weights.map((w) => [w, "model-00001-of-00001.safetensors"])) })
  })
  return cache
}

const run = <A>(effect: Effect.Effect<A, PolicyError, HttpClient.HttpClient>) => Effect.runPromiseExit(Effect.provide(effect, FetchHttpClient.layer))

const options = (fake: ArchiveFake, extra: { readonly adapterDir: string; readonly base: PeftAdapter.BaseModel }): Archive.PeftFolderOptions => ({
  baseUrl: fake.url,
  apiKey: Redacted.make(ARCHIVE_KEY),
  backoff: { base: "1 millis", cap: "1 millis", jitter: false },
  ...extra
})

/** Checks a written adapter folder against the fixture's expected PEFT adapter. */
const expectPeft = (dir: string, want: Expected["archives"][string]["converted"][Variant]) => {
  expect(readdirSync(dir).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"])
  const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"))
  expect(config).toEqual(want.config)
  const { tensors, metadata } = Safetensors.decode(new Uint8Array(readFileSync(join(dir, "adapter_model.safetensors"))))
  expect(metadata).toEqual({ format: "pt" }) // as PEFT's save_pretrained writes it
  expect(Object.keys(tensors).sort()).toEqual(Object.keys(want.tensors).sort())
  for (const [name, t] of Object.entries(tensors)) {
    expect(name).toMatch(/^base_model\.model\.[A-Za-z0-9_.]+\.lora_[AB]\.weight$/)
    const w = want.tensors[name]!
    expect([name, t.dtype, t.shape]).toEqual([name, w.dtype, w.shape])
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
    expect(createHash("sha256").update(bytes).digest("hex"), name).toBe(w.sha256) // the values, unscaled
  }
  // PEFT's layout: lora_A [r, in_features], lora_B [out_features, r].
  for (const name of Object.keys(tensors).filter((n) => n.endsWith(".lora_A.weight"))) {
    expect(tensors[name]!.shape[0]).toBe(config.r)
    expect(tensors[name.replace(".lora_A.", ".lora_B.")]!.shape[1]).toBe(config.r)
  }
}

describe("Archive.parsePath (the SDK's ParsedCheckpointTinkerPath)", () => {
  it("takes tinker://<run>/<weights|sampler_weights>/<name> and nothing else", () => {
    expect(Archive.parsePath(`tinker://${RUN}/sampler_weights/sampler-3`)).toEqual({
      tinkerPath: `tinker://${RUN}/sampler_weights/sampler-3`,
      trainingRunId: RUN,
      checkpointType: "sampler",
      checkpointId: "sampler_weights/sampler-3",
      name: "sampler-3"
    })
    expect(Archive.parsePath("tinker://run/weights/step_1")?.checkpointType).toBe("training")
    expect(Archive.parsePath("tinker://model_1/ckpt")).toBeUndefined() // SkyRL's short form: the SDK rejects it too
    expect(Archive.parsePath("tinker://run/other/x")).toBeUndefined()
    expect(Archive.parsePath("/shared/adapter")).toBeUndefined()
  })
})

describe("tar", () => {
  it("reads Python tarfile's PAX archive with ./ names, and the gzip one", () => {
    const plain = untar(fixture(F32))
    expect([...plain.keys()].sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint_complete"])
    expect(JSON.parse(new TextDecoder().decode(plain.get("adapter_config.json")))).toEqual({ lora_alpha: 32, r: 2 })
    expect(plain.get("checkpoint_complete")!.length).toBe(0)
    const gz = untar(fixture(BF16))
    expect([...gz.keys()].sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint_complete"])
  })

  it("refuses a member that escapes the folder, and a file that is not a tar", () => {
    const tar = fixture(F32).slice()
    // Rename "./adapter_config.json" to "../adapter_config.j" in its header and fix the checksum.
    const at = tar.findIndex((_, i) => new TextDecoder().decode(tar.subarray(i, i + 21)) === "./adapter_config.json")
    const header = at - (at % 512)
    tar.set(new TextEncoder().encode("../adapter_config.j"), at)
    tar.fill(0x20, header + 148, header + 156)
    const sum = tar.subarray(header, header + 512).reduce((a, b) => a + b, 0)
    tar.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), header + 148)
    expect(() => untar(tar)).toThrow(/unsafe path/)
    expect(() => untar(new TextEncoder().encode("not a tar".padEnd(1024, "x")))).toThrow(/checksum/)
  })
})

describe("Archive.toPeftFolder", () => {
  it("follows the 302 to the signed URL (API key to the service only), retries a 503, and writes the PEFT adapter tinker-cookbook would", async () => {
    const fake = await startFake({ archives: { [`${RUN}/sampler_weights/sampler-3`]: fixture(F32) }, busy: 1 })
    const env = { HF_HUB_CACHE: cacheWith("untied") }
    const base = await PeftAdapter.baseModel(["polaris-test/qwen3-tiny-untied"], env)
    const adapterDir = mkdtempSync(join(tmpdir(), "polaris-adapters-"))
    const dir = value(await run(Archive.toPeftFolder(options(fake, { adapterDir, base }), `tinker://${RUN}/sampler_weights/sampler-3`)))
    expect(dir).toBe(join(adapterDir, "8c1f2d3e-0000-5a5a-9b9b-123456789abc_train_0", "sampler-3"))
    expectPeft(dir, expected.archives[F32]!.converted.untied)

    const routes = fake.seen.map((r) => r.path.split("?")[0])
    const route = `/api/v1/training_runs/${RUN}/checkpoints/sampler_weights/sampler-3/archive`
    expect(routes).toEqual([route, route, "/signed/t1"]) // 503, then 302, then the download
    expect(fake.seen[1]!.headers["accept"]).toBe("application/json")
    expect(fake.seen[1]!.headers["x-api-key"]).toBe(ARCHIVE_KEY)
    expect(fake.seen[2]!.headers["x-api-key"]).toBeUndefined()

    // The same checkpoint again: the folder is reused, nothing is fetched.
    value(await run(Archive.toPeftFolder(options(fake, { adapterDir, base }), `tinker://${RUN}/sampler_weights/sampler-3`)))
    expect(fake.seen).toHaveLength(3)
  })

  it("takes the 200 {url, expires} contract, gzip, bf16, tied embeddings and the language_model prefix", async () => {
    for (const variant of ["tied", "vl"] as const) {
      const fake = await startFake({ archives: { [`run-1/sampler_weights/s1`]: fixture(BF16) }, contract: "json" })
      const base = await PeftAdapter.baseModel([`polaris-test/qwen3-tiny-${variant}`], { HF_HUB_CACHE: cacheWith(variant) })
      const adapterDir = mkdtempSync(join(tmpdir(), "polaris-adapters-"))
      const dir = value(await run(Archive.toPeftFolder(options(fake, { adapterDir, base }), "tinker://run-1/sampler_weights/s1")))
      expectPeft(dir, expected.archives[BF16]!.converted[variant])
    }
  })

  it("checks the adapter against the base model's weight names and, when its header is on disk, shapes", async () => {
    const fake = await startFake({ archives: { "run-1/sampler_weights/s1": fixture(F32) } })
    const adapterDir = mkdtempSync(join(tmpdir(), "polaris-adapters-"))
    // A base model without layer 1: the adapter's layer-1 modules do not exist there.
    const cache = mkdtempSync(join(tmpdir(), "polaris-hub-"))
    const one = expected.bases.untied.weights.filter((w) => !w.includes("layers.1."))
    writeSnapshot(cache, "polaris-test/one-layer", {
      "config.json": JSON.stringify({ model_type: "qwen3" }),
      "model.safetensors.index.json": JSON.stringify({ weight_map: Object.fromEntries(one.map((w) => [w, "model.safetensors"])) })
    })
    const small = await PeftAdapter.baseModel(["polaris-test/one-layer"], { HF_HUB_CACHE: cache })
    const e = failure(await run(Archive.toPeftFolder(options(fake, { adapterDir, base: small }), "tinker://run-1/sampler_weights/s1")))
    expect(e.reason).toBe("Checkpoint")
    expect(e.message).toContain("base_model.model.model.layers.1.")
    expect(e.message).toContain("does not have")
    expect(readdirSync(adapterDir)).toEqual([]) // nothing half-written

    // A single-file base model whose header says lm_head is [32, 8]: the unembedding update is [16, 8].
    const local = mkdtempSync(join(tmpdir(), "polaris-base-"))
    // The fixture's dims (make_fixture.py): hidden 8, q 8, kv 4, ffn 12; lm_head wrong on purpose.
    const shapeOf = (w: string): Array<number> =>
      w === "lm_head.weight" ? [32, 8]
        : /\.(q_proj|o_proj)\./.test(w) ? [8, 8]
        : /\.(k_proj|v_proj)\./.test(w) ? [4, 8]
        : /\.(gate_proj|up_proj)\./.test(w) ? [12, 8]
        : /\.down_proj\./.test(w) ? [8, 12]
        : w === "model.embed_tokens.weight" ? [16, 8]
        : [8]
    const weights = Object.fromEntries(expected.bases.untied.weights.map((w) => {
      const shape = shapeOf(w)
      return [w, { dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }]
    }))
    writeFileSync(join(local, "model.safetensors"), Safetensors.encode(weights))
    writeFileSync(join(local, "config.json"), JSON.stringify({ model_type: "qwen3" }))
    const wrong = await PeftAdapter.baseModel([local], {})
    const e2 = failure(await run(Archive.toPeftFolder(options(fake, { adapterDir, base: wrong }), "tinker://run-1/sampler_weights/s1")))
    expect(e2.message).toContain("lm_head.weight is [32, 8]")
    // With lm_head [16, 8] every shape fits.
    weights["lm_head.weight"] = { dtype: "F32", shape: [16, 8], data: new Float32Array(128) }
    writeFileSync(join(local, "model.safetensors"), Safetensors.encode(weights))
    const right = await PeftAdapter.baseModel([local], {})
    expect(right.shapes.get("model.layers.1.mlp.down_proj.weight")).toEqual([8, 12])
    const ok = value(await run(Archive.toPeftFolder(options(fake, { adapterDir, base: right }), "tinker://run-1/sampler_weights/s1")))
    expect(JSON.parse(readFileSync(join(ok, "adapter_config.json"), "utf8")).base_model_name_or_path).toBe(local)
  })

  it("fails clearly on an archive without the completion marker, an unknown checkpoint, a refused download, and an MoE adapter", async () => {
    const files = untar(fixture(F32))
    const repack = (entries: Array<[string, Uint8Array]>) => {
      // A minimal ustar writer for the broken variants (names < 100 bytes).
      const blocks: Array<Uint8Array> = []
      for (const [name, data] of entries) {
        const h = new Uint8Array(512)
        const put = (at: number, s: string) => h.set(new TextEncoder().encode(s), at)
        put(0, name); put(100, "0000644\0"); put(108, "0000000\0"); put(116, "0000000\0")
        put(124, `${data.length.toString(8).padStart(11, "0")}\0`); put(136, "00000000000\0"); put(156, "0"); put(257, "ustar\u000000")
        h.fill(0x20, 148, 156)
        put(148, `${h.reduce((a, b) => a + b, 0).toString(8).padStart(6, "0")}\0 `)
        blocks.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512))
      }
      blocks.push(new Uint8Array(1024))
      return gzipSync(Buffer.concat(blocks))
    }
    const noMarker = repack([["adapter_config.json", files.get("adapter_config.json")!], ["adapter_model.safetensors", files.get("adapter_model.safetensors")!]])
    const moeTensors = {
      "base_model.model.model.layers.0.mlp.experts.w1.lora_A.weight": { dtype: "F32" as const, shape: [1, 2, 8], data: new Float32Array(16) },
      "base_model.model.model.layers.0.mlp.experts.w1.lora_B.weight": { dtype: "F32" as const, shape: [4, 12, 2], data: new Float32Array(96) }
    }
    const moe = repack([
      ["adapter_config.json", new TextEncoder().encode(JSON.stringify({ r: 2, lora_alpha: 32 }))],
      ["adapter_model.safetensors", Safetensors.encode(moeTensors)],
      ["checkpoint_complete", new Uint8Array(0)]
    ])
    const fake = await startFake({ archives: { "run-1/sampler_weights/nomarker": noMarker, "run-1/sampler_weights/moe": moe } })
    const base = await PeftAdapter.baseModel(["polaris-test/qwen3-tiny-untied"], { HF_HUB_CACHE: cacheWith("untied") })
    const adapterDir = mkdtempSync(join(tmpdir(), "polaris-adapters-"))
    const opts = options(fake, { adapterDir, base })

    const e1 = failure(await run(Archive.toPeftFolder(opts, "tinker://run-1/sampler_weights/nomarker")))
    expect(e1.message).toContain("checkpoint_complete")
    const e2 = failure(await run(Archive.toPeftFolder(opts, "tinker://run-1/sampler_weights/absent")))
    expect([e2.reason, e2.retryable]).toEqual(["Checkpoint", false])
    expect(e2.message).toContain("/api/v1/training_runs/run-1/checkpoints/sampler_weights/absent/archive")
    expect(e2.message).toContain("404")
    const e3 = failure(await run(Archive.toPeftFolder(opts, "tinker://run-1/sampler_weights/moe")))
    expect(e3.reason).toBe("Unsupported")
    expect(e3.message).toContain("build_lora_adapter")
    const e4 = failure(await run(Archive.download(opts, `${fake.url}/signed/t999?X-Amz-Signature=${SIGNATURE}`)))
    expect(e4.message).toContain("403")
    expect(e4.message).not.toContain(SIGNATURE) // the signed URL's query is a credential
    const e5 = failure(await run(Archive.toPeftFolder(opts, "tinker://model_1/ckpt")))
    expect(e5.reason).toBe("BadInput")
  })
})

describe("PeftAdapter.baseModel", () => {
  it("says where it looked and how to fetch the two small files", async () => {
    const cache = mkdtempSync(join(tmpdir(), "polaris-hub-"))
    writeSnapshot(cache, "Qwen/Qwen3-8B", { "tokenizer.json": "{}" }) // a tokenizer-only download
    const tokenizerOnly = mkdtempSync(join(tmpdir(), "polaris-tok-"))
    mkdirSync(tokenizerOnly, { recursive: true })
    const e = await PeftAdapter.baseModel(["Qwen/Qwen3-8B", tokenizerOnly], { HF_HUB_CACHE: cache }).then(() => undefined, (x: Error) => x)
    expect(e).toBeInstanceOf(PeftAdapter.AdapterError)
    expect(e!.message).toContain(join(cache, "models--Qwen--Qwen3-8B", "snapshots"))
    expect(e!.message).toContain("no config.json")
    expect(e!.message).toContain(tokenizerOnly)
    expect(e!.message).toContain("hf download Qwen/Qwen3-8B config.json model.safetensors.index.json")
  })
})
