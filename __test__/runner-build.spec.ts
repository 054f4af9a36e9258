// LocalProcessRunner.build / setSource / cancelBuild / removeBuild (SPEC §3 "Build") with real
// npm and a fixture project whose build script writes a small server; then deploy runs exactly
// what was built. Package-manager specifics are in build.spec.ts.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { ProjectSource } from '../index'
import { addon } from './helpers/addon'
import { rejectionOf } from './helpers/errors'
import { entities, makeRunner, shutdownRunners, withoutBlankLines } from './helpers/runner'
import { waitFor } from './helpers/wait'

const fixture = path.join(__dirname, 'fixtures', 'app')
const temps: string[] = []

afterEach(async () => {
  await shutdownRunners()
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** A copy of the fixture project in a fresh directory (the "repository" a source copies from). */
function projectCopy(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-project-'))
  temps.push(root)
  const dir = path.join(root, 'app')
  fs.cpSync(fixture, dir, { recursive: true })
  return dir
}

/** A source provider that copies like MastraAdmin's local source, remembering its calls. */
function copyingSource() {
  const calls: { source: ProjectSource; targetDir: string; self: unknown }[] = []
  const source = {
    type: 'local',
    async getProjectPath(this: unknown, project: ProjectSource, targetDir: string) {
      calls.push({ source: project, targetDir, self: this })
      fs.cpSync(project.path, targetDir, { recursive: true })
      return targetDir
    },
  }
  return { source, calls }
}

function setup(config = {}) {
  const made = makeRunner(config)
  const dir = projectCopy()
  const { project, deployment, build } = entities()
  project.sourceConfig = { path: dir }
  return { ...made, dir, project, deployment, build }
}

describe('build', () => {
  it('copies through the provider (keeping this), builds, and resolves the same Build object', async () => {
    const { runner, buildDir, project, deployment, build } = setup()
    const { source, calls } = copyingSource()
    runner.setSource(source)
    const lines: string[] = []
    const input = { ...build, status: 'queued' as const, logPath: '/logs/b.txt' }
    const result = await runner.build(project, input, { skipInstall: true }, (line) => lines.push(line))
    expect(result).toBe(input)
    expect(result).toMatchObject({ status: 'succeeded', errorMessage: null, logPath: '/logs/b.txt', id: build.id })
    expect(result.startedAt).toBeInstanceOf(Date)
    expect(result.completedAt!.getTime()).toBeGreaterThanOrEqual(result.startedAt!.getTime())
    expect(calls).toHaveLength(1)
    expect(calls[0].self).toBe(source)
    expect(calls[0].targetDir).toBe(path.join(buildDir, build.id))
    expect(calls[0].source).toMatchObject({ id: project.id, name: project.name, type: 'local', path: project.sourceConfig.path })
    expect(lines.some((line) => line.startsWith('building with NODE_ENV=production'))).toBe(true)
    expect(lines.some((line) => line.startsWith('[runner]'))).toBe(true)
    expect(lines.filter((line) => line.trim() === '')).toEqual([])
    expect(lines.join('\n')).toBe(withoutBlankLines(result.logs))
    // Deploy runs what was built.
    const server = await runner.deploy(project, deployment, result)
    expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200)
    expect(await runner.getLogs(server)).toContain('built server listening')
  })

  it('installs with npm when it does not skip, and keeps host secrets out of install and build', async () => {
    process.env.RUNNER_TEST_SECRET = 'hunter2'
    try {
      const { runner, project, build } = setup({ globalEnvVars: { FROM_GLOBAL: '1' } })
      runner.setSource(copyingSource().source)
      const result = await runner.build(project, build)
      expect(result.status).toBe('succeeded')
      expect(result.logs).toContain('building with NODE_ENV=production secret=absent')
      expect(result.logs).toMatch(/\[runner\].*npm/)
      expect(result.logs).not.toContain('hunter2')
    } finally {
      delete process.env.RUNNER_TEST_SECRET
    }
  })

  it('rejects without a source provider, and uses the local copy with defaultSource', async () => {
    const { runner, buildDir, project, build } = setup()
    expect(await rejectionOf(runner.build(project, build))).toBe('Project source provider not configured')
    expect(fs.existsSync(path.join(buildDir, build.id))).toBe(false)
    const local = setup({ defaultSource: 'local' })
    const result = await local.runner.build(local.project, local.build, { skipInstall: true })
    expect(result.status).toBe('succeeded')
    expect(result.logs).toMatch(/\[runner\] copied \d+ files/)
    expect(fs.existsSync(path.join(local.buildDir, local.build.id, '.mastra', 'output', 'index.mjs'))).toBe(true)
  })

  it('rejects with the provider message when it rejects, throws or returns no path', async () => {
    const { runner, project, build } = setup()
    const cases: [object, RegExp][] = [
      [{ type: 'x', getProjectPath: async () => Promise.reject(new Error('clone failed: repository not found')) }, /clone failed: repository not found/],
      [{ type: 'x', getProjectPath() { throw new Error('sync boom') } }, /sync boom/],
      [{ type: 'x', getProjectPath: async () => 42 }, /returned 42 instead of the project's path/],
    ]
    for (const [source, message] of cases) {
      runner.setSource(source as never)
      const text = await rejectionOf(runner.build(project, { ...build }))
      expect(text).toMatch(new RegExp(`^Source provider (failed|returned)`))
      expect(text).toMatch(message)
    }
    expect(() => runner.setSource({ type: 'x' } as never)).toThrow('Invalid source: getProjectPath must be a function')
  })

  it.each([
    ['../escape', "Invalid build.id: must not contain a path separator (got '../escape')"],
    ['a/b', "Invalid build.id: must not contain a path separator (got 'a/b')"],
    ['a\0b', 'Invalid build.id: must not contain a NUL character'],
    ['', 'Invalid build.id: must not be empty'],
    ['.cache', "Invalid build.id: must not start with '.', which is reserved for the runner's own directories (got '.cache')"],
  ])('rejects build id %j before touching the disk', async (id, message) => {
    const { runner, buildDir, project, build } = setup()
    const { source, calls } = copyingSource()
    runner.setSource(source)
    expect(await rejectionOf(runner.build(project, { ...build, id }))).toBe(message)
    expect(calls).toHaveLength(0)
    expect(fs.readdirSync(buildDir)).toEqual([])
  })

  it('fails a build script with its exit code and its message', async () => {
    const { runner, project, build } = setup()
    runner.setSource(copyingSource().source)
    const result = await runner.build(project, build, { skipInstall: true, envVars: { FIXTURE_BUILD: 'fail' } })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(/^Build failed with exit code 2 \(npm run build\)/)
    expect(result.errorMessage).toContain('error: type check failed')
  })

  it('fails a build killed by a signal, and one without output, saying so', async () => {
    const { runner, buildDir, project, build } = setup()
    runner.setSource(copyingSource().source)
    const killed = await runner.build(project, { ...build }, { skipInstall: true, envVars: { FIXTURE_BUILD: 'signal' } })
    expect(killed.status).toBe('failed')
    expect(killed.errorMessage).toMatch(/^Build failed(: killed by signal SIGKILL| with exit code 137) \(npm run build\)/)
    const empty = await runner.build(project, { ...build }, { skipInstall: true, envVars: { FIXTURE_BUILD: 'no-output' } })
    expect(empty.status).toBe('failed')
    expect(empty.errorMessage).toBe(`Build output not found: ${path.join(buildDir, build.id, '.mastra', 'output', 'index.mjs')}`)
  })

  it('times out, killing the whole tree', async () => {
    const { runner, project, build } = setup()
    runner.setSource(copyingSource().source)
    const result = await runner.build(project, build, { skipInstall: true, timeoutMs: 1500, envVars: { FIXTURE_BUILD: 'sleep' } })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(/^Build timed out after [\d.]+ s/)
    expect(runner.getStats().runningProcesses).toBe(0)
  })

  it('cancels a running build and a queued one', async () => {
    const { runner, project, build } = setup({ maxConcurrentBuilds: 1 })
    runner.setSource(copyingSource().source)
    const running: string[] = []
    const queuedLines: string[] = []
    const first = runner.build(project, { ...build, id: `${build.id}-a` }, { skipInstall: true, envVars: { FIXTURE_BUILD: 'sleep' } }, (l) => running.push(l))
    await waitFor(() => running.some((line) => line.startsWith('building with')))
    // The slot is taken: this one waits in the queue once its source is copied.
    const second = runner.build(project, { ...build, id: `${build.id}-b` }, { skipInstall: true }, (l) => queuedLines.push(l))
    await waitFor(() => queuedLines.some((line) => line.includes('waiting for a build slot')))
    await runner.cancelBuild(`${build.id}-b`)
    await runner.cancelBuild(`${build.id}-a`)
    expect((await first).status).toBe('cancelled')
    const queued = await second
    expect(queued.status).toBe('cancelled')
    expect(queued.logs).toContain('it never started')
    await runner.cancelBuild('never-started')
  })

  it('cancels a build whose source is still being copied', async () => {
    const { runner, project, build } = setup()
    let release: (() => void) | null = null
    runner.setSource({
      type: 'slow',
      getProjectPath: (source: ProjectSource, targetDir: string) =>
        new Promise<string>((resolve) => {
          release = () => {
            fs.cpSync(source.path, targetDir, { recursive: true })
            resolve(targetDir)
          }
        }),
    })
    const pending = runner.build(project, build, { skipInstall: true })
    await waitFor(() => release !== null, 20_000, 'the provider to be called')
    await runner.cancelBuild(build.id)
    release!()
    const result = await pending
    expect(result.status).toBe('cancelled')
    expect(result.errorMessage).toBe('Build cancelled while its source was copied')
  })

  it('runs at most maxConcurrentBuilds at once, in FIFO order', async () => {
    // Unsandboxed: the build scripts write markers named by their host pids outside the builds.
    const { runner, project, build } = setup({ maxConcurrentBuilds: 2, sandbox: false })
    runner.setSource(copyingSource().source)
    const markers = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-markers-'))
    temps.push(markers)
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        // Five builds of one unchanged project: without `cache: false` the later ones would
        // reuse the first one's output instead of running.
        runner.build(project, { ...build, id: `${build.id}-${i}` }, {
          skipInstall: true,
          cache: false,
          envVars: { FIXTURE_MARKER_DIR: markers, FIXTURE_BUILD_MS: '300' },
        }),
      ),
    )
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('succeeded'))
    const intervals = fs
      .readdirSync(markers)
      .filter((f) => f.endsWith('.start'))
      .map((f) => {
        const pid = f.slice(0, -'.start'.length)
        return [Number(fs.readFileSync(path.join(markers, f), 'utf8')), Number(fs.readFileSync(path.join(markers, `${pid}.end`), 'utf8'))]
      })
    expect(intervals).toHaveLength(5)
    for (const [start] of intervals) {
      const overlapping = intervals.filter(([s, e]) => s <= start && start < e).length
      expect(overlapping).toBeLessThanOrEqual(2)
    }
    expect(results.some((r) => r.logs.includes('waiting'))).toBe(true)
  })

  it('removeBuild deletes a build directory and refuses bad ids', async () => {
    const { runner, buildDir, project, build } = setup()
    runner.setSource(copyingSource().source)
    await runner.build(project, build, { skipInstall: true })
    expect(fs.existsSync(path.join(buildDir, build.id))).toBe(true)
    await runner.removeBuild(build.id)
    expect(fs.existsSync(path.join(buildDir, build.id))).toBe(false)
    await runner.removeBuild(build.id)
    expect(await rejectionOf(runner.removeBuild('../x'))).toBe("Invalid build.id: must not contain a path separator (got '../x')")
  })

  it('shutdown() cancels a running build and leaves no process', async () => {
    const { runner, project, build } = setup()
    runner.setSource(copyingSource().source)
    const lines: string[] = []
    const running = runner.build(project, build, { skipInstall: true, envVars: { FIXTURE_BUILD: 'sleep' } }, (l) => lines.push(l))
    await waitFor(() => lines.some((line) => line.startsWith('building with')))
    await runner.shutdown()
    expect((await running).status).toBe('cancelled')
  })
})

describe('LocalProjectSource as the runner source', () => {
  it('builds a project found under a base path', async () => {
    const { runner, dir, project, build } = setup()
    const source = new addon.LocalProjectSource({ basePaths: [path.dirname(dir)] })
    runner.setSource(source)
    const result = await runner.build(project, build, { skipInstall: true })
    expect(result.status).toBe('succeeded')
  })
})
