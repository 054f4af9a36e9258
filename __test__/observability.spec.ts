// setObservabilityStorage: server and build logs written as MastraAdmin's ingestion reads them
// (JSONL `log` events under observability/log/{projectId}/), batched, flushed by stop() and
// shutdown(), and a storage that rejects, throws or hangs costs the servers nothing.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { FileStorageProvider } from '../index'
import { addon, packageRoot } from './helpers/addon'
import { entities, installBuild, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

const temps: string[] = []

afterEach(async () => {
  await shutdownRunners()
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** A local file storage under a fresh directory, remembering the order of its writes. */
function fileStorage() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'observability-spec-'))
  temps.push(root)
  const writes: string[] = []
  const full = (p: string) => path.join(root, p)
  const storage: FileStorageProvider = {
    type: 'local',
    async write(p, content) {
      await fs.promises.mkdir(path.dirname(full(p)), { recursive: true })
      await fs.promises.writeFile(full(p), content)
      writes.push(p)
    },
    read: (p) => fs.promises.readFile(full(p)),
    async list(prefix) {
      return writes.filter((p) => p.startsWith(prefix)).map((p) => ({ path: p, size: fs.statSync(full(p)).size, lastModified: fs.statSync(full(p)).mtime }))
    },
    delete: (p) => fs.promises.rm(full(p), { force: true }),
    move: (from, to) => fs.promises.rename(full(from), full(to)),
    async exists(p) {
      return fs.existsSync(full(p))
    },
  }
  /** Every event written, file after file, in the order of the writes. */
  const events = () =>
    writes.flatMap((p) => {
      const content = fs.readFileSync(full(p), 'utf8')
      expect(content.endsWith('\n')).toBe(true)
      return content
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line))
    })
  return { storage, writes, events, root }
}

function observability(runner: ReturnType<typeof makeRunner>['runner']) {
  const stats = runner.getStats().observability
  if (!stats) throw new Error('getStats().observability is missing')
  return stats
}

