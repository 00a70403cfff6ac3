/**
 * Emits a Graph (Graph.ts) as an ONNX ModelProto (IR 8, opset 18) with protobufjs from an inline
 * .proto subset, and runs it with onnxruntime-node from the bytes.
 *
 * @example
 * const run = await Onnx.load(g)
 * const { y } = await run({ x: { data: new Float32Array(8), dims: [2, 4] } })
 */
import { createRequire } from "node:module"
import type * as ort from "onnxruntime-node"
import { GraphError, type DType, type Graph, type Node, type Value } from "./Graph.ts"
import { onnxruntime } from "./OnnxRuntime.ts"

/** The subset of onnx.proto (field numbers as in onnx/onnx.proto) that the emitter needs. */
const ONNX_PROTO = `
syntax = "proto2";
package onnx;
message TensorProto {
  repeated int64 dims = 1; optional int32 data_type = 2; optional string name = 8; optional bytes raw_data = 9;
}
message AttributeProto {
  optional string name = 1; optional float f = 2; optional int64 i = 3; optional bytes s = 4;
  optional TensorProto t = 5; repeated float floats = 7; repeated int64 ints = 8; optional int32 type = 20;
}
message NodeProto {
  repeated string input = 1; repeated string output = 2; optional string name = 3; optional string op_type = 4;
  repeated AttributeProto attribute = 5; optional string domain = 7;
}
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { optional int32 elem_type = 1; optional TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message ValueInfoProto { optional string name = 1; optional TypeProto type = 2; }
message GraphProto {
  repeated NodeProto node = 1; optional string name = 2; repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12;
}
message OperatorSetIdProto { optional string domain = 1; optional int64 version = 2; }
message ModelProto {
  optional int64 ir_version = 1; optional string producer_name = 2; optional GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`
// protobufjs and the parsed schema, on first use: ~25 ms that commands which only read a checkpoint
// (`plan`, an engine's fingerprint) never need.
let modelProto: import("protobufjs").Type | undefined
const ModelProto = (): import("protobufjs").Type =>
  (modelProto ??= (createRequire(import.meta.url)("protobufjs") as typeof import("protobufjs")).parse(ONNX_PROTO, { keepCase: true }).root.lookupType("onnx.ModelProto"))

export const IR_VERSION = 8
export const OPSET = 18

/** onnx.TensorProto.DataType codes. */
const ELEM_TYPE: Record<DType, number> = { float32: 1, int64: 7, bool: 9, float64: 11 }
/** onnx.AttributeProto.AttributeType codes. */
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, INTS: 7 } as const

type Attribute = Record<string, unknown>
type NodeProto = { input: Array<string>; output: Array<string>; name: string; op_type: string; attribute: Array<Attribute> }

const rawBytes = (data: ReadonlyArray<number>, dtype: DType): Uint8Array => {
  switch (dtype) {
    case "float32": return new Uint8Array(Float32Array.from(data).buffer)
    case "float64": return new Uint8Array(Float64Array.from(data).buffer)
    case "int64": return new Uint8Array(BigInt64Array.from(data.map((d) => BigInt(d))).buffer)
    case "bool": return Uint8Array.from(data.map((d) => (d ? 1 : 0)))
  }
}

const tensorProto = (name: string, data: ReadonlyArray<number>, dtype: DType, dims: ReadonlyArray<number>) => ({
  name, dims: [...dims], data_type: ELEM_TYPE[dtype], raw_data: rawBytes(data, dtype)
})

const valueInfo = (name: string, v: Value) => ({
  name,
  type: {
    tensor_type: {
      elem_type: ELEM_TYPE[v.dtype],
      shape: { dim: v.shape.map((d) => (typeof d === "number" ? { dim_value: d } : { dim_param: d })) }
    }
  }
})

