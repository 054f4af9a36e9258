// End to end, as MastraAdmin runs it: the real example app (examples/hello-mastra, @mastra/core
// with the mastra CLI) is copied, installed with npm from the registry, built with `mastra
// build`, deployed, called over HTTP, and stopped, leaving no process and a free port.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { addon, packageRoot } from './helpers/addon'
import { alive, buildExample, entities, exampleRunner, listening } from './helpers/runner'
import { waitFor } from './helpers/wait'

const example = path.join(packageRoot, 'examples', 'hello-mastra')
const { runner } = exampleRunner('runner-e2e-', { start: 9400, end: 9410 })

describe('examples/hello-mastra', () => {
  it('builds with the real mastra CLI, serves its tool and workflow, and stops cleanly', async () => {
    runner.setSource(new addon.LocalProjectSource({ basePaths: [path.dirname(example)] }))
    const { project, deployment, build } = entities()
    project.name = 'hello-mastra'
    project.slug = 'hello-mastra'
    project.sourceConfig = { path: example }
    const built = await buildExample(runner, project, build)

    const server = await runner.deploy(project, deployment, built)
    const base = `http://127.0.0.1:${server.port}`
    const health = await fetch(`${base}/health`)
    expect(health.status).toBe(200)
    const greeting = await fetch(`${base}/api/tools/greetTool/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: { name: 'Ada' } }),
    })
    expect(greeting.status).toBe(200)
    expect(await greeting.json()).toEqual({ greeting: 'Hello, Ada!' })
    const shout = await fetch(`${base}/api/workflows/shoutWorkflow/start-async`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputData: { text: 'hi' } }),
    })
    expect((await shout.json()).result).toEqual({ text: 'HI!' })
    // With NODE_ENV=production Mastra logs little; its storage warning is always there.
    await waitFor(async () => /\[stderr\] No `storage` configured on Mastra/.test(await runner.getLogs(server)), 20_000, 'the server log line')

    await runner.stop(server)
    expect(alive(server.processId!)).toBe(false)
    expect(await listening(server.port)).toBe(false)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  }, 480_000)
})

describe('a mastra init-style app without a build script', () => {
  it("builds with the project's own mastra CLI and serves /health", async () => {
    // The example without scripts.build, as `mastra init` makes projects; the npm cache of the
    // build above is warm.
    const projects = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-e2e-init-'))
    const copy = path.join(projects, 'hello-init')
    fs.cpSync(example, copy, { recursive: true, filter: (source) => !/node_modules|\.mastra/.test(path.relative(example, source)) })
    const manifest = JSON.parse(fs.readFileSync(path.join(copy, 'package.json'), 'utf8'))
    delete manifest.scripts?.build
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify(manifest, null, 2))
    try {
      runner.setSource(new addon.LocalProjectSource({ basePaths: [projects] }))
      const { project, deployment, build } = entities()
      project.sourceConfig = { path: copy }
      const lines: string[] = []
      const built = await runner.build(project, build, {}, (line) => lines.push(line))
      expect(built.errorMessage).toBeNull()
      expect(built.status).toBe('succeeded')
      expect(lines.join('\n')).toMatch(/mastra build/)
      const server = await runner.deploy(project, deployment, built)
      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200)
      await runner.stop(server)
    } finally {
      fs.rmSync(projects, { recursive: true, force: true })
    }
  }, 480_000)
})
