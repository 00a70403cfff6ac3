/**
 * The Tinker SDK's protobuf wire format (protocols.md §1.1): SDK 0.25 sends forward_backward as
 * `application/x-protobuf`, and asks for sample and forward_backward results in it by sending
 * `Accept: application/x-protobuf` to `retrieve_future` (0.24.1 sends
 * `Accept: application/x-protobuf, application/json`). Everything else stays JSON.
 *
 * The schema below is `tinker_public.proto` as the SDK ships it, compiled into
 * `src/tinker/proto/tinker_public_pb2.py` of `thinking-machines-lab/tinker` v0.25.0
 * (`d595dc2ba62a1494aa0f452fe1d0dbb7b321b870`; byte-identical descriptor in v0.24.1
 * `6b025363621b57be188c843ec32171ec4094d407`), written back out as .proto text. Decoding that
 * serialized FileDescriptorProto with protobufjs gives the same types, fields, numbers, labels,
 * oneofs and proto3-optional flags as parsing this text.
 *
 * The codecs convert between these messages and the JSON shapes of Wire.ts, following the SDK's
 * converters (`src/tinker/proto/request_conv.py@d595dc2`, `response_conv.py@d595dc2`): arrays
 * travel as little-endian bytes (tokens int32, logprobs float32, int64 tensors int64); a
 * ForwardBackwardOutput is one ArrayRecord whose BatchedTensors hold every datum's values back to
 * back, split by int64 BYTE offsets; missing prompt logprobs are NaN.
 *
 * @example
 * ```ts
 * const bytes = Proto.encodeSampleResponse({ sequences: [{ stop_reason: "stop", tokens: [5], logprobs: [-0.5] }] })
 * Proto.decodeSampleResponse(bytes).sequences[0]!.tokens // [5]
 * ```
 */
import protobuf from "protobufjs"
import type * as Wire from "./Wire.ts"

/** `tinker_public.proto`, from the descriptor in `src/tinker/proto/tinker_public_pb2.py@d595dc2`. */
export const TINKER_PUBLIC_PROTO = `
syntax = "proto3";
package tinker_public;

message SampleResponse {
  repeated SampledSequence sequences = 1;
  optional bytes prompt_logprobs = 2;              // float32 LE, NaN where missing (position 0)
  optional TopkPromptLogprobs topk_prompt_logprobs = 3;
  int32 prompt_cache_hit_tokens = 4;
}
message SampledSequence {
  StopReason stop_reason = 1;
  bytes tokens = 2;                                // int32 LE
  optional bytes logprobs = 3;                     // float32 LE
}
message TopkPromptLogprobs {
  bytes token_ids = 1;                             // int32 LE, prompt_length x k, row-major
  bytes logprobs = 2;                              // float32 LE; empty cells (0, -99999.0)
  uint32 k = 3;
  uint32 prompt_length = 4;
}
message SparseCsr {
  bytes values = 1;
  bytes crow_indices = 2;                          // int64 LE
  bytes col_indices = 3;                           // int64 LE
}
message Tensor {
  oneof encoding {
    bytes dense = 1;
    SparseCsr sparse_csr = 2;
  }
  DType dtype = 3;
  repeated int64 shape = 4;
}
message BatchedTensor {
  bytes data = 1;                                  // every datum's values, back to back
  bytes offsets = 2;                               // int64 LE byte offsets, datums + 1 of them
  DType dtype = 3;
  repeated int64 trailing_shape = 4;
}
message ArrayRecord {
  string type_tag = 1;
  map<string, BatchedTensor> fields = 2;
  int64 num_datums = 3;
}
message ForwardBackwardOutput {
  string loss_fn_output_type = 1;
  repeated ArrayRecord loss_fn_outputs = 2;
  map<string, double> metrics = 3;
}
message ForwardBackwardRequest {
  string model_id = 1;
  int32 seq_id = 2;
  repeated Datum data = 3;
  string loss_fn = 4;
  map<string, double> loss_fn_config = 5;
  bool forward_only = 6;
}
message Datum {
  repeated Chunk model_input = 1;
  map<string, Tensor> loss_fn_inputs = 2;
}
message Chunk {
  oneof chunk {
    EncodedTextChunk encoded_text = 1;
    ImageChunk image = 2;
    DmelChunk dmel = 3;
  }
}
message EncodedTextChunk { bytes tokens = 1; }     // int32 LE
message ImageChunk {
  bytes data = 1;
  string format = 2;
  optional int32 expected_tokens = 3;
}
message DmelChunk { bytes dmel = 1; }
message SamplingParams {
  oneof stop {
    StopStrings stop_strs = 6;
    StopTokens stop_tokens = 7;
  }
  optional int32 max_tokens = 1;
  optional uint64 seed = 2;
  optional float temperature = 3;
  optional int32 top_k = 4;
  optional float top_p = 5;
}
message StopStrings { repeated string values = 1; }
message StopTokens { repeated int32 values = 1; }
enum StopReason {
  STOP_REASON_STOP = 0;
  STOP_REASON_LENGTH = 1;
}
enum DType {
  DTYPE_UNSPECIFIED = 0;
  DTYPE_FLOAT32 = 1;
  DTYPE_INT64 = 2;
  DTYPE_INT32 = 3;
  DTYPE_BFLOAT16 = 4;
}
`