const ints = (name: string, xs: ReadonlyArray<number>): Attribute => ({ name, ints: [...xs], type: ATTR.INTS })
const int = (name: string, i: number): Attribute => ({ name, i, type: ATTR.INT })
const str = (name: string, text: string): Attribute => ({ name, s: new TextEncoder().encode(text), type: ATTR.STRING })

/** Translates one IR node into ONNX nodes (plus int64 constant initializers for axes etc.). */
const emitNode = (node: Node, out: string, extra: (data: ReadonlyArray<number>) => string): Array<NodeProto> => {
  const ins = node.inputs.map((v) => v.name)
  const n = (op_type: string, input: Array<string>, attribute: Array<Attribute> = []): NodeProto => ({
    input, output: [out], name: node.name, op_type, attribute
  })
  const a = node.attrs
  switch (node.op) {
    case "Input":
    case "Constant":
      return []
    case "MatMul": case "Add": case "Sub": case "Mul": case "Div": case "Neg": case "Exp": case "Log":
    case "Sqrt": case "Sin": case "Cos": case "Tanh": case "Sigmoid": case "Relu": case "Where":
    case "Greater": case "Less": case "Equal": case "Identity": case "Shape": case "Size": case "Expand":
    case "Gather": case "Concat": case "Reshape": case "Range":
      return [n(node.op, ins, node.op === "Concat" || node.op === "Gather" ? [int("axis", a.axis ?? 0)] : [])]
    case "Pow":
      return [n("Pow", [ins[0]!, exponentName(node)])]
    case "ReduceSum": case "ReduceMean":
      return [n(node.op, [ins[0]!, extra(a.axes ?? [])], [int("keepdims", a.keepdims ? 1 : 0)])]
    case "Softmax": case "LogSoftmax":
      return [n(node.op, ins, [int("axis", a.axis ?? -1)])]
    case "Transpose":
      return [n("Transpose", ins, [ints("perm", a.perm ?? [])])]
    case "Unsqueeze":
      return [n("Unsqueeze", [ins[0]!, extra(a.axes ?? [])])]
    case "Slice":
      return [n("Slice", [ins[0]!, extra(a.starts ?? []), extra(a.ends ?? []), extra(a.axes ?? [])])]
    case "Pad":
      return [n("Pad", [ins[0]!, extra(a.pads ?? [])])]
    case "Cast":
      return [n("Cast", ins, [int("to", ELEM_TYPE[a.to ?? "float32"])])]
    case "ScatterNDAdd":
      return [n("ScatterND", ins, [str("reduction", "add")])]
    case "ScatterElementsAdd":
      return [n("ScatterElements", ins, [int("axis", 0), str("reduction", "add")])]
  }
}

const exponentName = (node: Node): string => `${node.name}_exponent`

/**
 * Serializes `graph` to ONNX ModelProto bytes. Only nodes reachable from the outputs are emitted.
 * Inputs named in `initializers` are stored in the model instead (weights baked into an export).
 */
