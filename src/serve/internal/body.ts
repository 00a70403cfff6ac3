/**
 * Reading request bodies: the raw bytes (at most 256 MB), JSON decoded with a wire Schema, and
 * the media types a request sends and accepts. Every failure is a RequestError (400, or 415
 * for a body format the route does not take).
 */
import { ByteSize, Effect, Schema } from "effect"
import { HttpIncomingMessage, HttpServerRequest } from "effect/http"
import { badRequest, RequestError } from "./RequestError.ts"

const MAX_BODY = ByteSize.megabytes(256)

/** The body's bytes. */
export const bytes: Effect.Effect<Uint8Array, RequestError, HttpServerRequest.HttpServerRequest> = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const buffer = yield* request.arrayBuffer.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_BODY),
    Effect.mapError((e) => badRequest(`cannot read the request body: ${e.message}`))
  )
  return new Uint8Array(buffer)
})

/** A header's media type, lower-cased, without parameters ("" when absent). */
export const mediaType = (request: HttpServerRequest.HttpServerRequest, header: "content-type" | "accept"): string =>
  (request.headers[header] ?? "").toLowerCase()

/** Whether the request's Content-Type is `type` (e.g. application/x-protobuf). */
export const sends = (request: HttpServerRequest.HttpServerRequest, type: string): boolean =>
  mediaType(request, "content-type").split(";")[0]!.trim() === type

/** Whether the request's Accept lists `type`. */
export const accepts = (request: HttpServerRequest.HttpServerRequest, type: string): boolean =>
  mediaType(request, "accept").split(",").some((part) => part.split(";")[0]!.trim() === type)

/** Parses a JSON body; an empty body is `{}`. */
export const parseJson = (body: Uint8Array): Effect.Effect<unknown, RequestError> =>
  Effect.try({
    try: () => {
      const text = new TextDecoder().decode(body)
      return text.trim() === "" ? {} : (JSON.parse(text) as unknown)
    },
    catch: (e) => badRequest(`request body is not JSON: ${(e as Error).message}`)
  })

/** Decodes a value with a wire Schema; the Schema's message (what was expected, and where) on failure. */
export const decode = <S extends Schema.ConstraintDecoder<unknown>>(schema: S, value: unknown): Effect.Effect<S["Type"], RequestError> =>
  Schema.decodeUnknownEffect(schema)(value).pipe(
    Effect.mapError((e) => badRequest(e.message.replace(/\n\s*/g, " ")))
  ) as Effect.Effect<S["Type"], RequestError>

/**
 * A JSON body decoded with `schema`. A protobuf body is refused with 415 (only forward_backward
 * takes one).
 */
export const json = <S extends Schema.ConstraintDecoder<unknown>>(schema: S): Effect.Effect<S["Type"], RequestError, HttpServerRequest.HttpServerRequest> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (mediaType(request, "content-type").includes("protobuf")) {
      return yield* new RequestError({ reason: "UnsupportedMediaType", message: `${request.url} takes JSON (Content-Type: application/json)` })
    }
    return yield* decode(schema, yield* Effect.flatMap(bytes, parseJson))
  })
