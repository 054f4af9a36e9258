// Log floods against the runner: a server writing 1 GB without a newline, and one writing
// 10 million short lines. While each runs, the host's RSS is sampled and getLogs() is timed
// again and again; the figures go to RELIABILITY.md.
//
//   node scripts/flood.mjs [--mb 1024] [--lines 10000000] [--json out.json]
import { createRequire } from 'node:module'
import fs from 'node:fs'
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
const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-flood-'))
const output = path.join(buildDir, 'flood', '.mastra', 'output')
fs.mkdirSync(output, { recursive: true })
fs.copyFileSync(path.join(root, 'scripts', 'fixtures', 'flood', 'index.mjs'), path.join(output, 'index.mjs'))
const runner = new LocalProcessRunner({ buildDir, portRange: { start: 9300, end: 9310 }, shutdownTimeoutMs: 1000 })

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

async function flood(name, envVars) {
  const baseline = process.memoryUsage.rss()
  const now = new Date()
  const server = await runner.deploy(
    { id: `flood-${name}`, slug: 'flood', createdAt: now },
    { id: `flood-${name}`, type: 'production', branch: 'main' },
    { id: 'flood' },
    { envVars },
  )
  const started = Date.now()
  const latencies = []
  let peakRss = baseline
  for (;;) {
    const t0 = performance.now()
    const logs = await runner.getLogs(server, { tail: 100 })
    latencies.push(performance.now() - t0)
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
    if (logs.includes('flood done') || Date.now() - started > 600_000) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const seconds = (Date.now() - started) / 1000
  const page = await runner.getLogsPaginated(server, { limit: 1 })
  const stored = Number(page.newestCursor ?? 0)
  await runner.stop(server)
  return {
    name,
    seconds,
    entriesWritten: stored,
    getLogsMs: { samples: latencies.length, p50: +percentile(latencies, 50).toFixed(2), p99: +percentile(latencies, 99).toFixed(2), max: +Math.max(...latencies).toFixed(2) },
    hostRssMb: { before: Math.round(baseline / 1048576), peak: Math.round(peakRss / 1048576) },
  }
}

const results = [
  await flood('1gb-no-newline', { FLOOD: 'bytes', FLOOD_MB: option('mb', '1024') }),
  await flood('10m-lines', { FLOOD: 'lines', FLOOD_LINES: option('lines', '10000000') }),
]
await runner.shutdown()
fs.rmSync(buildDir, { recursive: true, force: true })
console.log(JSON.stringify(results, null, 2))
const out = option('json', null)
if (out) {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true })
  fs.writeFileSync(out, JSON.stringify(results, null, 2))
}