export const toModelProto = (graph: Graph, initializers: ReadonlyMap<string, Float32Array> = new Map()): Uint8Array => {
  const live = new Set<number>()
  const stack = graph.outputs.map((o) => o.value)
  while (stack.length > 0) {
    const v = stack.pop()!
    if (live.has(v.id)) continue
    live.add(v.id)
    stack.push(...v.node.inputs)
  }
  const initializer: Array<ReturnType<typeof tensorProto>> = []
  const nodes: Array<NodeProto> = []
  let k = 0
  for (const node of graph.nodes) {
    if (!live.has(node.id)) continue
    const value = graph.values[node.id]!
    if (node.op === "Constant") {
      const dims = value.shape.map((d) => {
        if (typeof d !== "number") throw new GraphError("BadArgument", node.name, "constants need static shapes")
        return d
      })
      initializer.push(tensorProto(value.name, node.attrs.data ?? [], value.dtype, dims))
      continue
    }
    if (node.op === "Pow") {
      initializer.push(tensorProto(exponentName(node), [node.attrs.exponent ?? 1], value.dtype, []))
    }
    const extra = (data: ReadonlyArray<number>): string => {
      const name = `${node.name}_c${k++}`
      initializer.push(tensorProto(name, data, "int64", [data.length]))
      return name
    }
    nodes.push(...emitNode(node, value.name, extra))
  }
  for (const v of graph.inputs) {
    const data = initializers.get(v.name)
    if (data === undefined || !live.has(v.id)) continue
    const dims = v.shape.map((d) => {
      if (typeof d !== "number") throw new GraphError("BadArgument", v.name, "an initializer needs a static shape")
      return d
    })
    initializer.push({ name: v.name, dims, data_type: ELEM_TYPE.float32, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) })
  }
  for (const o of graph.outputs) {
    if (o.name !== o.value.name) nodes.push({ input: [o.value.name], output: [o.name], name: `out_${o.name}`, op_type: "Identity", attribute: [] })
  }
  const model = {
    ir_version: IR_VERSION,
    producer_name: "polaris",
    opset_import: [{ domain: "", version: OPSET }],
    graph: {
      name: "polaris",
      node: nodes,
      initializer,
      input: graph.inputs.filter((v) => live.has(v.id) && !initializers.has(v.name)).map((v) => valueInfo(v.name, v)),
      output: graph.outputs.map((o) => valueInfo(o.name, o.value))
    }
  }
  const proto = ModelProto()
  const err = proto.verify(model)
  if (err !== null) throw new GraphError("BadArgument", "ModelProto", err)
  return proto.encode(proto.fromObject(model)).finish()
}

/** A feed or a result: row-major data and dims. */
export interface TensorData {
  readonly data: Float32Array | Float64Array | BigInt64Array | Uint8Array
  readonly dims: ReadonlyArray<number>
}

/** An int64 feed from plain numbers. */
export const int64 = (values: ArrayLike<number>, dims: ReadonlyArray<number>): TensorData => ({
  data: BigInt64Array.from(values, (v) => BigInt(v)),
  dims
})

export type Runner = (feeds: Record<string, TensorData>) => Promise<Record<string, TensorData>>

const ortType = (data: TensorData["data"]): "float32" | "float64" | "int64" | "bool" =>
  data instanceof Float32Array ? "float32" : data instanceof Float64Array ? "float64" : data instanceof BigInt64Array ? "int64" : "bool"

/** An onnxruntime-node session: `run`, and `release` to free its memory (weights, arena) now. */
export interface Session {
  readonly run: Runner
  readonly release: () => Promise<void>
}

/**
 * Builds an onnxruntime-node session for `graph`. Inputs named in `initializers` are baked into
 * the model (see `toModelProto`): onnxruntime then folds and prepacks them once, where a weight fed
 * on every run is repacked on every run.
 */
export const loadSession = async (
  graph: Graph,
  options: ort.InferenceSession.SessionOptions = {},
  initializers: ReadonlyMap<string, Float32Array> = new Map()
): Promise<Session> => {
  const { InferenceSession, Tensor } = onnxruntime()
  const session = await InferenceSession.create(toModelProto(graph, initializers), options)
  const inputNames = new Set(session.inputNames)
  return {
    run: async (feeds) => {
      const ortFeeds: Record<string, ort.Tensor> = {}
      for (const [name, t] of Object.entries(feeds)) {
        if (inputNames.has(name)) ortFeeds[name] = new Tensor(ortType(t.data), t.data, [...t.dims])
      }
      const res = await session.run(ortFeeds)
      const out: Record<string, TensorData> = {}
      for (const [name, t] of Object.entries(res)) {
        out[name] = { data: t.data as TensorData["data"], dims: [...t.dims] }
      }
      return out
    },
    release: () => session.release()
  }
}

/** Builds an onnxruntime-node session for `graph` and returns a function that runs it. */
export const load = async (graph: Graph, options: ort.InferenceSession.SessionOptions = {}): Promise<Runner> =>
  (await loadSession(graph, options)).run