/** The parsed schema (field names as in the .proto). */
export const root = protobuf.parse(TINKER_PUBLIC_PROTO, { keepCase: true }).root
const SampleResponseType = root.lookupType("tinker_public.SampleResponse")
const ForwardBackwardOutputType = root.lookupType("tinker_public.ForwardBackwardOutput")
const ForwardBackwardRequestType = root.lookupType("tinker_public.ForwardBackwardRequest")

/** `tinker_public.DType` */
export const DType = { UNSPECIFIED: 0, FLOAT32: 1, INT64: 2, INT32: 3, BFLOAT16: 4 } as const
/** `tinker_public.StopReason` */
const STOP_REASON = { stop: 0, length: 1 } as const
const STOP_REASON_NAME: Record<number, Wire.SampledSequence["stop_reason"]> = { 0: "stop", 1: "length" }

/** A message that does not decode, or a value the format cannot carry. */
export class ProtoError extends Error {}

// ---------------------------------------------------------------------------------------------
// Little-endian arrays.

type Kind = "float32" | "int32" | "int64" | "bfloat16"
const WIDTH: Record<Kind, number> = { float32: 4, int32: 4, int64: 8, bfloat16: 2 }

/** `np.array(values, dtype).tobytes()` on a little-endian machine. */
export const toBytes = (values: ArrayLike<number>, kind: Exclude<Kind, "bfloat16">): Uint8Array => {
  const out = new Uint8Array(values.length * WIDTH[kind])
  const view = new DataView(out.buffer)
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    if (kind === "float32") view.setFloat32(i * 4, v, true)
    else if (kind === "int32") view.setInt32(i * 4, v, true)
    else view.setBigInt64(i * 8, BigInt(v), true)
  }
  return out
}

/** `np.frombuffer(bytes, dtype).tolist()`; bfloat16 is widened to float32 (the upper 16 bits). */
export const fromBytes = (bytes: Uint8Array, kind: Kind): Array<number> => {
  const width = WIDTH[kind]
  if (bytes.byteLength % width !== 0) throw new ProtoError(`${bytes.byteLength} bytes is not a whole number of ${kind} values`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Array<number>(bytes.byteLength / width)
  for (let i = 0; i < out.length; i++) {
    out[i] = kind === "float32"
      ? view.getFloat32(i * 4, true)
      : kind === "int32"
        ? view.getInt32(i * 4, true)
        : kind === "int64"
          ? Number(view.getBigInt64(i * 8, true))
          : new DataView(new Uint32Array([view.getUint16(i * 2, true) << 16]).buffer).getFloat32(0, true)
  }
  return out
}

const KIND_OF_DTYPE: Record<number, Kind> = { [DType.FLOAT32]: "float32", [DType.INT64]: "int64", [DType.INT32]: "int32", [DType.BFLOAT16]: "bfloat16" }
/** The public dtype a proto dtype collapses to (`response_conv.py@d595dc2` `_PROTO_DTYPE_TO_TENSOR_DTYPE`). */
const PUBLIC_DTYPE: Record<number, Wire.TensorDtype> = { [DType.FLOAT32]: "float32", [DType.BFLOAT16]: "float32", [DType.INT64]: "int64", [DType.INT32]: "int64" }
const PROTO_DTYPE: Record<Wire.TensorDtype, number> = { float32: DType.FLOAT32, int64: DType.INT64 }

const kindOf = (dtype: number, where: string): Kind => {
  const kind = KIND_OF_DTYPE[dtype]
  if (kind === undefined) throw new ProtoError(`${where}: unsupported DType ${dtype}`)
  return kind
}

const decodeWith = (type: protobuf.Type, bytes: Uint8Array): any => {
  try {
    return type.toObject(type.decode(bytes), { longs: Number, oneofs: true })
  } catch (e) {
    throw new ProtoError(`not a ${type.name} message: ${(e as Error).message}`)
  }
}

const product = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a * b, 1)

