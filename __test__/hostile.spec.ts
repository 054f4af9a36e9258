// Hostile input through every public runner method: wrong types, null and undefined, huge
// strings, NUL bytes, bad numbers, getters that throw, and providers that are missing methods,
// hang, throw, resolve the wrong type or reject. Each gets a clear Error and leaves no process,
// port or directory behind.
import fs from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'

import { addon } from './helpers/addon'
import { messageOf, rejectionOf } from './helpers/errors'
import { alive, entities, installBuild, makeRunner, shutdownRunners } from './helpers/runner'

afterEach(shutdownRunners)

const throwingGetter = (field: string) =>
  Object.defineProperty({}, field, {
    enumerable: true,
    get() {
      throw new Error(`getter ${field} exploded`)
    },
  })

describe('hostile arguments to the runner', () => {
  it('deploy rejects each bad argument with the argument named, and starts nothing', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const cases: [unknown[], string | RegExp][] = [
      [[null, deployment, build], 'Invalid project: expected an object, got undefined'],
      [['project', deployment, build], "Invalid project: expected an object, got string 'project'"],
      [[{ ...project, id: 42 }, deployment, build], 'Invalid project.id: expected a string, got number 42'],
      [[{ ...project, id: 'x'.repeat(1_000_000) }, deployment, build], 'Invalid project.id: must be at most 128 characters (got 1000000)'],
      [[project, { ...deployment, id: 'a\0b' }, build], 'Invalid deployment.id: must not contain a NUL character'],
      [[project, { ...deployment, type: 'canary' }, build], "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got 'canary')"],
      [[project, deployment, { ...build, id: '..' }], "Invalid build.id: must not contain '..' (got '..')"],
      [[project, deployment, throwingGetter('id')], 'getter id exploded'],
      [[project, deployment, build, { port: -1 }], 'Invalid options.port: must be an integer from 1 to 65535 (got -1)'],
      [[project, deployment, build, { port: 4111.5 }], 'Invalid options.port: must be an integer from 1 to 65535 (got 4111.5)'],
      [[project, deployment, build, { healthCheckTimeoutMs: 0 }], 'Invalid options.healthCheckTimeoutMs: must be an integer of at least 1 (got 0)'],
      [[project, deployment, build, { envVars: { A: null } }], 'Invalid options.envVars.A: expected a string, got null'],
      [[project, deployment, build, { envVars: 'A=1' }], "Invalid options.envVars: expected an object, got string 'A=1'"],
      [[project, deployment, build, 7], 'Invalid options: expected an object, got number 7'],
    ]
    for (const [args, message] of cases) {
      // A getter that throws while arguments are read throws synchronously; everything else
      // rejects. An async wrapper turns both into a rejection, as `await` does for callers.
      const deploy = runner.deploy as (...a: unknown[]) => Promise<unknown>
      const text = await rejectionOf((async () => deploy.apply(runner, args))())
      if (typeof message === 'string') expect(text).toBe(message)
      else expect(text).toMatch(message)
    }
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
    expect(fs.readdirSync(buildDir)).toEqual([build.id])
  })

  it('the other methods reject bad servers and options clearly', async () => {
    const { runner } = makeRunner()
    const server = { id: 'nope' }
    expect(await rejectionOf(runner.stop(undefined as never))).toBe('Invalid server.id: is required')
    expect(await rejectionOf(runner.stop({ id: 5 } as never))).toBe('Invalid server.id: expected a string, got number 5')
    expect(await rejectionOf(runner.healthCheck(null as never))).toBe('Invalid server.id: is required')
    expect(await rejectionOf(runner.getLogs(server as never, { tail: -1 }))).toBe(
      'Invalid options.tail: must be an integer from 0 to 4294967295 (got -1)',
    )
    expect(await rejectionOf(runner.getLogs(server as never, { since: 'yesterday' as never }))).toBe(
      "Invalid options.since: expected a Date, got string 'yesterday'",
    )
    expect(await rejectionOf(runner.getLogsPaginated(server as never, { before: 'x' }))).toBe(
      "Invalid before: expected a cursor from a previous page (got 'x')",
    )
    expect(await rejectionOf((async () => runner.getResourceUsage(throwingGetter('id') as never))())).toBe('getter id exploded')
    expect(messageOf(() => runner.streamLogs(server as never, 'cb' as never))).toBe("Invalid callback: expected a function, got string 'cb'")
    expect(messageOf(() => runner.setOnServerLog(undefined as never))).toBe('Invalid callback: expected a function, got undefined')
    expect(messageOf(() => runner.setRouter(null as never))).toBe('Invalid router: expected an object with its methods')
    expect(messageOf(() => runner.setRouter({ registerRoute: async () => ({}) } as never))).toBe(
      'Invalid router: removeRoute must be a function',
    )
    // Unknown servers are no-ops, not errors.
    await runner.stop(server as never)
    expect(await runner.getLogs(server as never)).toBe('')
    expect(await runner.healthCheck(server as never)).toEqual({ healthy: false, message: 'Process is not running' })
    expect(await runner.getResourceUsage(server as never)).toEqual({ memoryUsageMb: null, cpuPercent: null })
  })

  it('constructing with a hostile config throws and touches nothing', () => {
    expect(messageOf(() => new addon.LocalProcessRunner(throwingGetter('buildDir') as never))).toBe('getter buildDir exploded')
    expect(messageOf(() => new addon.LocalProcessRunner({ buildDir: 'x'.repeat(10) + '\0' }))).toBe(
      'Invalid buildDir: must not contain a NUL character',
    )
    expect(messageOf(() => new addon.LocalProcessRunner({ portRange: { start: -5, end: 10 } }))).toBe(
      'Invalid portRange.start: must be an integer from 1 to 65535 (got -5)',
    )
  })
})

describe('hostile routers', () => {
  async function deployWith(router: object, providerTimeoutMs = 500) {
    const { runner, buildDir } = makeRunner({ providerTimeoutMs })
    runner.setRouter(router as never)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    return { runner, attempt: runner.deploy(project, deployment, build) }
  }

  it('a router that hangs fails the deploy after providerTimeoutMs and leaves nothing', async () => {
    const { runner, attempt } = await deployWith({
      type: 'hang',
      registerRoute: () => new Promise(() => {}),
      removeRoute: async () => {},
      getRoute: async () => null,
    })
    expect(await rejectionOf(attempt)).toMatch(/^Router failed to register a route for deployment 'dep-\d+': no answer within 500 ms$/)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  })

  it('a router resolving the wrong shape fails the deploy', async () => {
    const { runner, attempt } = await deployWith({
      type: 'wrong',
      registerRoute: async () => 'not a route',
      removeRoute: async () => {},
      getRoute: async () => null,
    })
    expect(await rejectionOf(attempt)).toMatch(/it resolved without a routeId/)
    expect(runner.getStats().runningProcesses).toBe(0)
  })

  it('a router that rejects or hangs on remove still lets stop() finish and free everything', async () => {
    for (const removeRoute of [() => Promise.reject(new Error('remove failed')), () => new Promise(() => {})]) {
      const { runner, attempt } = await deployWith({
        type: 'flaky-remove',
        registerRoute: async (config: { deploymentId: string }) => ({ routeId: 'r1', deploymentId: config.deploymentId }),
        removeRoute,
        getRoute: async () => null,
      })
      const server = await attempt
      await runner.stop(server)
      expect(alive(server.processId!)).toBe(false)
      expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
    }
  })
})
