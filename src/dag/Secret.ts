/**
 * Secrets whose environment variable is unset. A recipe's `${VAR}` with `VAR` unset (or empty)
 * loads as an empty Redacted labelled `VAR` rather than an error, so a recipe can be validated,
 * and its cached results reused, without its secrets. An engine built from such a secret says so
 * in `missingSecrets` (Engine.ts `Fingerprinted`), and the executor fails a node that would
 * execute with it, before it runs, with `MissingSecret` naming the variables.
 *
 * @example
 * const key = Secret.unset("GEMINI_API_KEY")
 * Secret.unsetVariables(key, undefined) // ["GEMINI_API_KEY"]
 * const judge = Secret.requiring(realJudge, Secret.unsetVariables(key)) // realJudge.missingSecrets: ["GEMINI_API_KEY"]
 */
import { type Context, Data, Effect, Layer, Redacted } from "effect"
import type { Fingerprinted } from "./Engine.ts"

/** The stand-in for an unset variable: an empty Redacted labelled with the variable's name. */
export const unset = (variable: string): Redacted.Redacted<string> => Redacted.make("", { label: variable })

/** Whether `secret` stands for an unset variable. An empty secret is never a usable one. */
export const isUnset = (secret: Redacted.Redacted<string> | undefined): boolean =>
  secret !== undefined && Redacted.value(secret) === ""

/** The variables of the unset secrets among `secrets`, in order, each once. */
export const unsetVariables = (...secrets: ReadonlyArray<Redacted.Redacted<string> | undefined>): Array<string> => [
  ...new Set(secrets.flatMap((s) => (s !== undefined && isUnset(s) ? [s.label ?? "an unnamed variable"] : [])))
]

/**
 * `engine`, marked as configured with unset secrets (unchanged when `variables` is empty). The
 * engine itself is untouched: its fingerprint still keys cached results, which stay usable.
 */
export const requiring = <S extends Fingerprinted>(engine: S, variables: ReadonlyArray<string>): S =>
  variables.length === 0 ? engine : new Proxy(engine, {
    get: (target, property, receiver) => (property === "missingSecrets" ? variables : Reflect.get(target, property, receiver))
  })

/**
 * `layer`'s engine marked with the unset secrets among `secrets` ({@link requiring}); `layer`
 * itself when none is unset.
 *
 * @example
 * Secret.layerRequiring(Judge, gemini({ apiKey, ... }), [apiKey])
 */
export const layerRequiring = <I, S extends Fingerprinted, E, R>(
  key: Context.Key<I, S>,
  layer: Layer.Layer<I, E, R>,
  secrets: ReadonlyArray<Redacted.Redacted<string> | undefined>
): Layer.Layer<I, E, R> => {
  const variables = unsetVariables(...secrets)
  if (variables.length === 0) return layer
  return Layer.effect(key, Effect.map(Effect.service(key), (engine) => requiring(engine, variables))).pipe(Layer.provide(layer))
}

/**
 * A non-empty stand-in for an unset secret, for clients that refuse an empty key when built; the
 * engine is marked ({@link layerRequiring}), so no call with it is ever made. A set one as it is.
 */
export const standIn = (secret: Redacted.Redacted<string>): Redacted.Redacted<string> =>
  isUnset(secret) ? Redacted.make(`unset-${secret.label ?? "secret"}`, { label: secret.label ?? "secret" }) : secret

/** A node needs an engine whose secrets are unset: it fails before it runs, naming them. */
export class MissingSecret extends Data.TaggedError("MissingSecret")<{
  readonly variables: ReadonlyArray<string>
  /** The node that needs them, when known. */
  readonly node?: string | undefined
  /** What needs them (an engine's service key, a recipe key). */
  readonly needs?: string | undefined
}> {
  override get message() {
    const names = this.variables.join(", ")
    const what = this.variables.length === 1 ? `environment variable ${names} is not set` : `environment variables ${names} are not set`
    const who = [this.node === undefined ? undefined : `node "${this.node}"`, this.needs].filter((x) => x !== undefined).join(", ")
    return `${what}${who === "" ? "" : ` (needed by ${who})`}; set ${this.variables.length === 1 ? "it" : "them"}, then \`polaris resume\``
  }
}