// ---------------------------------------------------------------------------------------------
// SampleResponse

/** A sample result as protobuf (`deserialize_sample_response` in `response_conv.py@d595dc2` reads it). */
export const encodeSampleResponse = (response: Wire.SampleResponse): Uint8Array => {
  if (response.topk_prompt_logprobs != null) throw new ProtoError("topk_prompt_logprobs has no encoder here")
  const message = {
    sequences: response.sequences.map((s) => ({
      stop_reason: STOP_REASON[s.stop_reason],
      tokens: toBytes(s.tokens, "int32"),
      ...(s.logprobs != null ? { logprobs: toBytes(s.logprobs, "float32") } : {})
    })),
    ...(response.prompt_logprobs != null
      ? { prompt_logprobs: toBytes(response.prompt_logprobs.map((x) => x ?? Number.NaN), "float32") }
      : {})
  }
  return SampleResponseType.encode(SampleResponseType.fromObject(message)).finish()
}

/** The JSON shape of a protobuf sample result (NaN prompt logprobs become null). */
export const decodeSampleResponse = (bytes: Uint8Array): Wire.SampleResponse => {
  const m = decodeWith(SampleResponseType, bytes)
  const sequences = (m.sequences ?? []).map((s: any, i: number): Wire.SampledSequence => {
    const stop = STOP_REASON_NAME[s.stop_reason ?? 0]
    if (stop === undefined) throw new ProtoError(`sequences[${i}]: unknown stop_reason ${s.stop_reason}`)
    return {
      stop_reason: stop,
      tokens: fromBytes(s.tokens ?? new Uint8Array(), "int32"),
      logprobs: s.logprobs != null && s.logprobs.byteLength > 0 ? fromBytes(s.logprobs, "float32") : null
    }
  })
  let topk: Wire.SampleResponse["topk_prompt_logprobs"] = null
  if (m.topk_prompt_logprobs != null) {
    const { k = 0, prompt_length: n = 0 } = m.topk_prompt_logprobs
    const ids = fromBytes(m.topk_prompt_logprobs.token_ids ?? new Uint8Array(), "int32")
    const lps = fromBytes(m.topk_prompt_logprobs.logprobs ?? new Uint8Array(), "float32")
    topk = Array.from({ length: n }, (_, i) => Array.from({ length: k }, (_, j) => [ids[i * k + j]!, lps[i * k + j]!] as const))
  }
  return {
    type: "sample",
    sequences,
    prompt_logprobs: m.prompt_logprobs != null && m.prompt_logprobs.byteLength > 0
      ? fromBytes(m.prompt_logprobs, "float32").map((x) => (Number.isNaN(x) ? null : x))
      : null,
    topk_prompt_logprobs: topk
  }
}

// ---------------------------------------------------------------------------------------------
// ForwardBackwardOutput

/** The record type tag both forms report (the SDK's fallback when a proto reply names none). */
export const ARRAY_RECORD = "ArrayRecord"

/**
 * A forward(_backward) result as protobuf: one ArrayRecord, a BatchedTensor per output name
 * (every datum must have the same names and trailing shape). `response_conv.py@d595dc2`
 * `deserialize_forward_backward_output` reads it.
 */
