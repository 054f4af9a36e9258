// The mastra-runner-local command line, run as a user runs it.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { alive, listening } from './helpers/runner'
import { waitFor } from './helpers/wait'

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

  it('up builds a project, serves it, streams its log, and stops cleanly on Ctrl-C', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cli-'))
    const project = path.join(root, 'app')
    fs.cpSync(path.join(packageRoot, '__test__', 'fixtures', 'app'), project, { recursive: true })
    const child = spawn(process.execPath, [cli, 'up', project, '--build-dir', path.join(root, 'builds'), '--port', '9450', '--env', 'GREETING=hi'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    try {
      let out = ''
      child.stdout.on('data', (chunk) => (out += chunk))
      child.stderr.on('data', (chunk) => (out += chunk))
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
      await waitFor(() => /Serving app at http:\/\/127\.0\.0\.1:\d+/.test(out), 120_000, 'the URL')
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(out)![1])
      expect(port).toBe(9450)
      expect(out).toMatch(/building with NODE_ENV=production/)
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
      await waitFor(() => out.includes('built server listening'), 20_000, 'the server log')
      expect(JSON.parse(await (await fetch(`http://127.0.0.1:${port}/env`)).text()).GREETING).toBe('hi')
      child.kill('SIGINT')
      expect(await exited).toBe(0)
      expect(out).toContain('Stopped. No process left behind.')
      expect(await listening(port)).toBe(false)
      const pid = Number(/pid (\d+)/.exec(out)![1])
      expect(alive(pid)).toBe(false)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      fs.rmSync(root, { recursive: true, force: true })
    }
  }, 180_000)

  it('build reports a failed build with its message and exit code 1', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cli-'))
    const project = path.join(root, 'broken')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'broken', scripts: { build: 'exit 4' } }))
    try {
      const result = spawnSync(process.execPath, [cli, 'build', project, '--build-dir', path.join(root, 'builds')], { encoding: 'utf8' })
      expect(result.status).toBe(1)
      expect(result.stderr).toMatch(/Build failed: Build failed with exit code 4 \(npm run build\)/)
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }, 120_000)
})
