// The mastra-runner-local command line, run as a user runs it.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'

const cli = path.join(packageRoot, 'bin', 'mastra-runner-local.cjs')
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })

describe('mastra-runner-local', () => {
  it('prints usage with --help', () => {
    const result = run('--help')
    expect(result.status).toBe(0)
    expect(result.stdout).toMatch(/^Usage: mastra-runner-local <command>/)
  })

  it('prints the resolved configuration', () => {
    const result = run('config', '{"portRange":{"start":5000,"end":5010}}')
    expect(result.status).toBe(0)
    const config = JSON.parse(result.stdout)
    expect(config.portRange).toEqual({ start: 5000, end: 5010 })
    expect(config.maxConcurrentBuilds).toBe(3)
  })

  it('exits 1 with the validation message for a bad config', () => {
    const result = run('config', '{"portRange":{"start":5010,"end":5000}}')
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe('mastra-runner-local: Invalid portRange: start (5010) is greater than end (5000)')
  })

  it('exits 2 on an unknown command', () => {
    const result = run('launch')
    expect(result.status).toBe(2)
    expect(result.stderr).toMatch(/unknown command 'launch'/)
  })
})