export const encodeForwardBackwardOutput = (output: Wire.ForwardBackwardOutput): Uint8Array => {
  const datums = output.loss_fn_outputs
  const names = datums.length === 0 ? [] : Object.keys(datums[0]!)
  const fields: Record<string, unknown> = {}
  for (const name of names) {
    const tensors = datums.map((d, i) => {
      const t = d[name]
      if (t === undefined) throw new ProtoError(`loss_fn_outputs[${i}] has no ${name}`)
      if (t.sparse_crow_indices != null) throw new ProtoError(`loss_fn_outputs[${i}].${name} is sparse`)
      return t
    })
    const dtype = tensors[0]!.dtype
    const trailing = (tensors[0]!.shape ?? [tensors[0]!.data.length]).slice(1)
    const chunks = tensors.map((t, i) => {
      if (t.dtype !== dtype || JSON.stringify((t.shape ?? [t.data.length]).slice(1)) !== JSON.stringify(trailing)) {
        throw new ProtoError(`loss_fn_outputs[${i}].${name}: every datum needs the same dtype and trailing shape`)
      }
      return toBytes(t.data, dtype)
    })
    const offsets = [0]
    for (const c of chunks) offsets.push(offsets.at(-1)! + c.byteLength)
    const data = new Uint8Array(offsets.at(-1)!)
    chunks.forEach((c, i) => data.set(c, offsets[i]!))
    fields[name] = { data, offsets: toBytes(offsets, "int64"), dtype: PROTO_DTYPE[dtype], trailing_shape: trailing }
  }
  const message = {
    loss_fn_output_type: output.loss_fn_output_type,
    loss_fn_outputs: [{ type_tag: output.loss_fn_output_type, fields, num_datums: datums.length }],
    metrics: output.metrics
  }
  return ForwardBackwardOutputType.encode(ForwardBackwardOutputType.fromObject(message)).finish()
}

/** The JSON shape of a protobuf forward(_backward) result: per datum, each field with shape `[leading, ...trailing]`. */
export const decodeForwardBackwardOutput = (bytes: Uint8Array): Wire.ForwardBackwardOutput => {
  const m = decodeWith(ForwardBackwardOutputType, bytes)
  const records: Array<any> = m.loss_fn_outputs ?? []
  const perField = new Map<string, Array<Wire.TensorData>>()
  for (const record of records) {
    for (const [name, bt] of Object.entries<any>(record.fields ?? {})) {
      const kind = kindOf(bt.dtype ?? 0, `field ${name}`)
      const dtype = PUBLIC_DTYPE[bt.dtype]!
      const trailing: Array<number> = bt.trailing_shape ?? []
      const values = fromBytes(bt.data ?? new Uint8Array(), kind)
      const offsets = fromBytes(bt.offsets ?? new Uint8Array(), "int64")
      const list = perField.get(name) ?? []
      for (let i = 0; i + 1 < offsets.length; i++) {
        const data = values.slice(offsets[i]! / WIDTH[kind], offsets[i + 1]! / WIDTH[kind])
        const inner = product(trailing)
        list.push({ data, dtype, shape: [inner === 0 ? 0 : data.length / inner, ...trailing] })
      }
      perField.set(name, list)
    }
  }
  const counted = records.reduce((a, r) => a + (r.num_datums ?? 0), 0)
  const n = counted > 0 ? counted : perField.size > 0 ? perField.values().next().value!.length : 0
  return {
    loss_fn_output_type: records.length === 0 ? m.loss_fn_output_type || ARRAY_RECORD : String(m.loss_fn_output_type ?? "").split(":").at(-1)!,
    loss_fn_outputs: Array.from({ length: n }, (_, i) => Object.fromEntries([...perField].map(([name, list]) => [name, list[i]!]))),
    metrics: m.metrics ?? {}
  }
}

// ---------------------------------------------------------------------------------------------
// ForwardBackwardRequest

/** forward_backward's protobuf body as the JSON request, plus `forward_only` (SDK 0.25's `forward`). */
export interface ForwardBackwardProtoRequest {
  readonly request: Wire.ForwardBackwardRequest
  readonly forwardOnly: boolean
}

