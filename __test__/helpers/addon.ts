// Loads the built addon the way a CommonJS consumer does (`require('@mastra/runner-local')`).
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)

/** The package root (where `index.js`, `index.d.ts` and the `.node` binary live). */
export const packageRoot = path.resolve(__dirname, '..', '..')

/** The package's exports, typed by the published `index.d.ts`. */
export const addon: typeof import('../../index') = require(packageRoot)
