/**
 * Canonical JSON and content hashing: the one place where values become bytes for hashing.
 *
 * Canonical JSON sorts object keys, drops `undefined`, normalises `-0` to `0` and refuses
 * anything that has no stable byte form (functions, symbols, class instances, non-finite
 * numbers). An unhashable value is an error, never a silently random cache miss.
 * Redacted secrets are dropped from hashes (`"drop"`) or masked in files meant for people
 * (`"mask"`): a secret never reaches a key or the disk.
 */
import { createHash } from "node:crypto"
import { Data, Redacted } from "effect"

/** A value that has no canonical byte form (a function, a class instance, NaN...). */
export class UnhashableValue extends Data.TaggedError("UnhashableValue")<{
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `cannot hash value at ${this.path || "<root>"}: ${this.reason}`
  }
}

/** What to do with a Redacted secret met while canonicalising. */
export type SecretPolicy = "drop" | "mask" | "reject"

const MASK = "<redacted>"

const normalise = (value: unknown, path: string, secrets: SecretPolicy): unknown => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new UnhashableValue({ path, reason: `non-finite number ${value}` })
    return Object.is(value, -0) ? 0 : value
  }
  if (Redacted.isRedacted(value)) {
    if (secrets === "reject") throw new UnhashableValue({ path, reason: "a Redacted secret cannot be stored" })
    // A masked secret that came from `${VAR}` is written back as `${VAR}`, so a frozen config
    // can be resumed by reading the environment again.
    if (secrets === "mask") return value.label !== undefined ? `\${${value.label}}` : MASK
    return undefined
  }
  if (Array.isArray(value)) {
    // Arrays of scalars (token ids, logprobs: most of a step's bytes) pass as they are, with no
    // per-element path string: JSON.stringify writes -0 as 0 itself.
    let scalars = true
    for (let i = 0; i < value.length; i++) {
      const v = value[i]
      if (typeof v === "number") {
        if (!Number.isFinite(v)) throw new UnhashableValue({ path: `${path}[${i}]`, reason: `non-finite number ${v}` })
      } else if (typeof v !== "string" && typeof v !== "boolean" && v !== null) {
        scalars = false
        break
      }
    }
    if (scalars) return value
    return value.map((v, i) => {
      const n = normalise(v, `${path}[${i}]`, secrets)
      return n === undefined ? null : n
    })
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) {
      throw new UnhashableValue({ path, reason: `instance of ${proto?.constructor?.name ?? "unknown class"}` })
    }
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key]
      // Plain leaves as they are, without a path (made only to name where a bad value sits).
      if (typeof v === "string" || typeof v === "boolean" || v === null || (typeof v === "number" && Number.isFinite(v) && !Object.is(v, -0))) {
        out[key] = v
        continue
      }
      const n = normalise(v, path ? `${path}.${key}` : key, secrets)
      if (n !== undefined) out[key] = n
    }
    return out
  }
  if (value === undefined) return undefined
  throw new UnhashableValue({ path, reason: `${typeof value} has no canonical form` })
}

/** Canonical JSON text of a plain JSON-like value. Throws UnhashableValue. */
export const canonicalJson = (value: unknown, secrets: SecretPolicy = "drop"): string =>
  JSON.stringify(normalise(value, "", secrets) ?? null)

/** sha256 of bytes or a string, as lowercase hex. */
export const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/** sha256 of a value's canonical JSON: the digest used for keys. */
export const digest = (value: unknown): string => sha256(canonicalJson(value, "drop"))

/** True when `value` contains a Redacted anywhere (used to refuse secrets in stored outputs). */
export const containsSecret = (value: unknown): boolean => {
  if (Redacted.isRedacted(value)) return true
  if (Array.isArray(value)) return value.some(containsSecret)
  if (value !== null && typeof value === "object") return Object.values(value).some(containsSecret)
  return false
}
