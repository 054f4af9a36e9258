// Ports and servers for specs: blocks of ports nothing listens on, and listeners that hold a port.
import http from 'node:http'
import net from 'node:net'

/** The error code of listening on `host:port` and closing again, or null when that worked. */
function listenError(port: number, host: string): Promise<string | null> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'ERROR'))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(null)))
  })
}

/** Whether nothing listens on `port` (IPv4 must be bindable; IPv6 only must not be in use). */
async function isFree(port: number): Promise<boolean> {
  for (const host of ['127.0.0.1', '0.0.0.0']) {
    if ((await listenError(port, host)) !== null) return false
  }
  for (const host of ['::', '::1']) {
    if ((await listenError(port, host)) === 'EADDRINUSE') return false
  }
  return true
}

// Each worker process starts at its own block, so specs running side by side do not collide.
let next = 24_000 + (process.pid % 50) * 150

/** A range of `length` consecutive ports nothing listens on, different on every call. */
export async function freeRange(length: number): Promise<{ start: number; end: number }> {
  for (;;) {
    const start = next
    next += length
    if (start + length > 32_000) throw new Error(`no free block of ${length} ports below 32000`)
    let free = true
    for (let port = start; free && port < start + length; port++) free = await isFree(port)
    if (free) return { start, end: start + length - 1 }
  }
}

/** Listens with `server` on `host:port` (port 0: any free one) and resolves with the port. */
export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}

/** Closes `server`, dropping open connections first. */
export function close(server: net.Server): Promise<void> {
  if (server instanceof http.Server) server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

/** Whether this machine can listen on the IPv6 loopback. */
export async function hasIpv6Loopback(): Promise<boolean> {
  return (await listenError(0, '::1')) === null
}

/** A loopback port nothing listens on: one that was free a moment ago. */
export async function closedPort(): Promise<number> {
  const server = net.createServer()
  const port = await listen(server, 0, '127.0.0.1')
  await close(server)
  return port
}
