/**
 * Several policy engines at once, by system name (evaluation of models against each other). The
 * service key alone, apart from the registry that builds the engines (Policies.ts `registry`): a
 * stage that asks for a system's engine depends on this key, and its source fingerprint does not
 * reach every backend's client.
 */
import { Context, type Effect } from "effect"
import type { PolicyEngineShape, PolicyError } from "./PolicyEngine.ts"

export interface PolicyEnginesShape {
  /** The engine of `system`, built on first use and kept: a system's engine loads its model once per run. */
  readonly get: (system: string) => Effect.Effect<PolicyEngineShape, PolicyError>
}

export class PolicyEngines extends Context.Service<PolicyEngines, PolicyEnginesShape>()("polaris/PolicyEngines") {}
