/**
 * Safetensors: roundtrips of every supported dtype (incl. scalars and empty tensors), golden bytes
 * built by hand from the format spec, and rejection of corrupted files.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Safetensors from "../src/model/Safetensors.ts"
import type { Tensor } from "../src/model/Safetensors.ts"

const ascii = (s: string): Array<number> => Array.from(s, (c) => c.charCodeAt(0))
const u64le = (n: number): Array<number> => Array.from({ length: 8 }, (_, i) => Math.floor(n / 256 ** i) % 256)

/** A file from a header object and data bytes, with the header padded like the spec says. */
const file = (header: unknown, data: ReadonlyArray<number> = [], pad = true): Uint8Array => {
  let json = JSON.stringify(header)
  if (pad) json += " ".repeat((8 - (json.length % 8)) % 8)
  return Uint8Array.from([...u64le(json.length), ...ascii(json), ...data])
}

const all: Record<string, Tensor> = {
  f32: { dtype: "F32", shape: [2, 3], data: Float32Array.of(1, -2, 3.5, Infinity, -0, 1e-30) },
  f64: { dtype: "F64", shape: [3], data: Float64Array.of(Math.PI, -1e300, Number.MIN_VALUE) },
  i64: { dtype: "I64", shape: [2], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n) },
  i32: { dtype: "I32", shape: [1, 2], data: Int32Array.of(-2147483648, 7) },
  // Three bytes put the tensors after it at odd offsets, exercising the unaligned copy.
  u8: { dtype: "U8", shape: [3], data: Uint8Array.of(0, 128, 255) },
  scalar: { dtype: "F64", shape: [], data: Float64Array.of(42) },
  empty: { dtype: "F32", shape: [2, 0], data: new Float32Array(0) }
}

