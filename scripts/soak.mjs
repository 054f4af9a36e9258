// Soak test: many deploy/stop cycles with random interleavings of crashes, restarts,
// concurrent deploys, failing deploys and queries, then proof that nothing leaked: no process
// left, no port held, the host's open file descriptors and memory back near where they began.
//
//   node scripts/soak.mjs [--cycles 200] [--seed 1] [--json out.json]
//
// Exits non-zero when a leak is found. `npm run soak` runs the full length; the test suite
// runs a short one (__test__/soak.spec.ts).
import { createRequire } from 'node:module'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { LocalProcessRunner } = require(root)

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? args[at + 1] : fallback
}
const cycles = Number(option('cycles', 200))
let seed = Number(option('seed', 1))
const jsonOut = option('json', null)

/** A small deterministic PRNG (mulberry32), so a failing seed can be replayed. */
function random() {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const openFds = () => fs.readdirSync('/proc/self/fd').length
const rssMb = () => process.memoryUsage.rss() / 1048576

const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-soak-'))
const fixture = path.join(root, '__test__', 'fixtures', 'server', 'index.mjs')
for (const id of ['soak-build']) {
  const output = path.join(buildDir, id, '.mastra', 'output')
  fs.mkdirSync(output, { recursive: true })
  fs.copyFileSync(fixture, path.join(output, 'index.mjs'))
}
const range = { start: 9000, end: 9099 }
const common = { buildDir, portRange: range, shutdownTimeoutMs: 500, healthCheck: { retryIntervalMs: 100, maxRetries: 100 } }
const plain = new LocalProcessRunner(common)
const restarting = new LocalProcessRunner({
  ...common,
  portRange: { start: 9100, end: 9199 },
  restartPolicy: { maxRestarts: 3, backoffMs: 20, maxBackoffMs: 100 },
})

let sequence = 0
function entities() {
  sequence += 1
  const now = new Date()
  return {
    project: { id: `soak-p${sequence}`, slug: 'soak', createdAt: now, updatedAt: now },
    deployment: { id: `soak-d${sequence}`, type: 'production', branch: 'main' },
    build: { id: 'soak-build' },
  }
}

async function deploy(runner, envVars = {}) {
  const { project, deployment, build } = entities()
  return runner.deploy(project, deployment, build, { envVars })
}

const counts = { deploys: 0, stops: 0, failedDeploysExpected: 0, crashes: 0, restarts: 0, queries: 0 }

async function cycle() {
  const roll = random()
  if (roll < 0.35) {
    const server = await deploy(plain)
    counts.deploys++
    if (random() < 0.5) {
      counts.queries += 3
      await Promise.all([plain.healthCheck(server), plain.getLogs(server, { tail: 5 }), plain.getResourceUsage(server)])
    }
    await plain.stop(server)
    counts.stops++
  } else if (roll < 0.55) {
    const servers = await Promise.all([deploy(plain), deploy(plain), deploy(plain)])
    counts.deploys += 3
    await Promise.all(servers.map((s) => plain.stop(s)))
    counts.stops += 3
  } else if (roll < 0.7) {
    await deploy(plain, { FIXTURE_CRASH_ON_START: '1' }).then(
      () => {
        throw new Error('a server crashing on start was deployed')
      },
      () => counts.failedDeploysExpected++,
    )
  } else if (roll < 0.85) {
    const server = await deploy(restarting, { FIXTURE_CRASH_AFTER_MS: String(150 + Math.floor(random() * 100)) })
    counts.deploys++
    counts.crashes++
    await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 600)))
    counts.restarts += restarting.getStats().servers.find((s) => s.id === server.id)?.restarts ?? 0
    await restarting.stop(server)
    counts.stops++
  } else {
    const server = await deploy(plain, { FIXTURE_GRANDCHILD: '1', FIXTURE_IGNORE_SIGTERM: random() < 0.5 ? '1' : '0' })
    counts.deploys++
    await plain.stop(server)
    counts.stops++
  }
}

/** Processes still running anything from this soak's build directory. */
function leftoverProcesses() {
  const left = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (/^\d+ \(.*\) [ZX]/.test(stat)) continue
      const cwd = fs.readlinkSync(`/proc/${entry}/cwd`)
      if (cwd.startsWith(buildDir)) left.push(Number(entry))
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return left
}

/**
 * Whether anything still listens on `port`. (A failed bind would be the wrong test: a client
 * connection's TIME_WAIT can hold a port of the range for a minute without anything running.)
 */
function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

// Warm up once so lazily created runtime threads and buffers are part of the baseline.
await plain.stop(await deploy(plain))
const before = { fds: openFds(), rssMb: rssMb() }
const started = Date.now()
for (let i = 0; i < cycles; i++) await cycle()
await plain.shutdown()
await restarting.shutdown()
global.gc?.()
const after = { fds: openFds(), rssMb: rssMb() }
const portsHeld = []
for (let port = range.start; port <= 9199; port++) if (await listening(port)) portsHeld.push(port)
const result = {
  cycles,
  seconds: (Date.now() - started) / 1000,
  counts,
  processesLeft: leftoverProcesses(),
  allocatedPorts: [...plain.getStats().allocatedPorts, ...restarting.getStats().allocatedPorts],
  portsHeld,
  fds: { before: before.fds, after: after.fds },
  rssMb: { before: Math.round(before.rssMb), after: Math.round(after.rssMb) },
}
fs.rmSync(buildDir, { recursive: true, force: true })

const fdGrowth = after.fds - before.fds
const rssGrowth = after.rssMb - before.rssMb
const problems = []
if (result.processesLeft.length) problems.push(`processes left: ${result.processesLeft.join(', ')}`)
if (result.allocatedPorts.length) problems.push(`ports still allocated: ${result.allocatedPorts.join(', ')}`)
if (result.portsHeld.length) problems.push(`ports still listened on: ${result.portsHeld.join(', ')}`)
if (fdGrowth > 5) problems.push(`open file descriptors grew by ${fdGrowth}`)
if (rssGrowth > 64) problems.push(`RSS grew by ${Math.round(rssGrowth)} MB`)
result.problems = problems

console.log(JSON.stringify(result, null, 2))
if (jsonOut) {
  fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true })
  fs.writeFileSync(jsonOut, JSON.stringify(result, null, 2))
}
process.exitCode = problems.length ? 1 : 0