/** A line of `getLogs` as its event's `message`: without the `[stderr] ` tag. */
function withoutStderrTag(line: string): string {
  return line.replace(/^\[stderr\] /, '')
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('setObservabilityStorage', () => {
  it('writes every line of a server, in order, with its level and fields', async () => {
    const { runner, buildDir } = makeRunner({ observability: { flushIntervalMs: 200 } })
    expect(runner.getStats().observability).toBeUndefined()
    const files = fileStorage()
    runner.setObservabilityStorage(files.storage)
    expect(observability(runner)).toEqual({ written: 0, pending: 0, dropped: 0 })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id, 'chatty')
    const server = await runner.deploy(project, deployment, build)
    // stdout and stderr are read by separate pipes: wait for every line, not for the last one printed.
    await waitFor(async () => (await runner.getLogs(server)).split('\n').length >= 1001, 20_000, 'the whole output')
    const logged = (await runner.getLogs(server)).split('\n')
    expect(logged).toHaveLength(1001)
    await waitFor(() => observability(runner).written === logged.length, 20_000, 'every line written')
    expect(observability(runner)).toEqual({ written: 1001, pending: 0, dropped: 0 })

    const pattern = new RegExp(`^observability/log/${project.id}/\\d{8}T\\d{6}Z_[0-9a-f]{12}\\.jsonl$`)
    for (const p of files.writes) expect(p).toMatch(pattern)
    expect(files.writes.length).toBeGreaterThanOrEqual(2)
    const events = files.events()
    expect(events.map((e) => (e.data.attributes.stream === 'stderr' ? `[stderr] ${e.data.message}` : e.data.message))).toEqual(logged)
    const levelOf = (message: string) => (message.includes('pino line 500') ? 'warn' : message.startsWith('err ') ? 'error' : 'info')
    expect(events.map((e) => e.data.level)).toEqual(events.map((e) => levelOf(e.data.message)))
    expect(events.filter((e) => e.data.level === 'error')).toHaveLength(100)
    expect(events.filter((e) => e.data.level === 'warn')).toHaveLength(1)
    for (const event of events) {
      expect(Object.keys(event)).toEqual(['type', 'data'])
      expect(event.type).toBe('log')
      expect(event.data).toMatchObject({
        projectId: project.id,
        deploymentId: deployment.id,
        traceId: null,
        spanId: null,
        attributes: { serverId: server.id, source: 'server', stream: event.data.message.startsWith('err ') ? 'stderr' : 'stdout' },
      })
      expect(event.data.id).toMatch(UUID)
      expect(new Date(event.data.timestamp).toISOString()).toBe(event.data.timestamp)
    }
    expect(new Set(events.map((e) => e.data.id)).size).toBe(events.length)
  })

  it('flushes what is pending when a server stops, and before shutdown() resolves', async () => {
    const config = { observability: { batchSize: 100_000, flushIntervalMs: 600_000 } }
    const { runner, buildDir } = makeRunner(config)
    const files = fileStorage()
    runner.setObservabilityStorage(files.storage)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    await waitFor(() => observability(runner).pending >= 2, 10_000, 'the banner pending')
    expect(files.writes).toEqual([])
    await runner.stop(server)
    const logged = (await runner.getLogs(server)).split('\n')
    await waitFor(() => observability(runner).written === logged.length, 5_000, 'the flush of stop()')
    expect(files.events().map((e) => e.data.message)).toEqual(logged.map((l) => l.replace(/^\[stderr\] /, '')))

    const second = makeRunner(config)
    const other = fileStorage()
    second.runner.setObservabilityStorage(other.storage)
    const next = entities()
    installBuild(second.buildDir, next.build.id)
    const running = await second.runner.deploy(next.project, next.deployment, next.build)
    await waitFor(() => observability(second.runner).pending >= 2, 10_000, 'the banner pending')
    const before = (await second.runner.getLogs(running)).split('\n')
    await second.runner.shutdown()
    // shutdown() frees the retained logs (logMemoryLimitMb): compare with what was printed.
    const messages = other.events().map((e) => e.data.message)
    expect(observability(second.runner)).toEqual({ written: messages.length, pending: 0, dropped: 0 })
    expect(messages.slice(0, before.length)).toEqual(before.map((l) => l.replace(/^\[stderr\] /, '')))
    expect(messages.at(-1)).toMatch(/stopped/)
  })

  it("writes a build's log under its project, tagged with the build", async () => {
    const { runner } = makeRunner({ observability: { flushIntervalMs: 600_000 } })
    const files = fileStorage()
    runner.setObservabilityStorage(files.storage)
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'observability-project-'))
    temps.push(root)
    fs.cpSync(path.join(__dirname, 'fixtures', 'app'), path.join(root, 'app'), { recursive: true })
    const { project, build } = entities()
    project.sourceConfig = { path: path.join(root, 'app') }
    runner.setSource({
      type: 'local',
      async getProjectPath(source: { path: string }, targetDir: string) {
        fs.cpSync(source.path, targetDir, { recursive: true })
        return targetDir
      },
    } as never)
    const result = await runner.build(project, build, { skipInstall: true })
    expect(result.status).toBe('succeeded')
    // Every line of the build's log, blank ones too (a build's onLog leaves those out).
    const lines = result.logs.split('\n')
    await waitFor(() => observability(runner).written === lines.length, 5_000, 'the build log written when it ended')
    const events = files.events()
    expect(events.map((e) => e.data.message)).toEqual(lines.map((l) => l.replace(/^\[stderr\] /, '')))
    for (const event of events) {
      expect(event.data).toMatchObject({ projectId: project.id, deploymentId: null, attributes: { buildId: build.id, source: 'build' } })
    }
    for (const p of files.writes) expect(p.startsWith(`observability/log/${project.id}/`)).toBe(true)
  })

  for (const kind of ['rejects', 'throws', 'hangs'] as const) {
    it(`a storage that ${kind} leaves the server, getLogs and stop() alone and counts the drops`, async () => {
      const { runner, buildDir } = makeRunner({ providerTimeoutMs: 200, observability: { batchSize: 500, flushIntervalMs: 100 } })
      let calls = 0
      const storage = {
        type: 'broken',
        write() {
          calls += 1
          if (kind === 'throws') throw new Error('storage exploded')
          if (kind === 'rejects') return Promise.reject(new Error('disk full'))
          return new Promise<void>(() => {})
        },
      }
      runner.setObservabilityStorage(storage as unknown as FileStorageProvider)
      const { project, deployment, build } = entities()
      installBuild(buildDir, build.id, 'chatty')
      const server = await runner.deploy(project, deployment, build)
      // stdout and stderr are read by separate pipes: wait for every line, not for the last one printed.
      await waitFor(async () => (await runner.getLogs(server)).split('\n').length >= 1001, 20_000, 'the whole output')
      expect((await runner.getLogs(server)).split('\n')).toHaveLength(1001)
      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200)
      expect((await runner.healthCheck(server)).healthy).toBe(true)
      await waitFor(() => observability(runner).dropped === 1001, 30_000, 'every event dropped')
      expect(observability(runner)).toEqual({ written: 0, pending: 0, dropped: 1001 })
      // Every batch was tried exactly three times (one attempt and two retries), then dropped.
      expect(calls).toBeGreaterThanOrEqual(3)
      expect(calls % 3).toBe(0)
      const stopping = Date.now()
      await runner.stop(server)
      expect(Date.now() - stopping).toBeLessThan(3_000)
      expect(runner.getStats().runningProcesses).toBe(0)
    })
  }

  // Issue 27, O09: a second setObservabilityStorage hands what the first storage had pending
  // to it (or counts it dropped); nothing is lost without getStats() saying so.
  it('O09: a new storage: what the old one had pending is written to it at once and counted; later lines go to the new one', async () => {
    const { runner, buildDir } = makeRunner({ observability: { batchSize: 100_000, flushIntervalMs: 600_000 } })
    const first = fileStorage()
    runner.setObservabilityStorage(first.storage)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    await waitFor(async () => (await runner.getLogs(server)).includes('a warning on stderr'), 10_000, 'the banner')
    const before = (await runner.getLogs(server)).split('\n').map(withoutStderrTag)
    await waitFor(() => observability(runner).pending === before.length, 10_000, 'the banner pending')
    expect(first.writes).toEqual([])

    const second = fileStorage()
    runner.setObservabilityStorage(second.storage)
    // Not after flushIntervalMs (10 minutes): the swap writes the old storage's events.
    await waitFor(() => observability(runner).written === before.length, 5_000, 'the hand-over to the first storage')
    expect(first.events().map((e) => e.data.message).sort()).toEqual([...before].sort())
    expect(observability(runner)).toEqual({ written: before.length, pending: 0, dropped: 0 })
    expect(second.writes).toEqual([])

    await runner.stop(server)
    const all = (await runner.getLogs(server)).split('\n').map(withoutStderrTag)
    await waitFor(() => observability(runner).written === all.length, 5_000, 'the flush of stop()')
    expect(second.events().map((e) => e.data.message)).toEqual(all.slice(before.length))
    expect(first.events()).toHaveLength(before.length)
    expect(observability(runner)).toEqual({ written: all.length, pending: 0, dropped: 0 })
  })

  it('O09: a new storage while the old one hangs: its pending events are counted dropped within providerTimeoutMs', async () => {
    const { runner, buildDir } = makeRunner({ providerTimeoutMs: 300, observability: { batchSize: 100_000, flushIntervalMs: 600_000 } })
    let calls = 0
    const hanging = {
      type: 'hangs',
      write() {
        calls += 1
        return new Promise<void>(() => {})
      },
    }
    runner.setObservabilityStorage(hanging as unknown as FileStorageProvider)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    await waitFor(async () => (await runner.getLogs(server)).includes('a warning on stderr'), 10_000, 'the banner')
    const before = (await runner.getLogs(server)).split('\n')
    await waitFor(() => observability(runner).pending === before.length, 10_000, 'the banner pending')

    const second = fileStorage()
    runner.setObservabilityStorage(second.storage)
    const swapped = Date.now()
    await waitFor(() => observability(runner).dropped === before.length, 5_000, 'the hand-over given up and counted')
    expect(Date.now() - swapped).toBeLessThan(2_000)
    expect(observability(runner)).toEqual({ written: 0, pending: 0, dropped: before.length })
    // One attempt, cut off by providerTimeoutMs; no retry once the hand-over's time is up.
    expect(calls).toBe(1)
    await runner.stop(server)
    const all = (await runner.getLogs(server)).split('\n')
    await waitFor(() => observability(runner).written === all.length - before.length, 5_000, 'the flush of stop()')
    expect(observability(runner)).toEqual({ written: all.length - before.length, pending: 0, dropped: before.length })
  })

  // Issue 27, O10: provider methods that answer synchronously (a value, not a Promise) are
  // awaited as `await` would; nothing is thrown out of an N-API callback, which under the strict
  // uncaught-exceptions policy would end the host.
  it('O10: synchronous write, getProjectPath, registerRoute and removeRoute work in a host with --force-node-api-uncaught-exceptions-policy=true', async () => {
    // The child host gets this runner's build directory and ports; this one never deploys.
    const { runner: idle, buildDir } = makeRunner()
    const { portRange } = idle.getConfig()
    const { project, deployment, build } = entities()
    const app = fs.mkdtempSync(path.join(os.tmpdir(), 'observability-project-'))
    temps.push(app)
    fs.cpSync(path.join(__dirname, 'fixtures', 'app'), app, { recursive: true })
    project.sourceConfig = { path: app }
    const script = `
      const fs = require('node:fs')
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner({ buildDir: ${JSON.stringify(buildDir)}, portRange: ${JSON.stringify(portRange)},
        shutdownTimeoutMs: 2000, observability: { flushIntervalMs: 50 } })
      const files = []
      const routes = new Map()
      // Each method answers synchronously: a value or undefined, never a Promise.
      runner.setObservabilityStorage({ type: 'memory', write(path, content) { files.push(content) } })
      runner.setSource({ type: 'local', getProjectPath(source, targetDir) { fs.cpSync(source.path, targetDir, { recursive: true }); return targetDir } })
      runner.setRouter({
        type: 'memory',
        registerRoute(config) {
          const info = { routeId: 'route-' + config.deploymentId, deploymentId: config.deploymentId, publicUrl: 'http://x.local', status: 'active', createdAt: new Date() }
          routes.set(info.routeId, info)
          return info
        },
        removeRoute(routeId) { routes.delete(routeId) },
      })
      const stats = () => runner.getStats().observability
      ;(async () => {
        const built = await runner.build(${JSON.stringify(project)}, ${JSON.stringify(build)}, { skipInstall: true })
        const server = await runner.deploy(${JSON.stringify(project)}, ${JSON.stringify(deployment)}, built)
        const routed = routes.size
        await runner.stop(server)
        // Every line of the build's log (blank ones too) and of the server's.
        const lines = built.logs.split('\\n').length + (await runner.getLogs(server)).split('\\n').length
        const deadline = Date.now() + 20000
        while (stats().written + stats().dropped < lines && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
        await runner.shutdown()
        const stored = files.join('').split('\\n').filter(Boolean).length
        console.log('result ' + JSON.stringify({ status: built.status, routed, routes: routes.size, lines, stored, stats: stats() }))
      })().catch((error) => { console.log('failed ' + error.message); process.exit(2) })`
    const host = spawn(process.execPath, ['--force-node-api-uncaught-exceptions-policy=true', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    host.stdout.on('data', (chunk) => (out += chunk))
    host.stderr.on('data', (chunk) => (err += chunk))
    const code = await new Promise<number | null>((resolve) => host.once('exit', (c) => resolve(c)))
    expect({ code, err }).toEqual({ code: 0, err: '' })
    const result = JSON.parse(/^result (.*)$/m.exec(out)![1])
    expect(result).toEqual({
      status: 'succeeded',
      routed: 1,
      routes: 0,
      lines: result.lines,
      stored: result.lines,
      stats: { written: result.lines, pending: 0, dropped: 0 },
    })
    expect(result.lines).toBeGreaterThan(3)
  })

  it('names the wrong field of the observability config, and a storage without write', () => {
    const make = (observability: unknown) => () => new addon.LocalProcessRunner({ observability } as never)
    expect(make({ batchSize: 0 })).toThrow('Invalid observability.batchSize')
    expect(make({ flushIntervalMs: 'soon' })).toThrow('Invalid observability.flushIntervalMs')
    expect(make({ maxFileSize: 1.5 })).toThrow('Invalid observability.maxFileSize')
    expect(make(7)).toThrow('Invalid observability')
    const { runner } = makeRunner()
    expect(() => runner.setObservabilityStorage({ type: 'x' } as never)).toThrow('Invalid storage: write must be a function')
    expect(() => runner.setObservabilityStorage(null as never)).toThrow('Invalid storage')
    expect(runner.getStats().observability).toBeUndefined()
  })
})
