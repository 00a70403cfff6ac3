/** Deterministic pseudo-random numbers from a string seed (sfc32 seeded by sha256). */
import { createHash } from "node:crypto"

/** A uniform [0, 1) generator determined entirely by `seed`. */
export const seeded = (seed: string): (() => number) => {
  const h = createHash("sha256").update(seed).digest()
  let a = h.readUInt32LE(0), b = h.readUInt32LE(4), c = h.readUInt32LE(8), d = h.readUInt32LE(12)
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    const t = (a + b) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    d = (d + 1) | 0
    const r = (t + d) | 0
    c = (c + r) | 0
    return (r >>> 0) / 4294967296
  }
}
