// MastraAdmin's own interfaces (declared under types/admin/ as MastraAdmin publishes them)
// against the published index.d.ts: both directions type-check under strict mode, and misuse
// is still rejected (issue 14).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'

describe('MastraAdmin interfaces', () => {
  it('accept the runner, the local source and the entities, and are accepted back, without casts', () => {
    const tsc = path.join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc')
    const project = path.join(packageRoot, '__test__', 'types', 'admin', 'tsconfig.json')
    const run = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' })
    expect(run.stdout + run.stderr).toBe('')
    expect(run.status).toBe(0)
  })
})
