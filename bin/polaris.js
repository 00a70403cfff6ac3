#!/usr/bin/env node
// The polaris command. TypeScript (the CLI, user pipelines and stages) loads through tsx, no build step.
import { register } from "tsx/esm/api"

register()
await import("../src/cli/main.ts")
