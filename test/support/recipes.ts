/** Recipes tests write: the held-out human stories of the bundled corpus judged by a given judge. */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { ROOT } from "./cli.ts"

/**
 * `<dir>/recipe.yaml`: the `judge-references` pipeline over the bundled anthologies, its `judge:`
 * section the given lines (indented by two spaces; the first is on line 8 of the file).
 */
export const judgeReferencesRecipe = (dir: string, judge: ReadonlyArray<string>): string => {
  const file = join(dir, "recipe.yaml")
  writeFileSync(file, [
    "pipeline: judge-references",
    "data:",
    `  anthologies: [${join(ROOT, "examples", "anthologies")}]`,
    "  min_words: 500",
    "  max_words: 12000",
    "  heldout_fraction: 0.1",
    "judge:",
    ...judge.map((line) => `  ${line}`)
  ].join("\n") + "\n")
  return file
}