const tensorToWire = (t: any, where: string): Wire.TensorData => {
  const dtype = t.dtype ?? 0
  const kind = kindOf(dtype, where)
  const shape: Array<number> | null = t.shape !== undefined && t.shape.length > 0 ? t.shape : null
  if (t.encoding === "sparse_csr") {
    const csr = t.sparse_csr ?? {}
    return {
      data: fromBytes(csr.values ?? new Uint8Array(), kind),
      dtype: PUBLIC_DTYPE[dtype]!,
      shape,
      sparse_crow_indices: fromBytes(csr.crow_indices ?? new Uint8Array(), "int64"),
      sparse_col_indices: fromBytes(csr.col_indices ?? new Uint8Array(), "int64")
    }
  }
  return { data: fromBytes(t.dense ?? new Uint8Array(), kind), dtype: PUBLIC_DTYPE[dtype]!, shape }
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

const chunkToWire = (c: any, where: string): Wire.ModelInputChunk => {
  switch (c.chunk) {
    case "encoded_text":
      return { type: "encoded_text", tokens: fromBytes(c.encoded_text.tokens ?? new Uint8Array(), "int32") }
    case "image": {
      const format = c.image.format
      if (format !== "png" && format !== "jpeg") throw new ProtoError(`${where}: image format ${JSON.stringify(format)}`)
      return { type: "image", data: base64(c.image.data ?? new Uint8Array()), format, expected_tokens: c.image.expected_tokens ?? null }
    }
    case "dmel":
      return { type: "dmel", dmel: base64(c.dmel.dmel ?? new Uint8Array()) }
    default:
      throw new ProtoError(`${where}: an empty chunk`)
  }
}

/** Reads a protobuf forward_backward body (`request_conv.py@d595dc2` writes it). */
export const decodeForwardBackwardRequest = (bytes: Uint8Array): ForwardBackwardProtoRequest => {
  const m = decodeWith(ForwardBackwardRequestType, bytes)
  const data = (m.data ?? []).map((d: any, i: number): Wire.Datum => ({
    model_input: { chunks: (d.model_input ?? []).map((c: any, j: number) => chunkToWire(c, `data[${i}].model_input[${j}]`)) },
    loss_fn_inputs: Object.fromEntries(Object.entries<any>(d.loss_fn_inputs ?? {}).map(([name, t]) => [name, tensorToWire(t, `data[${i}].loss_fn_inputs.${name}`)]))
  }))
  const lossFn = m.loss_fn ?? ""
  const config: Record<string, number> | undefined = m.loss_fn_config
  return {
    request: {
      model_id: m.model_id ?? "",
      seq_id: m.seq_id ?? 0,
      forward_backward_input: {
        data,
        // Checked against Wire.LossFnType by whoever decodes the JSON shape.
        loss_fn: lossFn as Wire.LossFnType,
        loss_fn_config: config !== undefined && Object.keys(config).length > 0 ? config : null
      }
    },
    forwardOnly: m.forward_only ?? false
  }
}

/** Writes a forward_backward body as SDK 0.25 does (text chunks and dense tensors). */
export const encodeForwardBackwardRequest = (request: Wire.ForwardBackwardRequest, forwardOnly = false): Uint8Array => {
  const input = request.forward_backward_input
  const message = {
    model_id: request.model_id,
    seq_id: request.seq_id ?? 0,
    loss_fn: input.loss_fn,
    loss_fn_config: input.loss_fn_config ?? {},
    forward_only: forwardOnly,
    data: input.data.map((d, i) => ({
      model_input: d.model_input.chunks.map((c, j) => {
        if (c.type !== undefined && c.type !== "encoded_text") throw new ProtoError(`data[${i}].model_input[${j}]: only text chunks are encoded here`)
        return { encoded_text: { tokens: toBytes(c.tokens, "int32") } }
      }),
      loss_fn_inputs: Object.fromEntries(Object.entries(d.loss_fn_inputs).map(([name, t]) => {
        if (t.sparse_crow_indices != null) throw new ProtoError(`data[${i}].loss_fn_inputs.${name}: sparse tensors are not encoded here`)
        return [name, { dense: toBytes(t.data, t.dtype), dtype: PROTO_DTYPE[t.dtype], shape: t.shape ?? [] }]
      }))
    }))
  }
  return ForwardBackwardRequestType.encode(ForwardBackwardRequestType.fromObject(message)).finish()
}
