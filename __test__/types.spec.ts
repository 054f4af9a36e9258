// The published index.d.ts against a strict TypeScript consumer (SPEC §2 entity shapes).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'

describe('index.d.ts', () => {
  it('type-checks a MastraAdmin-shaped consumer under strict mode and rejects misuse', () => {
    const tsc = path.join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc')
    const project = path.join(packageRoot, '__test__', 'types', 'tsconfig.json')
    const run = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' })
    expect(run.stdout + run.stderr).toBe('')
    expect(run.status).toBe(0)
  })
})
