// MastraAdmin as it really runs (issue 26), played with our own code: an orchestrator-shaped
// caller that deploys, then moves its own deployment-keyed route (MastraAdmin never calls
// setRouter), a storage that refuses what Postgres refuses (non-UUID server ids) and keeps every
// record (replaced ones too), a HealthCheckWorker-shaped loop over those records, and a reverse
// proxy that looks the route up for every request. None of MastraAdmin's code is used here.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'

import type { Deployment, EdgeRouterProvider, Project, RouteConfig, RouteInfo, RunningServer } from '../index'
import { entities, installBuild, listening, makeRunner, shutdownRunners, type Runner } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** Routes keyed by deployment under the rules of MastraAdmin's local router: one route per
 * deployment (a second registration throws), routes addressed by their id afterwards. */
class DeploymentRoutes implements EdgeRouterProvider {
  readonly type = 'local'
  readonly routes = new Map<string, { info: RouteInfo; config: RouteConfig }>()
  private next = 0

  async registerRoute(config: RouteConfig): Promise<RouteInfo> {
    if (this.find(config.deploymentId)) throw new Error(`Route already exists for deployment ${config.deploymentId}`)
    const info: RouteInfo = {
      routeId: `route_${++this.next}`,
      deploymentId: config.deploymentId,
      publicUrl: `http://${config.targetHost}:${config.targetPort}`,
      status: 'active',
      createdAt: new Date(),
    }
    this.routes.set(info.routeId, { info, config: { ...config } })
    return info
  }

  async updateRoute(routeId: string, config: Partial<RouteConfig>): Promise<RouteInfo> {
    const route = this.routes.get(routeId)
    if (!route) throw new Error(`Route not found: ${routeId}`)
    route.config.targetHost = config.targetHost ?? route.config.targetHost
    route.config.targetPort = config.targetPort ?? route.config.targetPort
    return route.info
  }

  async removeRoute(routeId: string): Promise<void> {
    this.routes.delete(routeId)
  }

  async getRoute(deploymentId: string): Promise<RouteInfo | null> {
    return this.find(deploymentId)?.info ?? null
  }

  /** The port the deployment's traffic goes to now. */
  target(deploymentId: string): number | undefined {
    return this.find(deploymentId)?.config.targetPort
  }

  private find(deploymentId: string) {
    return [...this.routes.values()].find((route) => route.info.deploymentId === deploymentId)
  }
}

/** Running-server records as a Postgres storage keeps them: a UUID primary key, every record
 * kept until it is stopped, the first live one returned for a deployment. */
class ServerRecords {
  readonly records: RunningServer[] = []

  create(server: RunningServer): void {
    if (!UUID.test(server.id)) throw new Error(`invalid input syntax for type uuid: "${server.id}"`)
    if (this.records.some((record) => record.id === server.id)) throw new Error('duplicate key value violates unique constraint')
    this.records.push({ ...server })
  }

  firstLive(deploymentId: string): RunningServer | undefined {
    return this.records.find((record) => record.deploymentId === deploymentId && !record.stoppedAt)
  }

  markStopped(id: string): void {
    for (const record of this.records) if (record.id === id) record.stoppedAt = new Date()
  }
}

/** The orchestrator's deploy step: deploy, then upsert its own route, then store the record. */
async function orchestrateDeploy(
  runner: Runner,
  routes: DeploymentRoutes,
  records: ServerRecords,
  target: { project: Project; deployment: Deployment; build: Parameters<Runner['deploy']>[2] },
  options?: Parameters<Runner['deploy']>[3],
): Promise<RunningServer> {
  const { project, deployment, build } = target
  const server = await runner.deploy(project, deployment, build, options)
  const config: RouteConfig = {
    deploymentId: deployment.id,
    projectId: project.id,
    subdomain: deployment.slug,
    targetHost: server.host,
    targetPort: server.port,
  }
  const existing = await routes.getRoute(deployment.id)
  if (existing) await routes.updateRoute(existing.routeId, config)
  else await routes.registerRoute(config)
  records.create(server)
  return server
}

