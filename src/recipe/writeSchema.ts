/**
 * Writes the recipe JSON Schema to `recipes/recipe.schema.json`, for editors.
 * Run after changing the Recipe Schema: `npx tsx src/recipe/writeSchema.ts`
 * (a test fails while the shipped file differs from `RecipeLoader.jsonSchema()`).
 */
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { jsonSchema } from "./RecipeLoader.ts"

/** The file's text: 2-space JSON and a final newline. */
export const schemaText = (): string => `${JSON.stringify(jsonSchema(), null, 2)}\n`

export const schemaFile = fileURLToPath(new URL("../../recipes/recipe.schema.json", import.meta.url))

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(schemaFile, schemaText())
  console.log(`wrote ${schemaFile}`)
}