describe("Safetensors roundtrip", () => {
  it("roundtrips every dtype, a 0-d scalar and an empty tensor, with metadata", () => {
    const bytes = Safetensors.encode(all, { format: "pt", note: "ünïcode \"quoted\"" })
    const { tensors, metadata } = Safetensors.decode(bytes)
    expect(metadata).toEqual({ format: "pt", note: "ünïcode \"quoted\"" })
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(all).sort())
    for (const [name, t] of Object.entries(all)) {
      const got = tensors[name]!
      expect(got.dtype).toBe(t.dtype)
      expect(got.shape).toEqual(t.shape)
      expect(got.data.constructor).toBe(t.data.constructor)
      expect(Array.from(got.data as ArrayLike<number | bigint>)).toEqual(Array.from(t.data as ArrayLike<number | bigint>))
      // Decoded arrays own aligned buffers rather than aliasing the file.
      expect(got.data.byteOffset).toBe(0)
      expect(got.data.buffer).not.toBe(bytes.buffer)
    }
    expect(Object.is(tensors["f32"]!.data[4], -0)).toBe(true)
  })

  it("lays tensors out by name and pads the header to a multiple of 8", () => {
    const bytes = Safetensors.encode(all)
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    expect(n % 8).toBe(0)
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { data_offsets: [number, number] }>
    expect(header["__metadata__"]).toBeUndefined()
    const byOffset = Object.entries(header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]).map(([k]) => k)
    expect(byOffset).toEqual(Object.keys(all).sort())
    // The JSON itself also lists tensors in layout order, like the reference implementation.
    expect(Object.keys(header)).toEqual(Object.keys(all).sort())
    for (const len of [1, 2, 3, 7, 8, 9]) {
      const b = Safetensors.encode({ ["x".repeat(len)]: { dtype: "U8", shape: [1], data: Uint8Array.of(1) } })
      const m = Number(new DataView(b.buffer).getBigUint64(0, true))
      expect(m % 8).toBe(0)
      expect(b.length).toBe(8 + m + 1)
      // The padding is spaces.
      const text = new TextDecoder().decode(b.subarray(8, 8 + m))
      expect(text.trimEnd()).toBe(text.slice(0, text.lastIndexOf("}") + 1))
    }
  })

  it("keeps integer-like names in layout order in the JSON", () => {
    const t = (v: number): Tensor => ({ dtype: "U8", shape: [1], data: Uint8Array.of(v) })
    const bytes = Safetensors.encode({ b: t(1), "10": t(2), "2": t(3) })
    const text = new TextDecoder().decode(bytes.subarray(8))
    expect(text.indexOf(`"10"`)).toBeLessThan(text.indexOf(`"2"`))
    expect(text.indexOf(`"2"`)).toBeLessThan(text.indexOf(`"b"`))
    // Layout: "10" (offset 0), "2" (1), "b" (2).
    expect(Array.from(bytes.subarray(bytes.length - 3))).toEqual([2, 3, 1])
    expect(Array.from(Safetensors.decode(bytes).tensors["2"]!.data as Uint8Array)).toEqual([3])
  })

  it("writes atomically and reads back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polaris-safetensors-"))
    try {
      const path = join(dir, "sub", "w.safetensors")
      await Safetensors.write(path, all, { step: "3" })
      await Safetensors.write(path, { only: all["u8"]! })
      const back = await Safetensors.read(path)
      expect(Object.keys(back.tensors)).toEqual(["only"])
      expect(back.metadata).toEqual({})
      // No temp files left behind.
      expect(readdirSync(join(dir, "sub"))).toEqual(["w.safetensors"])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("Safetensors golden bytes", () => {
  it("F32 [2] = [1, -2] with no metadata", () => {
    // Header JSON (compact, dtype/shape/data_offsets in that order):
    //   {"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  = 54 bytes
    // padded with 2 spaces to 56 = 0x38, so the length prefix is 38 00 00 00 00 00 00 00.
    // Data: 1.0f = 0x3F800000 -> 00 00 80 3F; -2.0f = 0xC0000000 -> 00 00 00 C0 (little-endian).
    const json = `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
    expect(json.length).toBe(54)
    const expected = Uint8Array.from([
      0x38, 0, 0, 0, 0, 0, 0, 0,
      ...ascii(json), 0x20, 0x20,
      0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0
    ])
    expect(expected.length).toBe(72)
    const bytes = Safetensors.encode({ x: { dtype: "F32", shape: [2], data: Float32Array.of(1, -2) } })
    expect(Array.from(bytes)).toEqual(Array.from(expected))
    const { tensors, metadata } = Safetensors.decode(expected)
    expect(metadata).toEqual({})
    expect(tensors["x"]).toEqual({ dtype: "F32", shape: [2], data: Float32Array.of(1, -2) })
  })

  it("U8 scalar with metadata, which comes first", () => {
    //   {"__metadata__":{"a":"b"},"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}} = 77 bytes
    // padded with 3 spaces to 80 = 0x50; data is the single byte 7.
    const json = `{"__metadata__":{"a":"b"},"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}`
    expect(json.length).toBe(77)
    const expected = Uint8Array.from([0x50, 0, 0, 0, 0, 0, 0, 0, ...ascii(json), 0x20, 0x20, 0x20, 7])
    const bytes = Safetensors.encode({ x: { dtype: "U8", shape: [], data: Uint8Array.of(7) } }, { a: "b" })
    expect(Array.from(bytes)).toEqual(Array.from(expected))
  })

  it("accepts an unpadded header and a subarray view (other writers, shared buffers)", () => {
    const raw = file({ x: { dtype: "I32", shape: [1], data_offsets: [0, 4] } }, [1, 0, 0, 0], false)
    const shifted = new Uint8Array(raw.length + 3)
    shifted.set(raw, 3)
    const { tensors } = Safetensors.decode(shifted.subarray(3))
    expect(Array.from(tensors["x"]!.data as Int32Array)).toEqual([1])
  })
})

describe("Safetensors chunks", () => {
  it("encodeChunks is encode's bytes, the tensors' as views of their own memory; write goes through it", async () => {
    const chunks = Safetensors.encodeChunks(all, { format: "pt" })
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(Safetensors.encode(all, { format: "pt" })))
    const f32 = all["f32"]!.data
    expect(chunks.some((c) => c.buffer === f32.buffer && c.byteOffset === f32.byteOffset)).toBe(true)
    const dir = mkdtempSync(join(tmpdir(), "st-chunks-"))
    try {
      // More tensors than one writev takes (1,024 buffers): written in order all the same.
      const many = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`t${i}`, { dtype: "F32", shape: [i % 3], data: Float32Array.from({ length: i % 3 }, (_, j) => i + j / 4) } satisfies Tensor]))
      await Safetensors.write(join(dir, "many.safetensors"), many, { n: "1500" })
      expect(Buffer.from(readFileSync(join(dir, "many.safetensors")))).toEqual(Buffer.from(Safetensors.encode(many, { n: "1500" })))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("Safetensors corruption", () => {
  const good = Safetensors.encode({
    a: { dtype: "F32", shape: [2], data: Float32Array.of(1, 2) },
    b: { dtype: "I64", shape: [1], data: BigInt64Array.of(5n) }
  })
  const err = (bytes: Uint8Array, pattern: RegExp) => expect(() => Safetensors.decode(bytes)).toThrow(pattern)

  it("rejects truncated files", () => {
    err(good.subarray(0, 5), /too short/)
    err(good.subarray(0, 20), /runs past the end/)
    err(good.subarray(0, good.length - 1), /"b": data_offsets \[8, 16\] run past the 15-byte data buffer/)
    err(Uint8Array.from([...good, 0]), /cover 16 bytes but the data buffer has 17/)
  })

  it("rejects a huge header length without allocating", () => {
    err(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7b, 0x7d]), /exceeds/)
  })

  it("rejects bad offsets", () => {
    const data = new Array<number>(8).fill(0)
    // Overlap: b starts inside a.
    err(file({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, data), /"b".*should begin at 8/)
    // Gap before the first tensor.
    err(file({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, data), /should begin at 0/)
    err(file({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, data.slice(0, 4)), /run past/)
    err(file({ a: { dtype: "F32", shape: [0], data_offsets: [4, 0] } }, []), /end before/)
    err(file({ a: { dtype: "F32", shape: [1], data_offsets: [0] } }, data), /two non-negative integers/)
    err(file({ a: { dtype: "F32", shape: [1], data_offsets: [-4, 0] } }, data), /two non-negative integers/)
  })

  it("rejects a byte length that does not match the shape", () => {
    err(file({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Array<number>(8).fill(0)), /"a": F32 \[3\] needs 12 bytes .* span 8/)
    err(file({ a: { dtype: "F64", shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /needs 8 bytes/)
    err(file({ a: { dtype: "U8", shape: [-1], data_offsets: [0, 0] } }), /invalid dimension/)
  })

  it("names the tensor with an unknown dtype", () => {
    err(file({ "layer.w": { dtype: "F8_E4M3", shape: [1], data_offsets: [0, 1] } }, [0]), /tensor "layer.w": unknown or unsupported dtype "F8_E4M3"/)
  })

  it("rejects malformed headers", () => {
    err(file("not an object"), /not a JSON object/)
    err(Uint8Array.from([...u64le(4), ...ascii("{{{{")]), /not valid UTF-8 JSON/)
    err(Uint8Array.from([...u64le(2), 0xff, 0xfe]), /not valid UTF-8 JSON/)
    err(file({ __metadata__: { a: 1 } }), /__metadata__ "a" is not a string/)
    err(file({ a: 3 }), /"a": entry is not an object/)
  })

  it("rejects tensors it cannot encode", () => {
    const enc = (t: unknown, m?: Record<string, string>) => () => Safetensors.encode({ t: t as Tensor }, m)
    expect(enc({ dtype: "F32", shape: [3], data: new Float32Array(2) })).toThrow(/has 3 elements but data has 2/)
    expect(enc({ dtype: "F32", shape: [2], data: new Float64Array(2) })).toThrow(/needs a Float32Array, got Float64Array/)
    expect(enc({ dtype: "F8_E4M3", shape: [1], data: new Uint8Array(1) })).toThrow(/unsupported dtype "F8_E4M3"/)
    expect(enc({ dtype: "U8", shape: [1.5], data: new Uint8Array(1) })).toThrow(/invalid dimension/)
    expect(() => Safetensors.encode({ __metadata__: all["u8"]! })).toThrow(/reserved/)
    expect(() => Safetensors.decode(new Uint8Array(0))).toThrow(Safetensors.SafetensorsError)
  })
})
