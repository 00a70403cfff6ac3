/**
 * `polaris serve`: one PolicyEngine behind two HTTP protocols (protocols.md §1 and §2), on
 * Effect's HttpRouter over a Node HTTP server, so the Tinker SDK, vLLM clients and OpenAI chat
 * clients can be pointed at it and the small model can be hosted.
 *
 * - `/api/v1/*`: the Tinker training API (TinkerRoutes.ts), JSON and protobuf as SDK 0.25 speaks
 *   them; unknown routes answer `{"detail":"Not Found"}`.
 * - everything else: the vLLM OpenAI-compatible subset (OpenAIRoutes.ts); unknown routes answer
 *   vLLM's error body.
 *
 * Both share the engine and the sampler checkpoints: a `tinker://…/sampler_weights/…` path from
 * `save_weights_for_sampler` can be loaded as a vLLM LoRA adapter by name. Engine failures come
 * back as HTTP errors carrying the engine's message; a bad request never stops the server.
 *
 * @example
 * ```ts
 * // As a scoped Effect (the server stops when the scope closes):
 * const program = Effect.gen(function*() {
 *   const engine = yield* EmbeddedPolicy.make({ checkpoint: "models/story-1m" })
 *   const { url } = yield* Server.make(engine, { port: 0, modelName: "polaris/story-1m" })
 *   yield* Console.log(`Tinker at ${url}/api/v1, OpenAI at ${url}/v1`)
 * })
 * // Or from Promise code:
 * const server = await serve(engine, { port: 0, modelName: "polaris/story-1m" })
 * await fetch(`${server.url}/api/v1/healthz`)
 * await server.close()
 * ```
 */
import { Cause, Context, Effect, Exit, Layer, Scope } from "effect"
import { HttpRouter, HttpServer, HttpServerError, HttpServerRequest } from "effect/http"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { createServer } from "node:http"
import * as EmbeddedPolicy from "../engines/EmbeddedPolicy.ts"
import type { PolicyEngineShape, PolicyError } from "../engines/PolicyEngine.ts"
import { notFound } from "./internal/RequestError.ts"
import * as OpenAIRoutes from "./OpenAIRoutes.ts"
import * as TinkerRoutes from "./TinkerRoutes.ts"

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
  readonly openEngine?: (path: string) => Effect.Effect<PolicyEngineShape, PolicyError>
}

export interface RunningServer {
  /** `http://host:port`, no trailing slash. */
  readonly url: string
  readonly close: () => Promise<void>
}

/** Both protocols' routes, then each protocol's catch-all 404, registered on the HttpRouter. */
export const routes = (engine: PolicyEngineShape, options: ServeOptions): Layer.Layer<never, never, HttpRouter.HttpRouter> =>
  HttpRouter.addAll(Effect.gen(function*() {
    const tinker = yield* TinkerRoutes.make(engine, {
      modelName: options.modelName,
      longPollMs: options.longPollMs ?? 10_000,
      openEngine: options.openEngine ?? ((path) => EmbeddedPolicy.make({ checkpoint: path })),
      ...(options.checkpointDir !== undefined ? { checkpointDir: options.checkpointDir } : {}),
      ...(options.baseCheckpoint !== undefined ? { baseCheckpoint: options.baseCheckpoint } : {})
    })
    const openai = OpenAIRoutes.make(engine, { modelName: options.modelName, engineFor: tinker.engineFor })
    const unknownRoute = (render: typeof TinkerRoutes.errorResponse) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        return render(notFound(`no route ${request.method} ${request.url.split("?")[0]}`))
      })
    return [
      ...tinker.routes,
      ...openai.routes,
      HttpRouter.route("*", `${TinkerRoutes.PREFIX}/*`, Effect.succeed(TinkerRoutes.errorResponse(notFound("Not Found")))),
      HttpRouter.route("*", "*", unknownRoute(OpenAIRoutes.errorResponse))
    ]
  }))

/** The server as a layer: a Node HTTP server on `host:port` serving `routes`. */
export const layer = (engine: PolicyEngineShape, options: ServeOptions): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> =>
  HttpRouter.serve(routes(engine, options), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layer(() => createServer(), {
      port: options.port ?? 0,
      host: options.host ?? "127.0.0.1",
      // Open long polls and streams are cut at close rather than awaited.
      gracefulShutdownTimeout: "1 second"
    }))
  )

/** Starts the server in the current scope; its address once it listens. */
export const make = (engine: PolicyEngineShape, options: ServeOptions): Effect.Effect<{ readonly url: string }, HttpServerError.ServeError, Scope.Scope> =>
  Effect.map(Layer.build(layer(engine, options)), (context) => ({ url: HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address) }))

/** Starts the server; resolves once it listens. `close` stops it. */
export const serve = async (engine: PolicyEngineShape, options: ServeOptions): Promise<RunningServer> => {
  const scope = Effect.runSync(Scope.make())
  const started = await Effect.runPromiseExit(Scope.provide(make(engine, options), scope))
  if (Exit.isFailure(started)) {
    await Effect.runPromise(Scope.close(scope, started))
    const error = Cause.squash(started.cause)
    const why = error instanceof HttpServerError.ServeError && error.cause instanceof Error ? error.cause.message : String(error)
    throw new Error(`polaris serve: cannot listen on ${options.host ?? "127.0.0.1"}:${options.port ?? 0}: ${why}`)
  }
  return { url: started.value.url, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
