// A short soak (the full one is `npm run soak`): deploy/stop cycles with crashes, restarts,
// concurrent and failing deploys must leave no process, no port and no growth in the host's
// file descriptors or memory.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'

describe('soak', () => {
  it('30 random cycles leave nothing behind', () => {
    const script = path.join(packageRoot, 'scripts', 'soak.mjs')
    const run = spawnSync(process.execPath, [script, '--cycles', '30', '--seed', '7'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, MASTRA_RUNNER_LOG: 'error' },
    })
    expect(run.stderr).toBe('')
    const result = JSON.parse(run.stdout)
    expect(result.problems).toEqual([])
    expect(result.processesLeft).toEqual([])
    expect(result.portsHeld).toEqual([])
    expect(result.counts.deploys).toBeGreaterThan(20)
    expect(run.status).toBe(0)
  }, 150_000)
})
