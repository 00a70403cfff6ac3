/**
 * What a Tinker service says it serves: `GET /api/v1/get_server_capabilities`, read at start-up
 * so a model the service does not have fails at once, naming the models it does have.
 *
 * Wire shape: Wire.GetServerCapabilitiesResponse
 * (thinking-machines-lab/tinker@d595dc2ba62a1494aa0f452fe1d0dbb7b321b870, v0.25.0,
 * `src/tinker/resources/service.py` `get_server_capabilities` → GET
 * `/api/v1/get_server_capabilities`; `src/tinker/types/get_server_capabilities_response.py`).
 * SkyRL (NovaSky-AI/SkyRL@a9564572eb8e91076be43c1bd5e4615e3de17265 `skyrl/tinker/api.py`
 * `get_server_capabilities`) lists exactly one entry, its `--base-model`, with `model_name` only.
 *
 * @example
 * const served = readCapabilities({ supported_models: [{ model_name: "Qwen/Qwen3-8B", max_context_length: 32768 }] })
 * // { models: [{ name: "Qwen/Qwen3-8B", maxContext: 32768 }] }
 * servedModel(served, "Qwen/Qwen3.5-9B")
 * // { error: "Qwen/Qwen3.5-9B is not among the service's models (get_server_capabilities lists Qwen/Qwen3-8B)" }
 */

import type * as Wire from "./Wire.ts"

export interface ServedModel {
  readonly name: string
  readonly maxContext?: number
}

/** The models a capabilities reply lists: entries without a name are skipped, a context length ≤ 0 is unknown. */
export const readCapabilities = (reply: Wire.GetServerCapabilitiesResponse): { readonly models: ReadonlyArray<ServedModel> } => {
  const models: Array<ServedModel> = []
  for (const { model_name: name, max_context_length: ctx } of reply.supported_models) {
    if (name == null) continue
    models.push(ctx != null && ctx > 0 ? { name, maxContext: ctx } : { name })
  }
  return { models }
}

/** The entry of `model`, or an error listing what is served. */
export const servedModel = (
  served: { readonly models: ReadonlyArray<ServedModel> },
  model: string
): { readonly model: ServedModel } | { readonly error: string } => {
  const found = served.models.find((m) => m.name === model)
  if (found !== undefined) return { model: found }
  const names = served.models.map((m) => m.name)
  return {
    error: `${model} is not among the service's models (get_server_capabilities lists ${names.length === 0 ? "none" : names.join(", ")})`
  }
}
