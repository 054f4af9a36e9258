// Redeploy (README, "Redeploy and readiness"): under redeploy 'replace' (the default) a new
// deploy of a served deployment starts beside the old server, takes its route once healthy,
// and the old one drains, then stops; 'keep' leaves both. Readiness: a server's own IPC
// 'server-ready' message makes the health gate probe at once. MastraAdmin's own wiring (it
// routes itself) is played in admin-orchestrator.spec.ts.
import { afterEach, describe, expect, it } from 'vitest'

import type { RouteConfig } from '../index'
import { entities, installBuild, listening, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

/** A router that sends each deployment's traffic to the port of its newest route. */
function forwardingRouter() {
  const routes = new Map<string, RouteConfig>()
  const targets = new Map<string, number>()
  let next = 0
  return {
    routes,
    target: (deploymentId: string) => targets.get(deploymentId),
    provider: {
      type: 'test',
      async registerRoute(config: RouteConfig) {
        const routeId = `route-${++next}`
        routes.set(routeId, config)
        targets.set(config.deploymentId, config.targetPort)
        return { routeId, deploymentId: config.deploymentId, publicUrl: 'http://x', status: 'active' as const, createdAt: new Date() }
      },
      async removeRoute(routeId: string) {
        routes.delete(routeId)
      },
      async getRoute() {
        return null
      },
    },
  }
}

async function answers(port: number | undefined): Promise<boolean> {
  if (port === undefined) return false
  try {
    return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200
  } catch {
    return false
  }
}

describe("redeploy 'replace'", () => {
  it('keeps the deployment answering through every redeploy, then leaves one server', async () => {
    const { runner, buildDir } = makeRunner()
    const router = forwardingRouter()
    runner.setRouter(router.provider as never)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const first = await runner.deploy(project, deployment, build)

    let running = true
    let failed = 0
    let ok = 0
    const client = (async () => {
      while (running) {
        if (await answers(router.target(deployment.id))) ok++
        else failed++
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    let current = first
    for (let i = 0; i < 5; i++) {
      const next = await runner.deploy(project, deployment, build)
      expect(next.port).not.toBe(current.port)
      expect(runner.listServers().map((s) => s.id)).toEqual([next.id])
      expect(runner.getStats().drainingServers).toBeGreaterThanOrEqual(1)
      current = next
    }
    running = false
    await client
    expect(failed).toBe(0)
    expect(ok).toBeGreaterThan(5)
    expect(runner.listServers().map((s) => s.id)).toEqual([current.id])
    await waitFor(() => runner.getStats().servers.length === 1, 30_000, 'the replaced servers to drain')
    expect(runner.getStats().drainingServers).toBe(0)
    expect(await listening(first.port)).toBe(false)
    expect(router.routes.size).toBe(1)
    expect(await runner.getLogs(first)).toMatch(/replaced by server [0-9a-f-]{36}/)

    // MastraAdmin's stopDeployment() passes the record it stored first: the current server stops.
    await runner.stop(first)
    expect(await listening(current.port)).toBe(false)
    expect(runner.listServers()).toEqual([])
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  })

  it('leaves the old server serving, route untouched, when the new one fails', async () => {
    const { runner, buildDir } = makeRunner()
    const router = forwardingRouter()
    runner.setRouter(router.provider as never)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const old = await runner.deploy(project, deployment, build)
    await expect(
      runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_ON_START: '1' } }),
    ).rejects.toMatchObject({ code: 'ERR_SERVER_EXITED' })
    expect(await answers(router.target(deployment.id))).toBe(true)
    expect(router.target(deployment.id)).toBe(old.port)
    expect(runner.listServers().map((s) => s.id)).toEqual([old.id])
  })

  it('ends concurrent deploys of one deployment with exactly one live server', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const outcomes = await Promise.allSettled([1, 2, 3].map(() => runner.deploy(project, deployment, build)))
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') expect(outcome.reason.code).toBe('ERR_DEPLOY_INTERRUPTED')
    }
    const live = runner.listServers()
    expect(live).toHaveLength(1)
    await waitFor(() => runner.getStats().drainingServers === 0, 30_000, 'the replaced servers to drain')
    expect(runner.getStats()).toMatchObject({ runningProcesses: 1, allocatedPorts: [live[0].port] })
    expect(await answers(live[0].port)).toBe(true)
  })
})

describe("redeploy 'keep'", () => {
  it('leaves both servers running, and stop() stops only the one named', async () => {
    const { runner, buildDir } = makeRunner({ redeploy: 'keep' })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const first = await runner.deploy(project, deployment, build)
    const second = await runner.deploy(project, deployment, build)
    expect(runner.listServers()).toHaveLength(2)
    await runner.stop(first)
    expect(await answers(second.port)).toBe(true)
    expect(runner.listServers().map((s) => s.id)).toEqual([second.id])
  })
})

describe('readiness from the server', () => {
  // The fixture listens 2.3 s after it starts. Polling with a long retry interval probes about
  // 1.8 s after the spawn (refused) and next about 3 s after it, past the 2.9 s timeout: only
  // the server's own 'server-ready' message can make this deploy succeed.
  const late = { envVars: { FIXTURE_LISTEN_AFTER_MS: '2300', FIXTURE_SEND_READY: '1' }, healthCheckTimeoutMs: 2900 }

  it("resolves on the server's process.send({ type: 'server-ready' }) without waiting for a poll", async () => {
    const { runner, buildDir } = makeRunner({ healthCheck: { retryIntervalMs: 60_000 } })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, late)
    expect(await runner.getLogs(server)).toMatch(/ipc channel: function/)
  })

  it('does not give servers a channel with readySignal: false', async () => {
    const { runner, buildDir } = makeRunner({ healthCheck: { retryIntervalMs: 60_000, readySignal: false } })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    await expect(runner.deploy(project, deployment, build, late)).rejects.toMatchObject({ code: 'ERR_HEALTH_CHECK_FAILED' })
    const quick = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_SEND_READY: '1' } })
    expect(await runner.getLogs(quick)).toMatch(/ipc channel: undefined/)
  })

  it('a server sending garbage and floods on its channel is unaffected', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build, {
      envVars: { FIXTURE_IPC_NOISE: '3000', FIXTURE_SEND_READY: '1' },
    })
    expect(await runner.healthCheck(server)).toEqual({ healthy: true })
    expect(await answers(server.port)).toBe(true)
    await runner.stop(server)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  })
})
