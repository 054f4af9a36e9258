// LocalProcessRunner deploy, supervise and stop (SPEC §3 "Deploy", "Running servers",
// "Stopping") with real processes, real ports and real HTTP. The server is a fixture standing
// in for a built Mastra app; the end-to-end spec runs a real one.
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'

import type { RouteConfig } from '../index'
import { packageRoot } from './helpers/addon'
import { alive, entities, installBuild, listening, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

async function get(port: number, path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`)
}

describe('deploy', () => {
  it('starts the build output, waits for health and resolves a RunningServer', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    expect(server).toMatchObject({
      deploymentId: deployment.id,
      buildId: build.id,
      host: '127.0.0.1',
      healthStatus: 'healthy',
      containerId: null,
      stoppedAt: null,
    })
    expect(server.processId).toBeGreaterThan(1)
    expect(server.startedAt).toBeInstanceOf(Date)
    expect(server.lastHealthCheck).toBeInstanceOf(Date)
    expect((await get(server.port, '/health')).status).toBe(200)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 1, allocatedPorts: [server.port], availablePorts: 19 })
    await waitFor(async () => (await runner.getLogs(server)).includes('listening'))
    expect(await runner.healthCheck(server)).toEqual({ healthy: true })
  })

  it('gives the server the SPEC environment and none of the host secrets', async () => {
    process.env.ADMIN_DATABASE_PASSWORD = 'hunter2'
    try {
      const { runner, buildDir } = makeRunner({ globalEnvVars: { SHARED: 'global', GLOBAL_ONLY: 'g' } })
      const { project, deployment, build } = entities()
      installBuild(buildDir, build.id)
      const server = await runner.deploy(project, deployment, build, { envVars: { SHARED: 'options', PORT: '1' } })
      const env = await (await get(server.port, '/env')).json()
      expect(env).toMatchObject({
        SHARED: 'options',
        GLOBAL_ONLY: 'g',
        NODE_ENV: 'production',
        PORT: String(server.port),
        MASTRA_DEPLOYMENT_ID: deployment.id,
        MASTRA_PROJECT_ID: project.id,
      })
      expect(JSON.stringify(env)).not.toContain('hunter2')
    } finally {
      delete process.env.ADMIN_DATABASE_PASSWORD
    }
  })

  it('gives two parallel deploys different ports, and honours a preferred free port', async () => {
    const { runner, buildDir } = makeRunner()
    const a = entities()
    const b = entities()
    installBuild(buildDir, a.build.id)
    installBuild(buildDir, b.build.id)
    const preferred = runner.getConfig().portRange.start + 7
    const [first, second] = await Promise.all([
      runner.deploy(a.project, a.deployment, a.build),
      runner.deploy(b.project, b.deployment, b.build, { port: preferred }),
    ])
    expect(first.port).not.toBe(second.port)
    expect(second.port).toBe(preferred)
  })

  it('fails fast with the exit code and output of a server that crashes on boot', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const started = Date.now()
    const error = await runner
      .deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_ON_START: '1' }, healthCheckTimeoutMs: 60_000 })
      .catch((e: Error) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/^Server process \d+ exited with exit code 3 before it became healthy; its last output:\n\[stderr\] fatal: cannot connect to the database$/)
    // Far below the 60 s health timeout: the exit was noticed, not waited out.
    expect(Date.now() - started).toBeLessThan(30_000)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  })

  it('kills an unhealthy server and frees its port when the health timeout runs out', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const error = await runner
      .deploy(project, deployment, build, { envVars: { FIXTURE_HEALTH_STATUS: '503' }, healthCheckTimeoutMs: 800 })
      .catch((e: Error) => e)
    expect((error as Error).message).toMatch(/did not answer \/health with a 2xx status within 800 ms .*HTTP 503/)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
    const port = runner.getConfig().portRange.start
    expect(await listening(port)).toBe(false)
  })

  it('rejects a build without output, naming the path and the build id', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    await expect(runner.deploy(project, deployment, build)).rejects.toThrow(
      `Build output not found for build '${build.id}': ${buildDir}/${build.id}/.mastra/output/index.mjs does not exist`,
    )
  })

  it('rejects ids that could leave the build directory, and missing entities', async () => {
    const { runner } = makeRunner()
    const { project, deployment, build } = entities()
    await expect(runner.deploy(project, deployment, { ...build, id: '../etc' })).rejects.toThrow(
      "Invalid build.id: must not contain a path separator (got '../etc')",
    )
    await expect(runner.deploy(project, deployment, { ...build, id: '' })).rejects.toThrow('Invalid build.id: must not be empty')
    await expect(runner.deploy({ ...project, id: 'a\0b' }, deployment, build)).rejects.toThrow(
      'Invalid project.id: must not contain a NUL character',
    )
    await expect(runner.deploy(undefined as never, deployment, build)).rejects.toThrow('Invalid project: expected an object, got undefined')
    await expect(runner.deploy(project, deployment, build, { port: 0 })).rejects.toThrow(
      'Invalid options.port: must be an integer from 1 to 65535 (got 0)',
    )
  })
})

describe('running servers', () => {
  it('notices a crash at once, keeps the logs, keeps the port reserved until stop()', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_AFTER_MS: '300' } })
    await waitFor(() => runner.getStats().servers[0]?.healthStatus === 'unhealthy')
    expect(await runner.healthCheck(server)).toEqual({ healthy: false, message: 'Process is not running' })
    const logs = await runner.getLogs(server)
    expect(logs).toContain('[stderr] crashing now')
    expect(logs).toContain('[stderr] [runner] process exited with exit code 1')
    expect(await runner.getResourceUsage(server)).toEqual({ memoryUsageMb: null, cpuPercent: null })
    // No stranger takes the crashed server's port before its owner decides (as systemd keeps a
    // failed unit's resources until it is reset).
    expect(runner.getStats().allocatedPorts).toEqual([server.port])
    await runner.stop(server)
    expect(runner.getStats().allocatedPorts).toEqual([])
  })

  it('restarts a crashed server on the same port under a restart policy', async () => {
    const { runner, buildDir } = makeRunner({ restartPolicy: { maxRestarts: 5, backoffMs: 50, maxBackoffMs: 200 } })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_AFTER_MS: '400' } })
    await waitFor(() => runner.getStats().restarts >= 1)
    await waitFor(() => runner.getStats().servers[0]?.healthStatus === 'healthy')
    const [summary] = runner.getStats().servers
    expect(summary.port).toBe(server.port)
    expect(summary.processId).not.toBe(server.processId)
    expect((await get(server.port, '/health')).status).toBe(200)
  })

  it('stays down once the restarts are used up', async () => {
    const { runner, buildDir } = makeRunner({ restartPolicy: { maxRestarts: 1, backoffMs: 20, maxBackoffMs: 20 } })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_AFTER_MS: '400' } })
    await waitFor(async () => (await runner.getLogs(server)).includes('restart limit reached'))
    await waitFor(() => runner.getStats().servers[0]?.healthStatus === 'unhealthy')
    expect(runner.getStats().servers[0]).toMatchObject({ healthStatus: 'unhealthy', restarts: 1 })
    expect(runner.getStats().allocatedPorts).toEqual([server.port])
    await runner.stop(server)
    expect(runner.getStats().allocatedPorts).toEqual([])
  })

  it('reads logs: all, tail, since (which wins), pages, and unknown servers', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    await waitFor(async () => (await runner.getLogs(server)).includes('warning'))
    const all = await runner.getLogs(server)
    // stdout and stderr are two pipes: order holds within a stream, not across them.
    const lines = all.split('\n')
    expect(lines).toHaveLength(2)
    expect(lines.some((line) => /^listening on \d+ at \d+$/.test(line))).toBe(true)
    expect(lines).toContain('[stderr] a warning on stderr')
    expect(await runner.getLogs(server, { tail: 1 })).toBe(lines[1])
    expect(await runner.getLogs(server, { tail: 1, since: new Date(0) })).toBe(all)
    expect(await runner.getLogs(server, { since: new Date(Date.now() + 60_000) })).toBe('')
    const page = await runner.getLogsPaginated(server, { limit: 1 })
    expect(page.entries).toHaveLength(1)
    expect(`${page.entries[0].stream === 'stderr' ? '[stderr] ' : ''}${page.entries[0].line}`).toBe(lines[1])
    expect(page.hasMore).toBe(true)
    const older = await runner.getLogsPaginated(server, { limit: 5, before: page.oldestCursor! })
    expect(older.entries).toHaveLength(1)
    expect(Number(older.entries[0].id)).toBeLessThan(Number(page.entries[0].id))
    expect(older.hasMore).toBe(false)
    const unknown = { ...server, id: 'no-such-server' }
    expect(await runner.getLogs(unknown)).toBe('')
    expect((await runner.getLogsPaginated(unknown)).entries).toEqual([])
  })

  it('streams new lines to streamLogs and setOnServerLog subscribers', async () => {
    const { runner, buildDir } = makeRunner({ restartPolicy: { maxRestarts: 3, backoffMs: 50, maxBackoffMs: 100 } })
    const all: [string, string, string, string | undefined][] = []
    runner.setOnServerLog((serverId, line, stream, id) => all.push([serverId, line, stream, id]))
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_AFTER_MS: '300' } })
    const streamed: string[] = []
    const unsubscribe = runner.streamLogs(server, (line) => streamed.push(line))
    await waitFor(() => streamed.some((line) => line.startsWith('[stderr] [runner] restarted')))
    unsubscribe()
    unsubscribe()
    expect(streamed).toContain('[stderr] crashing now')
    expect(streamed.some((line) => line.startsWith('listening on'))).toBe(true)
    await waitFor(() => all.some(([, line]) => line.startsWith('[runner] restarted')))
    const mine = all.filter(([id]) => id === server.id)
    expect(mine.length).toBeGreaterThan(0)
    expect(mine.find(([, line]) => line === 'crashing now')?.[2]).toBe('stderr')
    const ids = mine.map(([, , , id]) => Number(id))
    expect(ids).toEqual([...ids].sort((x, y) => x - y))
  })

  it('reports memory and CPU of the whole tree by server id', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    const usage = await runner.getResourceUsage({ ...server, processId: 1 })
    expect(usage.memoryUsageMb!).toBeGreaterThan(10)
    expect(usage.cpuPercent!).toBeGreaterThanOrEqual(0)
    // Later samples (the tree's /proc files only, read at the call) see the same server...
    await new Promise((resolve) => setTimeout(resolve, 100))
    const again = await runner.getResourceUsage(server)
    expect(again.memoryUsageMb!).toBeGreaterThan(10)
    expect(again.cpuPercent!).toBeGreaterThanOrEqual(0)
    // ...and nothing once it is stopped.
    await runner.stop(server)
    expect(await runner.getResourceUsage(server)).toEqual({ memoryUsageMb: null, cpuPercent: null })
  })
})

describe('stopping', () => {
  it('stop() kills a tree whose grandchild ignores SIGTERM, then frees the port', async () => {
    // Unsandboxed: the test checks the grandchild by the host pid the fixture reports (inside a
    // sandbox, pids are the sandbox's own); isolation.spec covers the sandboxed stop.
    const { runner, buildDir } = makeRunner({ shutdownTimeoutMs: 300, sandbox: false })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, {
      envVars: { FIXTURE_GRANDCHILD: '1', FIXTURE_IGNORE_SIGTERM: '1' },
    })
    await waitFor(async () => /grandchild \d+/.test(await runner.getLogs(server)))
    const grandchild = Number(/grandchild (\d+)/.exec(await runner.getLogs(server))![1])
    expect(alive(grandchild)).toBe(true)
    await runner.stop(server)
    expect(alive(server.processId!)).toBe(false)
    expect(alive(grandchild)).toBe(false)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
    expect(await listening(server.port)).toBe(false)
    expect(await runner.healthCheck(server)).toEqual({ healthy: false, message: 'Process is not running' })
    expect(await runner.getLogs(server)).toContain('[runner] stopped')
    await runner.stop(server)
    await runner.stop({ ...server, id: 'never-deployed' })
  })

  it('shutdown() stops every server and leaves nothing', async () => {
    const { runner, buildDir } = makeRunner()
    const servers = []
    for (let i = 0; i < 3; i++) {
      const { project, deployment, build } = entities()
      installBuild(buildDir, build.id)
      servers.push(await runner.deploy(project, deployment, build, { envVars: { FIXTURE_GRANDCHILD: '1' } }))
    }
    await runner.shutdown()
    for (const server of servers) expect(alive(server.processId!)).toBe(false)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [], servers: [] })
  })
})

describe('router', () => {
  it('registers a route on deploy and removes it by route id on stop', async () => {
    const { runner, buildDir } = makeRunner()
    const registered: RouteConfig[] = []
    const removed: string[] = []
    const router = {
      type: 'memory',
      prefix: 'route',
      async registerRoute(config: RouteConfig) {
        registered.push(config)
        return { routeId: `${this.prefix}-1`, deploymentId: config.deploymentId, publicUrl: 'http://x', status: 'active', createdAt: new Date() }
      },
      async removeRoute(routeId: string) {
        removed.push(routeId)
      },
      async getRoute() {
        return null
      },
    }
    runner.setRouter(router)
    const { project, deployment, build } = entities({ deployment: { type: 'preview', branch: 'Feature/Login' } })
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    expect(registered).toEqual([
      { deploymentId: deployment.id, projectId: project.id, subdomain: 'feature-login--hello', targetHost: '127.0.0.1', targetPort: server.port },
    ])
    await runner.stop(server)
    expect(removed).toEqual(['route-1'])
  })

  it('stops the server and rejects when the router fails', async () => {
    const { runner, buildDir } = makeRunner()
    const failing = (how: 'reject' | 'throw' | 'no-promise') => ({
      type: 'broken',
      registerRoute() {
        if (how === 'throw') throw new Error('router exploded')
        if (how === 'no-promise') return 42
        return Promise.reject(new Error('no capacity'))
      },
      async removeRoute() {},
      async getRoute() {
        return null
      },
    })
    for (const [how, message] of [
      ['reject', /Router failed to register a route for deployment 'dep-\d+': .*no capacity/],
      ['throw', /Router failed to register a route for deployment 'dep-\d+': .*router exploded/],
      ['no-promise', /Router failed to register a route for deployment 'dep-\d+'/],
    ] as const) {
      runner.setRouter(failing(how) as never)
      const { project, deployment, build } = entities()
      installBuild(buildDir, build.id)
      await expect(runner.deploy(project, deployment, build)).rejects.toThrow(message)
      expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
    }
    expect(() => runner.setRouter({ registerRoute: 1 } as never)).toThrow('Invalid router: registerRoute must be a function')
  })
})

describe('a host that dies', () => {
  it('leaves nothing running within a second (watchdog), and the next runner on the buildDir starts clean', async () => {
    const { buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const script = `
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner({ buildDir: ${JSON.stringify(buildDir)}, portRange: { start: 31900, end: 31990 }, sandbox: false })
      runner.deploy(${JSON.stringify(project)}, ${JSON.stringify(deployment)}, ${JSON.stringify(build)},
        { envVars: { FIXTURE_GRANDCHILD: '1' } }).then(async (server) => {
          const find = async () => /grandchild (\\d+)/.exec(await runner.getLogs(server))
          let match
          while (!(match = await find())) await new Promise((r) => setTimeout(r, 10))
          console.log(server.processId, match[1])
        })
      setInterval(() => {}, 1000)`
    const host = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    host.stdout.on('data', (chunk) => (out += chunk))
    await waitFor(() => /^\d+ \d+\n/.test(out))
    const [server, grandchild] = out.trim().split(' ').map(Number)
    host.kill('SIGKILL')
    await waitFor(() => !alive(server), 5_000, 'the server to die with its host')
    // The grandchild ignores SIGTERM and is not the direct child: the host's watchdog, which
    // reads end-of-file on its pipe when the host dies, kills it (the journal is the fallback
    // for the next runner, tested in tests/process_lifecycle.rs). Unsandboxed, so that the pid
    // the fixture reports is a host pid; in a sandbox the parent-death signal of its init ends
    // the whole sandbox (isolation.spec).
    await waitFor(() => !alive(grandchild), 1_000, 'the watchdog to kill the grandchild')
    await waitFor(() => !alive(host.pid!), 5_000, 'the host to be gone')
    // A new runner on the same buildDir starts and serves on the same ports.
    const { runner } = { runner: new (await import('./helpers/addon')).addon.LocalProcessRunner({ buildDir, portRange: { start: 31900, end: 31990 } }) }
    const next = entities()
    installBuild(buildDir, next.build.id)
    const replacement = await runner.deploy(next.project, next.deployment, next.build)
    await runner.stop(replacement)
    await runner.shutdown()
  })
})
