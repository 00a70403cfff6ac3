/**
 * The Hugging Face safetensors format: an 8-byte little-endian u64 header length N, N bytes of
 * UTF-8 JSON `{"__metadata__": {..}, "name": {"dtype", "shape", "data_offsets": [begin, end]}, ..}`
 * padded with spaces to a multiple of 8, then the raw little-endian tensor bytes (offsets are
 * relative to the start of that byte buffer).
 *
 * Encoding follows the reference Rust implementation byte for byte where it is deterministic:
 * compact JSON, `__metadata__` first (omitted when empty), then tensors in layout order, which is
 * by name (code-unit order, as the Python library sorts), fields in the order dtype, shape,
 * data_offsets. Decoding applies the reference's checks (contiguous offsets from 0, sizes that
 * match shapes, no trailing bytes).
 *
 * @example
 * const bytes = Safetensors.encode({ w: { dtype: "F32", shape: [2], data: Float32Array.of(1, -2) } })
 * const { tensors } = Safetensors.decode(bytes) // tensors.w.data: Float32Array [1, -2]
 */
import { open, readFile } from "node:fs/promises"
import { dirname } from "node:path"
import { atomicWrite } from "../dag/internal/files.ts"
import { concatBytes } from "../internal/bytes.ts"

/**
 * The element types supported here (a subset of what safetensors defines). `F16` and `BF16` are
 * kept as their raw 16-bit words (a Uint16Array): they are carried through unchanged (LoRA
 * adapters), not computed with.
 */
export type Dtype = "F32" | "F64" | "I64" | "I32" | "U8" | "F16" | "BF16"

/** One tensor: its element type, its shape (`[]` is a scalar) and its row-major data. */
export interface Tensor {
  readonly dtype: Dtype
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array
}

/** Raised for malformed files and for tensors that cannot be encoded. */
export class SafetensorsError extends Error {
  override readonly name = "SafetensorsError"
}

type TypedCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | Int32ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor

const DTYPES: Readonly<Record<Dtype, TypedCtor>> = {
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  I32: Int32Array,
  U8: Uint8Array,
  F16: Uint16Array,
  BF16: Uint16Array
}

const isDtype = (s: unknown): s is Dtype => typeof s === "string" && Object.hasOwn(DTYPES, s)

/** The reference refuses headers above 100 MB; so do we, before allocating anything for one. */
const MAX_HEADER = 100_000_000

// Tensor bytes are copied straight from/to typed-array memory, which is host-endian.
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1

/** Orders names by Unicode code point, i.e. by UTF-8 bytes, as Rust and Python sort strings. */
const byCodePoint = (a: string, b: string): number => {
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    const x = a.codePointAt(i)!
    const y = b.codePointAt(j)!
    if (x !== y) return x - y
    i += x > 0xffff ? 2 : 1
    j += y > 0xffff ? 2 : 1
  }
  return a.length - b.length
}

/** Sets an own property even for names like "__proto__", which plain assignment would not. */
const put = <V>(o: Record<string, V>, k: string, v: V): void => {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
}

const fail = (message: string): never => {
  throw new SafetensorsError(`safetensors: ${message}`)
}

/** Element count of a shape, validating each dimension. */
const numel = (shape: unknown, what: string): number => {
  if (!Array.isArray(shape)) return fail(`${what}: shape must be an array, got ${JSON.stringify(shape)}`)
  let n = 1
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      return fail(`${what}: shape ${JSON.stringify(shape)} has an invalid dimension ${JSON.stringify(d)}`)
    }
    n *= d
  }
  if (!Number.isSafeInteger(n)) fail(`${what}: shape ${JSON.stringify(shape)} is too large`)
  return n
}

/**
 * Serializes tensors (and optional string metadata) to safetensors bytes.
 *
 * @example
 * const bytes = encode({ bias: { dtype: "F64", shape: [], data: Float64Array.of(0.5) } }, { format: "pt" })
 */
export const encode = (tensors: Readonly<Record<string, Tensor>>, metadata?: Readonly<Record<string, string>>): Uint8Array =>
  concatBytes(encodeChunks(tensors, metadata))

/**
 * `encode`'s bytes as chunks to write in order: the header, then a view of each tensor's own
 * memory (no copy). Writing a checkpoint this way allocates no buffer of its size: on a host where
 * first-touching fresh memory is slow, that copy cost more than the write (measured: 45 ms for
 * 15 MB). The views alias the tensors: write them before the tensors change.
 */
