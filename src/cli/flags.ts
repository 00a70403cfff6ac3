/** Flags several commands share. */
import { Option } from "effect"
import { Flag } from "effect/cli"

/** `--store` for commands on a store: default $POLARIS_STORE, else .polaris. */
export const store = Flag.String("store").pipe(
  Flag.withDescription("Artifact store directory (runs, cache, memo); default $POLARIS_STORE, else .polaris"),
  Flag.withDefault(process.env.POLARIS_STORE ?? ".polaris")
)

/** `--store` for commands with a recipe: it wins over $POLARIS_STORE, which wins over the recipe's `store:`. */
export const storeOverride = Flag.String("store").pipe(
  Flag.withDescription("Artifact store directory (default: $POLARIS_STORE, else the recipe's `store:`, else .polaris)"),
  Flag.optional,
  Flag.map((flag) => Option.orElse(flag, () => Option.fromNullishOr(process.env.POLARIS_STORE)))
)
