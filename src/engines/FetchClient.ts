/**
 * The remote engines' HTTP client (fetch), a module of its own so that it loads with them only.
 * The prebuilt command imports just FetchHttpClient's modules for it (build-cli.mjs rewrites named
 * imports from effect's barrels member by member), where a dynamic import of effect/http would
 * set up the whole barrel, the HTTP server's modules included (~7 ms of `polaris plan`).
 */
import { FetchHttpClient } from "effect/http"

export const layer = FetchHttpClient.layer
