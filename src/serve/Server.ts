/**
 * `polaris serve`: one PolicyEngine behind two HTTP protocols (protocols.md §1 and §2), so the
 * Tinker and vLLM clients can be tested over real HTTP and the small model can be hosted.
 *
 * - `/api/v1/*`: the Tinker training API (TinkerRoutes.ts), JSON only.
 * - everything else: the vLLM OpenAI-compatible subset (OpenAIRoutes.ts).
 *
 * Both share the engine and the sampler checkpoints: a `tinker://…/sampler_weights/…` path from
 * `save_weights_for_sampler` can be loaded as a vLLM LoRA adapter by name. Engine failures come
 * back as HTTP errors carrying the engine's message; a bad request never stops the server.
 *
 * @example
 * ```ts
 * const engine = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: "models/story-1m" }))
 * const server = await serve(engine, { port: 0, modelName: "polaris/story-1m" })
 * await fetch(`${server.url}/api/v1/healthz`)
 * await server.close()
 * ```
 */
import { Effect } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as EmbeddedPolicy from "../engines/EmbeddedPolicy.ts"
import type { PolicyEngineShape } from "../engines/PolicyEngine.ts"
import * as OpenAIRoutes from "./OpenAIRoutes.ts"
import * as TinkerRoutes from "./TinkerRoutes.ts"

/** A parsed request, as the route modules see it. */
export interface Request {
  readonly method: string
  /** The path without the query string (and without `/api/v1` for Tinker routes). */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage["headers"]
  /** The parsed JSON body; undefined for an empty body. */
  readonly body: unknown
}

/** A reply: JSON, plain text, or an empty body. */
export type Reply =
  | { readonly status: number; readonly json: unknown }
  | { readonly status: number; readonly text: string }
  | { readonly status: number }

/** A route table: a reply, or undefined when no route matches. */
export type Handler = (request: Request) => Promise<Reply | undefined>

export interface ServeOptions {
  /** Default 0 (any free port). */
  readonly port?: number
  /** Default 127.0.0.1. */
  readonly host?: string
  /** The base model's name in both protocols, e.g. "polaris/story-1m". */
  readonly modelName: string
  /** Where the engine's `save(name)` writes `name/` (to find checkpoints saved by earlier runs). */
  readonly checkpointDir?: string
  /** The base model's checkpoint folder: a Tinker training client created after another starts from it. */
  readonly baseCheckpoint?: string
  /** How long `retrieve_future` waits for a pending result before answering 408; default 10 s. */
  readonly longPollMs?: number
  /** Opens a checkpoint folder as its own (sampling) engine; default `EmbeddedPolicy.make`. */
  readonly openEngine?: (path: string) => Promise<PolicyEngineShape>
}

export interface RunningServer {
  /** `http://host:port`, no trailing slash. */
  readonly url: string
  readonly close: () => Promise<void>
}

const MAX_BODY = 256 * 1024 * 1024

class BadBody extends Error {}

const readBody = (req: IncomingMessage): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new BadBody(`request body over ${MAX_BODY} bytes`))
        req.destroy()
      } else chunks.push(c)
    })
    req.on("error", reject)
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8")
      if (text.trim() === "") return resolve(undefined)
      try {
        resolve(JSON.parse(text))
      } catch (e) {
        reject(new BadBody(`request body is not JSON: ${(e as Error).message}`))
      }
    })
  })

const send = (res: ServerResponse, reply: Reply) => {
  if ("json" in reply) {
    const body = JSON.stringify(reply.json)
    res.writeHead(reply.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    res.end(body)
  } else if ("text" in reply) {
    res.writeHead(reply.status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(reply.text) })
    res.end(reply.text)
  } else {
    res.writeHead(reply.status, { "content-length": 0 })
    res.end()
  }
}

const TINKER_PREFIX = "/api/v1"

/** Starts the server; resolves once it listens. */
export const serve = async (engine: PolicyEngineShape, options: ServeOptions): Promise<RunningServer> => {
  const openEngine = options.openEngine ?? ((path: string) => Effect.runPromise(EmbeddedPolicy.make({ checkpoint: path })))
  const tinker = TinkerRoutes.make(engine, {
    modelName: options.modelName,
    longPollMs: options.longPollMs ?? 10_000,
    openEngine,
    ...(options.checkpointDir !== undefined ? { checkpointDir: options.checkpointDir } : {}),
    ...(options.baseCheckpoint !== undefined ? { baseCheckpoint: options.baseCheckpoint } : {})
  })
  const openai = OpenAIRoutes.make(engine, { modelName: options.modelName, engineFor: tinker.engineFor })

  const handle = async (req: IncomingMessage): Promise<Reply> => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const isTinker = url.pathname === TINKER_PREFIX || url.pathname.startsWith(`${TINKER_PREFIX}/`)
    let body: unknown
    try {
      if (isTinker && (req.headers["content-type"] ?? "").includes("protobuf")) {
        return { status: 415, json: { detail: "this server speaks JSON only (send Content-Type: application/json)" } }
      }
      body = await readBody(req)
    } catch (e) {
      const message = (e as Error).message
      return isTinker ? { status: 400, json: { detail: message } } : OpenAIRoutes.errorReply(400, message)
    }
    const request: Request = {
      method: req.method ?? "GET",
      path: isTinker ? url.pathname.slice(TINKER_PREFIX.length) || "/" : url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body
    }
    const reply = await (isTinker ? tinker.handle : openai.handle)(request)
    if (reply !== undefined) return reply
    return isTinker
      ? { status: 404, json: { detail: "Not Found" } }
      : OpenAIRoutes.errorReply(404, `no route ${request.method} ${request.path}`, "NotFoundError")
  }

  const server = createServer((req, res) => {
    handle(req).then(
      (reply) => send(res, reply),
      (e: unknown) => {
        // A bug in a route: answer 500 and keep serving.
        const message = e instanceof Error ? e.message : String(e)
        if (!res.headersSent) send(res, { status: 500, json: { detail: message, error: { message, type: "InternalServerError", param: null, code: 500 } } })
        else res.end()
      }
    )
  })
  server.on("clientError", (_e, socket) => socket.destroy())

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        tinker.close()
        server.close((e) => (e !== undefined ? reject(e) : resolve()))
        server.closeAllConnections()
      })
  }
}
