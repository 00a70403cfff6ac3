/**
 * The store's objects read back byte for byte at every size its reader treats differently: one
 * read into a shared 64 KiB buffer, a synchronous read of the whole file up to 4 MiB, an
 * asynchronous one above; interleaved reads never see each other's bytes.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ArtifactStore } from "polaris"
import { tempDir } from "./support/store.ts"

const KIB = 1024
const SIZES = [0, 1, 495, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 4 * KIB * KIB, 4 * KIB * KIB + 1]

describe("ArtifactStore objects", () => {
  it.effect("read back byte for byte at every size, also when reads interleave", () =>
    Effect.gen(function*() {
      const store = yield* ArtifactStore.ArtifactStore
      const blobs = SIZES.map((n) => new Uint8Array(randomBytes(n)))
      const digests = yield* Effect.forEach(blobs, (b) => store.put(b))
      const back = yield* Effect.forEach(digests, (d) => store.get(d), { concurrency: "unbounded" })
      back.forEach((bytes, i) => {
        expect(bytes.byteLength, `size ${SIZES[i]}`).toBe(SIZES[i])
        expect(Buffer.from(bytes).equals(Buffer.from(blobs[i]!)), `size ${SIZES[i]}`).toBe(true)
      })
      const missing = yield* Effect.flip(store.get("0".repeat(64)))
      expect(missing._tag).toBe("MissingObject")
    }).pipe(Effect.provide(ArtifactStore.layer(tempDir()))))
})
