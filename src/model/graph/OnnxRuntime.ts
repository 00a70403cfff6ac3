/**
 * onnxruntime-node, loaded on first use: its native module takes a noticeable part of a start-up,
 * and commands that run no model (`plan`, `dag`, `validate`, `status`) never need it. Loaded with
 * `require` (it is CommonJS), which works in every way polaris runs: tsx, vitest and the bundle.
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
let loaded: typeof import("onnxruntime-node") | undefined

export const onnxruntime = (): typeof import("onnxruntime-node") => (loaded ??= require("onnxruntime-node") as typeof import("onnxruntime-node"))
