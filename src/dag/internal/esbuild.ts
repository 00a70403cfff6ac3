/**
 * esbuild, loaded on first use: its JavaScript API takes ~15 ms to load, and most commands
 * transpile nothing (normal forms and transpiled modules are cached on disk, contentCache.ts).
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
let loaded: typeof import("esbuild") | undefined

export const esbuild = (): typeof import("esbuild") => (loaded ??= require("esbuild") as typeof import("esbuild"))

/** The installed esbuild's version, read from its package.json without loading it. */
export const esbuildVersion: string = (require("esbuild/package.json") as { version: string }).version
