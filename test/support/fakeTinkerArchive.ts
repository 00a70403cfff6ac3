/**
 * A local Tinker service answering only what fetching a checkpoint archive needs, written from the
 * SDK (thinking-machines-lab/tinker@d595dc2), not from polaris:
 *
 * - `GET /api/v1/training_runs/{run}/checkpoints/{kind}/{name}/archive`, `X-API-Key` required
 *   (src/tinker/resources/weights.py `get_checkpoint_archive_url`, which sends
 *   `Accept: application/json` and does not follow redirects): **302** with `Location` (a signed
 *   URL on this server) and `Expires`, or with `contract: "json"` a **200**
 *   `{"url", "expires"}` (src/tinker/types/checkpoint_archive_url_response.py); `busy` 503s first
 *   (the SDK retries 503); 404 for an unknown checkpoint.
 * - `GET /signed/{token}?X-Amz-Signature=…`: the archive bytes (no API key expected).
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"

export const ARCHIVE_KEY = "tml-archive-test-key"
export const SIGNATURE = "sig-secret-0123456789"

export interface ArchiveRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
}

export interface ArchiveFake {
  readonly url: string
  readonly seen: Array<ArchiveRequest>
  readonly close: () => Promise<void>
}

export const startArchiveFake = async (options: {
  /** Archive bytes by `<run>/<kind>/<name>`. */
  readonly archives: Readonly<Record<string, Uint8Array>>
  readonly contract?: "redirect" | "json"
  /** 503s to answer before the first success. */
  readonly busy?: number
}): Promise<ArchiveFake> => {
  const seen: Array<ArchiveRequest> = []
  const tokens = new Map<string, Uint8Array>()
  let busy = options.busy ?? 0
  let url = ""
  const server: Server = createServer((req, res) => {
    const path = req.url ?? ""
    seen.push({ method: req.method ?? "", path, headers: req.headers })
    const archive = /^\/api\/v1\/training_runs\/([^/]+)\/checkpoints\/(weights|sampler_weights)\/([^/]+)\/archive$/.exec(path)
    if (req.method === "GET" && archive !== null) {
      if (req.headers["x-api-key"] !== ARCHIVE_KEY) {
        res.writeHead(401, { "content-type": "application/json" })
        return res.end(JSON.stringify({ detail: "Invalid API key" }))
      }
      if (busy > 0) {
        busy--
        res.writeHead(503, { "content-type": "application/json" })
        return res.end(JSON.stringify({ detail: "Archive is being created" }))
      }
      const key = `${decodeURIComponent(archive[1]!)}/${archive[2]}/${archive[3]}`
      const bytes = options.archives[key]
      if (bytes === undefined) {
        res.writeHead(404, { "content-type": "application/json" })
        return res.end(JSON.stringify({ detail: `Checkpoint not found: ${key}` }))
      }
      const token = `t${tokens.size + 1}`
      tokens.set(token, bytes)
      const signed = `${url}/signed/${token}?X-Amz-Expires=900&X-Amz-Signature=${SIGNATURE}`
      const expires = new Date(Date.UTC(2030, 0, 1)).toUTCString()
      if (options.contract === "json") {
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ url: signed, expires: "2030-01-01T00:00:00Z" }))
      }
      res.writeHead(302, { location: signed, expires })
      return res.end()
    }
    const signed = /^\/signed\/([^?]+)\?/.exec(path)
    if (req.method === "GET" && signed !== null && path.includes(`X-Amz-Signature=${SIGNATURE}`) && tokens.has(signed[1]!)) {
      const bytes = tokens.get(signed[1]!)!
      res.writeHead(200, { "content-type": "application/x-tar", "content-length": String(bytes.length) })
      return res.end(Buffer.from(bytes))
    }
    res.writeHead(403, { "content-type": "application/xml" })
    res.end("<Error><Code>AccessDenied</Code></Error>")
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    seen,
    close: () => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
