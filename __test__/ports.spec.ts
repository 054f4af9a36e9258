// PortAllocator (SPEC §3 "Deploy", port rules): lowest free port, preferred port, ports held by
// other programs skipped, no duplicates under concurrency, exhaustion and argument errors.
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'

import { addon } from './helpers/addon'
import { messageOf, rejectionOf } from './helpers/errors'
import { close, freeRange, hasIpv6Loopback, listen } from './helpers/net'

const { PortAllocator } = addon

const servers: net.Server[] = []
/** Holds `port` on `host` with a plain TCP listener until the test ends. */
async function hold(port: number, host = '0.0.0.0') {
  const server = net.createServer()
  servers.push(server)
  await listen(server, port, host)
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map(close))
})

describe('allocation', () => {
  it('covers 4111-4200 when constructed without a range, as the TypeScript package does', () => {
    const ports = new PortAllocator()
    expect(ports.getAvailableCount()).toBe(90)
    expect(new PortAllocator(null as never).getAvailableCount()).toBe(90)
  })

  it('hands out the lowest free ports in order and takes released ports back', async () => {
    const range = await freeRange(4)
    const ports = new PortAllocator(range)
    expect(ports.getAvailableCount()).toBe(4)
    expect(await ports.allocate()).toBe(range.start)
    expect(await ports.allocate()).toBe(range.start + 1)
    expect(ports.getAllocatedPorts()).toEqual([range.start, range.start + 1])
    expect(ports.isAllocated(range.start)).toBe(true)
    expect(ports.isAllocated(range.start + 2)).toBe(false)
    expect(ports.getAvailableCount()).toBe(2)

    ports.release(range.start)
    ports.release(range.start) // a second release does nothing
    expect(ports.isAllocated(range.start)).toBe(false)
    expect(ports.getAllocatedPorts()).toEqual([range.start + 1])
    expect(await ports.allocate()).toBe(range.start)
  })

  it('gives 50 concurrent allocate() calls 50 distinct ports', async () => {
    const range = await freeRange(60)
    const ports = new PortAllocator(range)
    const got = await Promise.all(Array.from({ length: 50 }, () => ports.allocate()))
    expect(new Set(got).size).toBe(50)
    for (const port of got) {
      expect(port).toBeGreaterThanOrEqual(range.start)
      expect(port).toBeLessThanOrEqual(range.end)
    }
    expect(ports.getAllocatedPorts()).toEqual([...got].sort((a, b) => a - b))
    expect(ports.getAvailableCount()).toBe(10)
  })

  it('skips a port another program listens on at 0.0.0.0 or 127.0.0.1', async () => {
    const range = await freeRange(3)
    await hold(range.start, '0.0.0.0')
    await hold(range.start + 1, '127.0.0.1')
    const ports = new PortAllocator(range)
    expect(await ports.allocate()).toBe(range.start + 2)
    expect(ports.getAvailableCount()).toBe(2)
  })

  it('skips a port another program listens on at ::1 only', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip()
    const range = await freeRange(2)
    await hold(range.start, '::1')
    expect(await new PortAllocator(range).allocate()).toBe(range.start + 1)
  })
})

describe('preferred port', () => {
  it('is honoured when free and in range', async () => {
    const range = await freeRange(5)
    const ports = new PortAllocator(range)
    expect(await ports.allocate(range.start + 3)).toBe(range.start + 3)
    expect(ports.getAllocatedPorts()).toEqual([range.start + 3])
  })

  it('is ignored when this allocator already handed it out', async () => {
    const range = await freeRange(5)
    const ports = new PortAllocator(range)
    await ports.allocate(range.start + 3)
    expect(await ports.allocate(range.start + 3)).toBe(range.start)
  })

  it('is ignored when another program listens on it', async () => {
    const range = await freeRange(5)
    await hold(range.start + 2)
    expect(await new PortAllocator(range).allocate(range.start + 2)).toBe(range.start)
  })

  it('is ignored when outside the range', async () => {
    const range = await freeRange(5)
    const ports = new PortAllocator(range)
    expect(await ports.allocate(range.end + 1)).toBe(range.start)
    expect(await ports.allocate(range.start - 1)).toBe(range.start + 1)
  })

  it('undefined and null mean no preference', async () => {
    const range = await freeRange(3)
    const ports = new PortAllocator(range)
    expect(await ports.allocate(undefined)).toBe(range.start)
    expect(await ports.allocate(null as never)).toBe(range.start + 1)
  })
})

describe('exhaustion', () => {
  it('rejects with the range and who holds its ports', async () => {
    const range = await freeRange(3)
    await hold(range.start + 1)
    const ports = new PortAllocator(range)
    await ports.allocate()
    await ports.allocate()
    expect(await rejectionOf(ports.allocate())).toBe(
      `No free port in range ${range.start}-${range.end}: 2 allocated by this runner, 1 in use by other programs`,
    )
    expect(ports.getAllocatedPorts()).toHaveLength(2)
  })
})

describe('bad arguments', () => {
  const ranges: [string, unknown, string][] = [
    ['a string', '4111-4200', "Invalid range: expected an object, got string '4111-4200'"],
    ['start > end', { start: 5000, end: 4000 }, 'Invalid range: start (5000) is greater than end (4000)'],
    ['port 0', { start: 0, end: 10 }, 'Invalid range.start: must be an integer from 1 to 65535 (got 0)'],
    ['port 70000', { start: 1, end: 70000 }, 'Invalid range.end: must be an integer from 1 to 65535 (got 70000)'],
    ['fractional', { start: 1.5, end: 10 }, 'Invalid range.start: must be an integer from 1 to 65535 (got 1.5)'],
    ['NaN', { start: NaN, end: 10 }, 'Invalid range.start: must be a finite number (got NaN)'],
    ['missing end', { start: 10 }, 'Invalid range.end: is required'],
    ['string port', { start: '10', end: 20 }, "Invalid range.start: expected a number, got string '10'"],
  ]
  it.each(ranges)('constructor: %s', (_name, range, message) => {
    expect(messageOf(() => new PortAllocator(range as never))).toBe(message)
  })

  const ports: [string, unknown, string][] = [
    ['0', 0, 'must be an integer from 1 to 65535 (got 0)'],
    ['70000', 70000, 'must be an integer from 1 to 65535 (got 70000)'],
    ['1.5', 1.5, 'must be an integer from 1 to 65535 (got 1.5)'],
    ['NaN', NaN, 'must be a finite number (got NaN)'],
    ['a string', '4111', "expected a number, got string '4111'"],
  ]
  it.each(ports)('allocate(%s) rejects', async (_name, port, reason) => {
    const allocator = new PortAllocator({ start: 4111, end: 4200 })
    expect(await rejectionOf(allocator.allocate(port as never))).toBe(`Invalid preferred: ${reason}`)
    expect(allocator.getAllocatedPorts()).toEqual([])
  })
  it.each(ports)('release(%s) and isAllocated(%s) throw', (_name, port, reason) => {
    const allocator = new PortAllocator({ start: 4111, end: 4200 })
    expect(messageOf(() => allocator.release(port as never))).toBe(`Invalid port: ${reason}`)
    expect(messageOf(() => allocator.isAllocated(port as never))).toBe(`Invalid port: ${reason}`)
  })
})