export const encodeChunks = (tensors: Readonly<Record<string, Tensor>>, metadata?: Readonly<Record<string, string>>): Array<Uint8Array> => {
  if (!LITTLE_ENDIAN) fail("big-endian hosts are not supported")
  const names = Object.keys(tensors).sort(byCodePoint)
  // JSON is assembled by hand: an object would move integer-like keys ("0", "12") to the front,
  // and the reference writes tensors in layout order.
  const parts: Array<string> = []
  // Sorted keys keep the bytes deterministic (the reference uses a HashMap, so any order is valid).
  const meta = metadata === undefined ? [] : Object.keys(metadata).sort(byCodePoint)
  if (meta.length > 0) {
    const m = meta.map((k) => {
      const v = metadata![k]
      if (typeof v !== "string") fail(`metadata ${JSON.stringify(k)} must be a string, got ${typeof v}`)
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`
    })
    parts.push(`"__metadata__":{${m.join(",")}}`)
  }
  let offset = 0
  for (const name of names) {
    if (name === "__metadata__") fail(`"__metadata__" is reserved and cannot name a tensor`)
    const t = tensors[name]!
    const what = `tensor ${JSON.stringify(name)}`
    if (!isDtype(t.dtype)) fail(`${what}: unsupported dtype ${JSON.stringify(t.dtype)}`)
    const ctor = DTYPES[t.dtype]
    if (!(t.data instanceof ctor)) fail(`${what}: dtype ${t.dtype} needs a ${ctor.name}, got ${t.data.constructor.name}`)
    const n = numel(t.shape, what)
    if (t.data.length !== n) fail(`${what}: shape ${JSON.stringify(t.shape)} has ${n} elements but data has ${t.data.length}`)
    const end = offset + t.data.byteLength
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`)
    offset = end
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`)
  const pad = (8 - (json.length % 8)) % 8
  const headerLen = json.length + pad
  const header = new Uint8Array(8 + headerLen)
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLen), true)
  header.set(json, 8)
  header.fill(0x20, 8 + json.length, 8 + headerLen)
  return [header, ...names.map((name) => {
    const d = tensors[name]!.data
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
  })]
}

/**
 * Parses safetensors bytes. Tensor data is copied into fresh (hence aligned) typed arrays, so the
 * result does not alias `bytes`. Throws SafetensorsError on any malformed input.
 *
 * @example
 * const { tensors, metadata } = decode(await fs.readFile("model.safetensors"))
 */
export const decode = (bytes: Uint8Array): { tensors: Record<string, Tensor>; metadata: Record<string, string> } => {
  if (!LITTLE_ENDIAN) fail("big-endian hosts are not supported")
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`)
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true)
  if (n64 > BigInt(MAX_HEADER)) fail(`header length ${n64} exceeds the ${MAX_HEADER}-byte limit`)
  const n = Number(n64)
  if (8 + n > bytes.length) fail(`header length ${n} runs past the end of the ${bytes.length}-byte file`)
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)))
  } catch (e) {
    return fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`)
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) fail("header is not a JSON object")
  const header = parsed as Record<string, unknown>

  const metadata: Record<string, string> = {}
  const rawMeta = header["__metadata__"]
  if (rawMeta !== undefined && rawMeta !== null) {
    if (typeof rawMeta !== "object" || Array.isArray(rawMeta)) fail("__metadata__ is not an object")
    for (const [k, v] of Object.entries(rawMeta as Record<string, unknown>)) {
      if (typeof v !== "string") fail(`__metadata__ ${JSON.stringify(k)} is not a string`)
      put(metadata, k, v as string)
    }
  }

  interface Entry { readonly name: string; readonly dtype: Dtype; readonly shape: Array<number>; readonly begin: number; readonly end: number }
  const entries: Array<Entry> = []
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue
    const what = `tensor ${JSON.stringify(name)}`
    if (typeof info !== "object" || info === null || Array.isArray(info)) fail(`${what}: entry is not an object`)
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>
    if (!isDtype(dtype)) fail(`${what}: unknown or unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(", ")})`)
    const count = numel(shape, what)
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) fail(`${what}: data_offsets must be two non-negative integers, got ${JSON.stringify(offsets)}`)
    const [begin, end] = offsets as [number, number]
    if (end < begin) fail(`${what}: data_offsets [${begin}, ${end}] end before they begin`)
    const want = count * DTYPES[dtype as Dtype].BYTES_PER_ELEMENT
    if (end - begin !== want) {
      fail(`${what}: ${dtype} ${JSON.stringify(shape)} needs ${want} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`)
    }
    entries.push({ name, dtype: dtype as Dtype, shape: shape as Array<number>, begin, end })
  }

  // Like the reference: in offset order, each tensor must start where the previous one ended,
  // and the last must end exactly at the end of the file (no gaps, overlaps or trailing bytes).
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)
  const dataStart = 8 + n
  const dataLen = bytes.length - dataStart
  let expected = 0
  for (const e of byOffset) {
    if (e.begin !== expected) {
      fail(`tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] should begin at ${expected} (offsets must be contiguous from 0)`)
    }
    if (e.end > dataLen) fail(`tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] run past the ${dataLen}-byte data buffer`)
    expected = e.end
  }
  if (expected !== dataLen) fail(`tensors cover ${expected} bytes but the data buffer has ${dataLen}`)

  const tensors: Record<string, Tensor> = {}
  for (const e of entries) {
    const ctor = DTYPES[e.dtype]
    const data = new ctor((e.end - e.begin) / ctor.BYTES_PER_ELEMENT)
    // Copy bytewise: the source offset need not be aligned for the element type.
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end))
    put(tensors, e.name, { dtype: e.dtype, shape: e.shape, data })
  }
  return { tensors, metadata }
}

/**
 * Encodes and writes a safetensors file atomically: readers see the old file or the whole new one.
 * The temp file lives next to `path` so the final rename stays on one filesystem.
 *
 * @example
 * await write("out/adam.safetensors", { "m.w": { dtype: "F32", shape: [3], data: new Float32Array(3) } }, { step: "7" })
 */
export const write = (
  path: string,
  tensors: Readonly<Record<string, Tensor>>,
  metadata?: Readonly<Record<string, string>>
): Promise<void> => atomicWrite(dirname(path), path, encodeChunks(tensors, metadata))

/**
 * Reads and decodes a safetensors file.
 *
 * @example
 * const { tensors, metadata } = await read("out/adam.safetensors")
 */
export const read = async (path: string): Promise<{ tensors: Record<string, Tensor>; metadata: Record<string, string> }> =>
  decode(await readFile(path))

/** What a file's header says about one tensor, without its data. */
export interface TensorInfo {
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
}

/**
 * Reads only the header of a safetensors file (names, dtypes, shapes): the tensor bytes are not
 * read, so this is cheap on a multi-GB model shard. Dtypes are reported as written, including
 * ones `decode` does not support.
 *
 * @example
 * const { tensors } = await readHeader("model-00001-of-00004.safetensors")
 * Object.keys(tensors) // ["lm_head.weight", "model.embed_tokens.weight", ...]
 */
export const readHeader = async (path: string): Promise<{ tensors: Record<string, TensorInfo>; metadata: Record<string, string> }> => {
  const handle = await open(path, "r")
  try {
    const size = new Uint8Array(8)
    const { bytesRead } = await handle.read(size, 0, 8, 0)
    if (bytesRead < 8) fail(`${path}: file is ${bytesRead} bytes, too short for the 8-byte header length`)
    const n64 = new DataView(size.buffer).getBigUint64(0, true)
    if (n64 > BigInt(MAX_HEADER)) fail(`${path}: header length ${n64} exceeds the ${MAX_HEADER}-byte limit`)
    const n = Number(n64)
    const header = new Uint8Array(n)
    const got = await handle.read(header, 0, n, 8)
    if (got.bytesRead < n) fail(`${path}: header length ${n} runs past the end of the file`)
    let parsed: unknown
    try {
      parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(header))
    } catch (e) {
      return fail(`${path}: header is not valid UTF-8 JSON: ${(e as Error).message}`)
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return fail(`${path}: header is not a JSON object`)
    const tensors: Record<string, TensorInfo> = {}
    const metadata: Record<string, string> = {}
    for (const [name, info] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof info === "object" && info !== null) {
          for (const [k, v] of Object.entries(info as Record<string, unknown>)) if (typeof v === "string") put(metadata, k, v)
        }
        continue
      }
      const { dtype, shape } = (info ?? {}) as Record<string, unknown>
      if (typeof dtype !== "string") fail(`${path}: tensor ${JSON.stringify(name)} has no dtype`)
      numel(shape, `${path}: tensor ${JSON.stringify(name)}`)
      put(tensors, name, { dtype: dtype as string, shape: shape as Array<number> })
    }
    return { tensors, metadata }
  } finally {
    await handle.close()
  }
}
