// HealthChecker (SPEC §3 "Deploy" health gate and "Running servers"): 2xx healthy, other statuses
// and connection errors unhealthy with a message, IPv6-only servers on loopback, retries.
import http from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'

import { addon } from './helpers/addon'
import { messageOf, rejectionOf } from './helpers/errors'
import { close, closedPort, hasIpv6Loopback, listen } from './helpers/net'

const { HealthChecker } = addon

const servers: http.Server[] = []
/** An HTTP server answering every request with `status(n)` (n counts from 0); `requests` lists the URLs asked. */
async function serve(status: (n: number) => number, host = '127.0.0.1') {
  const requests: string[] = []
  const server = http.createServer((req, res) => {
    const code = status(requests.length)
    requests.push(req.url ?? '')
    res.writeHead(code, { 'content-type': 'application/json' }).end('{}')
  })
  servers.push(server)
  const port = await listen(server, 0, host)
  return { port, requests }
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map(close))
})

describe('check', () => {
  it('reports a 200 as healthy, probing the default endpoint /health', async () => {
    const { port, requests } = await serve(() => 200)
    expect(await new HealthChecker().check('127.0.0.1', port)).toEqual({ healthy: true })
    expect(requests).toEqual(['/health'])
  })

  it('probes the configured endpoint', async () => {
    const { port, requests } = await serve(() => 204)
    expect(await new HealthChecker({ endpoint: '/api/ready' }).check('127.0.0.1', port)).toEqual({ healthy: true })
    expect(requests).toEqual(['/api/ready'])
  })

  it('reports a 500 as unhealthy with the status in the message', async () => {
    const { port } = await serve(() => 500)
    expect(await new HealthChecker().check('127.0.0.1', port)).toEqual({
      healthy: false,
      message: 'Health check returned status 500 Internal Server Error',
    })
  })

  it('reports a closed port as unhealthy with a message', async () => {
    const port = await closedPort()
    expect(await new HealthChecker().check('127.0.0.1', port)).toEqual({
      healthy: false,
      message: `Health check failed: Connection refused: nothing is listening on 127.0.0.1:${port}`,
    })
  })

  it('reaches a server listening only on ::1, bare or bracketed, and through checkLoopback', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip()
    const { port } = await serve(() => 200, '::1')
    const checker = new HealthChecker()
    expect(await checker.check('::1', port)).toEqual({ healthy: true })
    expect(await checker.check('[::1]', port)).toEqual({ healthy: true })
    expect((await checker.check('127.0.0.1', port)).healthy).toBe(false)
    expect(await checker.checkLoopback(port)).toEqual({ healthy: true })
  })

  it('checkLoopback names both loopback addresses when nothing listens', async () => {
    const port = await closedPort()
    expect(await new HealthChecker().checkLoopback(port)).toEqual({
      healthy: false,
      message: `Health check failed: Connection refused: nothing is listening on 127.0.0.1:${port} or [::1]:${port}`,
    })
  })
})

describe('waitForHealthy', () => {
  it('rejects after maxRetries attempts with the count in the message', async () => {
    const { port, requests } = await serve(() => 503)
    const checker = new HealthChecker({ maxRetries: 3, retryIntervalMs: 10 })
    expect(await rejectionOf(checker.waitForHealthy('127.0.0.1', port))).toBe(
      `Server failed to become healthy after 3 attempts. Last error: Health check returned status 503 Service Unavailable (GET http://127.0.0.1:${port}/health)`,
    )
    expect(requests).toHaveLength(3)
  })

  it('resolves at the first healthy answer', async () => {
    const { port, requests } = await serve((n) => (n < 2 ? 503 : 200))
    const checker = new HealthChecker({ maxRetries: 10, retryIntervalMs: 10 })
    await expect(checker.waitForHealthy('127.0.0.1', port)).resolves.toBeUndefined()
    expect(requests).toHaveLength(3)
  })
})

describe('bad arguments', () => {
  const configs: [string, unknown, string][] = [
    ['not an object', 42, 'Invalid config: expected an object, got number 42'],
    ['timeout 0', { timeoutMs: 0 }, 'Invalid timeoutMs: must be an integer of at least 1 (got 0)'],
    ['negative interval', { retryIntervalMs: -1 }, 'Invalid retryIntervalMs: must be an integer of at least 1 (got -1)'],
    ['retries NaN', { maxRetries: NaN }, 'Invalid maxRetries: must be a finite number (got NaN)'],
    ['relative endpoint', { endpoint: 'health' }, "Invalid endpoint: must be a path starting with '/' (got 'health')"],
  ]
  it.each(configs)('constructor: %s', (_name, config, message) => {
    expect(messageOf(() => new HealthChecker(config as never))).toBe(message)
  })

  it('constructs with defaults from undefined, null and {}', () => {
    expect(() => new HealthChecker()).not.toThrow()
    expect(() => new HealthChecker(null as never)).not.toThrow()
    expect(() => new HealthChecker({})).not.toThrow()
  })

  const targets: [string, unknown, unknown, string][] = [
    ['port 0', '127.0.0.1', 0, 'Invalid port: must be an integer from 1 to 65535 (got 0)'],
    ['port 70000', '127.0.0.1', 70000, 'Invalid port: must be an integer from 1 to 65535 (got 70000)'],
    ['port 1.5', '127.0.0.1', 1.5, 'Invalid port: must be an integer from 1 to 65535 (got 1.5)'],
    ['port NaN', '127.0.0.1', NaN, 'Invalid port: must be a finite number (got NaN)'],
    ['port a string', '127.0.0.1', '80', "Invalid port: expected a number, got string '80'"],
    ['host a number', 42, 80, 'Invalid host: expected a string, got number 42'],
    ['host missing', undefined, 80, 'Invalid host: is required'],
    ['host with a path', 'a/b', 80, "Invalid host: must be a host name or an IP address (got 'a/b')"],
  ]
  it.each(targets)('check and waitForHealthy reject: %s', async (_name, host, port, message) => {
    const checker = new HealthChecker({ maxRetries: 1 })
    expect(await rejectionOf(checker.check(host as never, port as never))).toBe(message)
    expect(await rejectionOf(checker.waitForHealthy(host as never, port as never))).toBe(message)
  })

  it('checkLoopback rejects a bad port', async () => {
    expect(await rejectionOf(new HealthChecker().checkLoopback(0))).toBe(
      'Invalid port: must be an integer from 1 to 65535 (got 0)',
    )
  })
})
