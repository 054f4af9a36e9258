// Loopback HTTP probes with bounded loops. Every request goes to 127.0.0.1 only; every wait
// has a deadline and a fixed pause between attempts.
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

// Source ports for the probes, taken in turn from 50000-60999: outside the benchmark ports.
// Left to the kernel, a probe's ephemeral port comes from 32768-60999 (this machine's
// ip_local_port_range), which contains 40000-45000: thousands of probes sweep through it, and a
// server whose listen() meets a probe's socket on its port fails with EADDRINUSE.
const SOURCE_PORTS = { start: 50000, end: 60999 }
let nextSource = SOURCE_PORTS.start

/** Connects to 127.0.0.1:`port` from a source port outside the benchmark range. */
function connect(port) {
  const localPort = nextSource
  nextSource = nextSource === SOURCE_PORTS.end ? SOURCE_PORTS.start : nextSource + 1
  return net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1', localPort })
}

/**
 * One GET of http://127.0.0.1:`port``path`: resolves the status code, or 0 on failure.
 *
 * A raw socket that is reset (RST) instead of closed once the status line arrived. A client
 * that closes normally leaves a TIME_WAIT socket on its ephemeral port for 60 s, and this
 * machine's ephemeral range (32768-60999) overlaps the benchmark ports: thousands of probes
 * would leave ports that a server then cannot listen on (EADDRINUSE). A reset leaves nothing.
 */
export async function get(port, path = '/health', timeoutMs = 2000) {
  // A source port that something else holds fails the connect at once (EADDRINUSE), before any
  // byte reached the server: that is tried again from the next source port.
  for (let attempt = 0; attempt < 10; attempt++) {
    const status = await getOnce(port, path, timeoutMs)
    if (status !== null) return status
  }
  return 0
}

/** One attempt of `get`: null when the source port was taken. */
function getOnce(port, path, timeoutMs) {
  return new Promise((resolve) => {
    const socket = connect(port)
    let buffer = ''
    let settled = false
    const finish = (status) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.resetAndDestroy()
      resolve(status)
    }
    const timer = setTimeout(() => finish(0), timeoutMs)
    socket.setEncoding('latin1')
    socket.once('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`))
    socket.on('data', (chunk) => {
      buffer += chunk
      const eol = buffer.indexOf('\r\n')
      if (eol === -1) return
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buffer.slice(0, eol))
      finish(m ? Number(m[1]) : 0)
    })
    socket.on('error', (error) => finish(error.code === 'EADDRINUSE' || error.code === 'EADDRNOTAVAIL' ? null : 0))
    socket.on('close', () => finish(0))
  })
}

/**
 * Whether something accepts connections on 127.0.0.1:`port` (the connection is reset). Only a
 * refused connection means no: any other error (e.g. the source port taken) is tried again.
 */
export async function accepts(port) {
  for (let attempt = 0; attempt < 10; attempt++) {
    const outcome = await new Promise((resolve) => {
      const socket = connect(port)
      socket.once('connect', () => {
        socket.resetAndDestroy()
        resolve(true)
      })
      socket.once('error', (error) => {
        socket.destroy()
        resolve(error.code === 'ECONNREFUSED' ? false : null)
      })
    })
    if (outcome !== null) return outcome
  }
  throw new Error(`cannot probe 127.0.0.1:${port}: 10 connection attempts failed other than by refusal`)
}

/**
 * Polls GET /health every `intervalMs` until it answers 200; resolves the time (performance.now())
 * of the first healthy answer. Rejects after `timeoutMs`.
 */
export async function waitHealthy(port, { timeoutMs = 20000, intervalMs = 5 } = {}) {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if ((await get(port, '/health', 1000)) === 200) return performance.now()
    await sleep(intervalMs)
  }
  throw new Error(`127.0.0.1:${port} not healthy within ${timeoutMs} ms`)
}

/** Waits until every port in `ports` answers /health; resolves the time the last one did. */
export async function waitAllHealthy(ports, { timeoutMs = 60000, intervalMs = 5, giveUp = null, giveUpAfterMs = 15000 } = {}) {
  const pending = new Set(ports)
  const deadline = performance.now() + timeoutMs
  let last = performance.now()
  let nextCheck = performance.now() + giveUpAfterMs
  while (pending.size) {
    if (performance.now() > deadline) throw new Error(`${pending.size} of ${ports.length} servers not healthy within ${timeoutMs} ms (ports ${[...pending].slice(0, 5).join(', ')})`)
    // After `giveUpAfterMs`, `giveUp()` (every 2 s) may throw to stop waiting for servers that
    // will never answer. Not earlier: asking the supervisor costs it work during the measurement.
    if (giveUp && performance.now() > nextCheck) {
      await giveUp()
      nextCheck = performance.now() + 2000
    }
    await Promise.all(
      [...pending].map(async (port) => {
        if ((await get(port, '/health', 1000)) === 200) {
          pending.delete(port)
          last = performance.now()
        }
      }),
    )
    if (pending.size) await sleep(intervalMs)
  }
  return last
}

/** Polls until nothing accepts connections on `port`; resolves the time it was free. */
export async function waitPortFree(port, { timeoutMs = 20000, intervalMs = 2 } = {}) {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (!(await accepts(port))) return performance.now()
    await sleep(intervalMs)
  }
  throw new Error(`127.0.0.1:${port} still accepting connections after ${timeoutMs} ms`)
}

/** Waits until none of `ports` accepts connections; resolves the time the last one was free. */
export async function waitAllPortsFree(ports, opts) {
  const times = await Promise.all(ports.map((p) => waitPortFree(p, opts)))
  return Math.max(...times)
}

/** Whether a listen on 127.0.0.1:`port` succeeds now (the probe closes at once). */
export function canListen(port) {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * `count` ports from `start` upwards (at most up to `end`) on which a listen succeeds now. PM2
 * and plain Node are given fixed ports; the runner picks its own the same way. A port can be
 * busy without a server on it: an outgoing connection may have it as its ephemeral port.
 */
export async function freePorts(count, start, end) {
  const ports = []
  for (let port = start; port <= end && ports.length < count; port++) if (await canListen(port)) ports.push(port)
  if (ports.length < count) throw new Error(`only ${ports.length} of ${count} ports free in ${start}-${end}`)
  return ports
}