/** The orchestrator's stopDeployment: stop the record its storage returns, remove the route. */
async function stopDeployment(runner: Runner, routes: DeploymentRoutes, records: ServerRecords, deploymentId: string) {
  const server = records.firstLive(deploymentId)
  if (!server) throw new Error('no running server recorded')
  await runner.stop(server)
  const route = await routes.getRoute(deploymentId)
  if (route) await routes.removeRoute(route.routeId)
  records.markStopped(server.id)
}

/** A reverse proxy that looks the deployment's route up for every request; 502 when the target
 * does not answer. */
async function proxyFor(routes: DeploymentRoutes, deploymentId: string) {
  const server = http.createServer((request, response) => {
    const port = routes.target(deploymentId)
    if (port === undefined) return void response.writeHead(404).end()
    const upstream = http.request(
      { host: '127.0.0.1', port, path: request.url, method: request.method, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(response)
      },
    )
    upstream.on('error', () => (response.headersSent ? response.destroy() : response.writeHead(502).end()))
    request.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function setUp(config: Parameters<typeof makeRunner>[0] = {}) {
  const { runner, buildDir } = makeRunner(config)
  const target = entities()
  installBuild(buildDir, target.build.id)
  return { runner, target, routes: new DeploymentRoutes(), records: new ServerRecords() }
}

describe('MastraAdmin wiring: the caller routes and stores', () => {
  it('gives every server a random UUID the storage accepts, a new one per redeploy', async () => {
    const { runner, target, routes, records } = setUp()
    const first = await orchestrateDeploy(runner, routes, records, target)
    const second = await orchestrateDeploy(runner, routes, records, target)
    expect(first.id).toMatch(UUID)
    expect(second.id).toMatch(UUID)
    expect(second.id).not.toBe(first.id)
    expect(records.records.map((record) => record.id)).toEqual([first.id, second.id])
    expect(runner.listServers().map((server) => server.id)).toEqual([second.id])
  })

  it('answers every request through the proxy during 20 redeploys, with the caller switching after deploy()', async () => {
    const { runner, target, routes, records } = setUp()
    await orchestrateDeploy(runner, routes, records, target)
    const proxy = await proxyFor(routes, target.deployment.id)
    let running = true
    const failures: string[] = []
    let answered = 0
    const client = (async () => {
      while (running) {
        try {
          const response = await fetch(`${proxy.url}/health`)
          await response.arrayBuffer()
          if (response.status === 200) answered++
          else failures.push(`HTTP ${response.status}`)
        } catch (error) {
          failures.push(String(error))
        }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    for (let i = 0; i < 20; i++) await orchestrateDeploy(runner, routes, records, target)
    running = false
    await client
    await proxy.close()
    expect(failures).toEqual([])
    expect(answered).toBeGreaterThan(20)
    expect(runner.listServers()).toHaveLength(1)
    expect(routes.routes.size).toBe(1)
  }, 120_000)

  it('lets a streamed answer in flight finish across a redeploy', async () => {
    const { runner, target, routes, records } = setUp()
    const old = await orchestrateDeploy(runner, routes, records, target)
    const proxy = await proxyFor(routes, target.deployment.id)
    const streamed = fetch(`${proxy.url}/stream?ms=3000`).then((response) => response.text())
    await new Promise((resolve) => setTimeout(resolve, 300))
    const next = await orchestrateDeploy(runner, routes, records, target)
    const body = await streamed
    expect(body.endsWith('done\n')).toBe(true)
    // Every chunk came from the old server, about one every 100 ms for 3 s.
    const chunks = body.trim().split('\n').slice(0, -1)
    expect(chunks.length).toBeGreaterThan(20)
    expect(chunks.every((chunk) => chunk.startsWith(`${old.port} `))).toBe(true)
    expect(await (await fetch(`${proxy.url}/env`)).json()).toMatchObject({ PORT: String(next.port) })
    await proxy.close()
    await waitFor(async () => !(await listening(old.port)), 30_000, 'the old server to stop once its stream ended')
  })

  it('keeps the deployment healthy for a health worker that checks the records it stored', async () => {
    const { runner, target, routes, records } = setUp({ redeployDrainMs: 0 })
    for (let i = 0; i < 3; i++) await orchestrateDeploy(runner, routes, records, target)
    const [oldest, middle] = records.records
    await waitFor(async () => !(await listening(oldest.port)) && !(await listening(middle.port)), 20_000, 'the replaced servers to stop')
    for (const record of records.records) {
      expect(await runner.healthCheck(record)).toEqual({ healthy: true })
      const usage = await runner.getResourceUsage(record)
      expect(usage.memoryUsageMb).toBeGreaterThan(0)
      expect(usage.cpuPercent).not.toBeNull()
    }
    // Each record's own log is still its own.
    expect(await runner.getLogs(oldest)).toContain(`listening on ${oldest.port}`)
    expect(await runner.getLogs(oldest)).toContain(`replaced by server ${middle.id}`)
  })

  it("stopDeployment with the oldest stored record leaves nothing of the deployment running", async () => {
    const { runner, target, routes, records } = setUp()
    const other = entities()
    for (let i = 0; i < 3; i++) await orchestrateDeploy(runner, routes, records, target)
    const neighbour = await orchestrateDeploy(runner, routes, records, { ...other, build: target.build })
    expect(runner.getStats().drainingServers).toBe(2)
    await stopDeployment(runner, routes, records, target.deployment.id)
    for (const record of records.records.slice(0, 3)) expect(await listening(record.port)).toBe(false)
    expect(runner.listServers().map((server) => server.id)).toEqual([neighbour.id])
    expect(runner.getStats()).toMatchObject({ runningProcesses: 1, drainingServers: 0, allocatedPorts: [neighbour.port] })
    expect(await runner.healthCheck(records.records[2])).toEqual({ healthy: false, message: 'Process is not running' })
    expect(await routes.getRoute(target.deployment.id)).toBeNull()
  })
})

describe('tracesEndpoint', () => {
  it('gives every server its deployment id as the token and the endpoint under both names, over envVars', async () => {
    const endpoint = 'http://127.0.0.1:3001/api/spans/publish'
    const { runner, target, routes, records } = setUp({ tracesEndpoint: endpoint })
    const server = await orchestrateDeploy(runner, routes, records, target, {
      envVars: { MASTRA_CLOUD_ACCESS_TOKEN: 'forged', MASTRA_CLOUD_TRACES_ENDPOINT: 'http://elsewhere' },
    })
    const env = await (await fetch(`http://127.0.0.1:${server.port}/env`)).json()
    expect(env).toMatchObject({
      MASTRA_CLOUD_ACCESS_TOKEN: target.deployment.id,
      MASTRA_CLOUD_AI_TRACES_ENDPOINT: endpoint,
      MASTRA_CLOUD_TRACES_ENDPOINT: endpoint,
    })
    expect(runner.getConfig().tracesEndpoint).toBe(endpoint)
  })

  it('sets nothing without it, and refuses what is not an http(s) URL', async () => {
    const { runner, target, routes, records } = setUp()
    const server = await orchestrateDeploy(runner, routes, records, target)
    const env = await (await fetch(`http://127.0.0.1:${server.port}/env`)).json()
    expect(env.MASTRA_CLOUD_ACCESS_TOKEN).toBeUndefined()
    expect(env.MASTRA_CLOUD_TRACES_ENDPOINT).toBeUndefined()
    for (const bad of ['localhost:3001/spans', 'ftp://host/x', 'http://host/a b']) {
      expect(() => makeRunner({ tracesEndpoint: bad })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('tracesEndpoint') }),
      )
    }
  })
})

describe('a router set on the runner, keyed by deployment', () => {
  it('has its one route moved on every redeploy instead of a second registration', async () => {
    const { runner, target } = setUp()
    const routes = new DeploymentRoutes()
    runner.setRouter(routes)
    const first = await runner.deploy(target.project, target.deployment, target.build)
    expect(routes.target(target.deployment.id)).toBe(first.port)
    for (let i = 0; i < 3; i++) {
      const next = await runner.deploy(target.project, target.deployment, target.build)
      expect(routes.routes.size).toBe(1)
      expect(routes.target(target.deployment.id)).toBe(next.port)
    }
    await waitFor(() => runner.getStats().drainingServers === 0, 30_000, 'the replaced servers to drain')
    expect(routes.routes.size).toBe(1)
    await runner.stop(first)
    expect(routes.routes.size).toBe(0)
  })
})
