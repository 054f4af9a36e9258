// Issue 7: the runner and PM2 side by side on the same fixture server, the same Node binary,
// the same machine, in the same run, alternating runner and PM2 runs so that noise hits both.
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { startHost } from '../lib/host.mjs'
import { freePorts, get, waitAllHealthy, waitHealthy, waitPortFree } from '../lib/net.mjs'
import { rssMb } from '../lib/procs.mjs'
import { deployAll, deployRetrying, entities, installBuild, isPortRace, makeRunner } from '../lib/runner.mjs'
import { spawn } from 'node:child_process'

const SECTION = 'Runner vs PM2 (issue 7)'
const GRACE_MS = 1000
const BACKOFF_MS = 100
const TIGHT_RETRY_MS = 50

/** Adds a PM2 baseline row and the runner row compared with it. */
function pair(results, key, figure, unit, runnerSystem, runnerValues, pm2System, pm2Values, extra = {}) {
  results.add({ id: `${key}-pm2`, section: SECTION, figure, system: pm2System, short: 'PM2', unit, values: pm2Values, ...extra })
  results.add({ id: `${key}-runner`, section: SECTION, figure, system: runnerSystem, unit, values: runnerValues, baseline: `${key}-pm2`, ...extra })
}

/** The RSS of a Node process that loaded nothing (the floor under both supervisors). */
async function bareNodeRss() {
  const child = spawn(process.execPath, ['-e', 'process.stdout.write("ready\\n"); setInterval(() => {}, 1000)'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  await new Promise((resolve) => child.stdout.once('data', resolve))
  await sleep(300)
  const mb = rssMb(child.pid)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
  return mb
}

export async function sideBySide({ results, runs, tmp, marker, ports, pm2 }) {
  const buildDir = path.join(tmp, 'side-by-side')
  const buildId = 'side'
  const env = { BENCH_FIXTURE: marker }
  const runner = makeRunner(buildDir, { portRange: { start: ports.runner, end: ports.runner + 19 }, shutdownTimeoutMs: GRACE_MS })
  const restarting = makeRunner(path.join(tmp, 'side-by-side-restart'), {
    portRange: { start: ports.runner + 20, end: ports.runner + 29 },
    shutdownTimeoutMs: GRACE_MS,
    restartPolicy: { maxRestarts: 1000, backoffMs: BACKOFF_MS, maxBackoffMs: BACKOFF_MS },
  })
  // The same runner with a tighter cap on its health-gate backoff (probes after 5 ms, doubling
  // up to retryIntervalMs): shows how much of start → healthy is the probe cadence.
  const tight = makeRunner(path.join(tmp, 'side-by-side-tight'), {
    portRange: { start: ports.runner + 50, end: ports.runner + 69 },
    shutdownTimeoutMs: GRACE_MS,
    healthCheck: { retryIntervalMs: TIGHT_RETRY_MS },
  })
  installBuild(buildDir, buildId)
  installBuild(path.join(tmp, 'side-by-side-restart'), buildId)
  installBuild(path.join(tmp, 'side-by-side-tight'), buildId)
  const deployOptions = (extraEnv = {}) => ({ envVars: { ...env, ...extraEnv }, healthCheckTimeoutMs: 60000 })
  // Untimed set-up deploys: tried again when they lose a port race (see BENCHMARKS.md).
  const deploy = (r, extraEnv = {}) => deployRetrying(r, entities(buildId), deployOptions(extraEnv))
  // Timed deploys of `count` servers: a run that lost a port race is done again (at most 3 times).
  let raced = 0
  const timedDeploy = async (r, count) => {
    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now()
      try {
        const servers = await deployAll(r, count, () => entities(buildId), deployOptions())
        return { servers, ms: performance.now() - t0 }
      } catch (error) {
        if (attempt >= 3 || !isPortRace(error)) throw error
        raced += 1
      }
    }
  }
  // Ports a listen succeeds on right now, from ports.pm2 + offset upwards.
  const pm2Ports = (n, offset = 0) => freePorts(n, ports.pm2 + offset, ports.pm2 + offset + 99)
  let appSeq = 0
  const pm2Apps = (portList, options = {}) => portList.map((port) => pm2.app(`side-${++appSeq}`, port, { ...options, env: { ...env, ...(options.env ?? {}) } }))
  const deleteApps = async (apps) => {
    for (const app of apps) await pm2.delete(app.name).catch(() => {})
  }

  try {
    // Supervisor memory first, while PM2's daemon is fresh (as the runner's host is in each run):
    // idle, and with 10 servers.
    {
      const bare = []
      const hostIdle = []
      const host10 = []
      const daemonIdle = []
      const daemon10 = []
      for (let i = 0; i < runs.memory; i++) {
        bare.push(await bareNodeRss())
        const host = await startHost({ buildDir: path.join(tmp, `memory-host-${i}`), portStart: ports.runner + 30, portEnd: ports.runner + 49, marker })
        try {
          await sleep(300)
          hostIdle.push(rssMb(host.pid))
          await host.request({ cmd: 'deploy', count: 10 })
          await sleep(500)
          host10.push(rssMb(host.pid))
        } finally {
          await host.close()
        }
        daemonIdle.push(rssMb(pm2.daemonPid()))
        const list = await pm2Ports(10, 200)
        const apps = pm2Apps(list)
        try {
          await pm2.start(apps)
          await waitAllHealthy(list)
          await sleep(500)
          daemon10.push(rssMb(pm2.daemonPid()))
        } finally {
          await deleteApps(apps)
        }
      }
      const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
      const floor = median(bare)
      results.add({ id: 'mem-bare', section: SECTION, figure: 'RSS of a bare Node process (the floor)', system: `Node ${process.version}, nothing loaded`, unit: 'MB', values: bare })
      pair(results, 'mem-idle', 'supervisor RSS, no server', 'MB', 'runner host process (Node + addon + runner)', hostIdle, 'PM2 daemon (fresh, then after the previous run\'s apps were deleted)', daemonIdle)
      pair(results, 'mem10', 'supervisor RSS, 10 servers', 'MB', 'runner host process', host10, 'PM2 daemon', daemon10)
      pair(results, 'mem10-net', 'supervisor RSS, 10 servers, minus the bare Node floor', 'MB',
        'runner host process − bare Node', host10.map((x) => x - floor), 'PM2 daemon − bare Node', daemon10.map((x) => x - floor))
    }

    // Start → first healthy answer, 1 and 10 servers. The runner's deploy() resolves only after
    // its own health gate got a 2xx; PM2's start resolves at launch, so the bench polls /health
    // every 5 ms until the first 200.
    for (const count of [1, 10]) {
      const n = count === 1 ? runs.start1 : runs.start10
      const r = []
      const rt = []
      const p = []
      for (let i = 0; i < n + 1; i++) {
        const { servers, ms: tr } = await timedDeploy(runner, count)
        await Promise.all(servers.map((s) => runner.stop(s)))
        const { servers: tightServers, ms: tt } = await timedDeploy(tight, count)
        await Promise.all(tightServers.map((s) => tight.stop(s)))
        const list = await pm2Ports(count)
        const apps = pm2Apps(list)
        const t1 = performance.now()
        await pm2.start(apps)
        await waitAllHealthy(list, { intervalMs: 5 })
        const tp = performance.now() - t1
        await deleteApps(apps)
        for (const port of list) await waitPortFree(port)
        if (i > 0) {
          r.push(tr)
          rt.push(tt)
          p.push(tp)
        }
      }
      const figure = `start → healthy, ${count} server${count > 1 ? 's' : ''}`
      pair(results, `start${count}`, figure, 'ms',
        `runner: ${count > 1 ? `${count} concurrent ` : ''}\`deploy()\` resolved (default config)`, r,
        `PM2: \`start\`${count > 1 ? ` (${count} apps, one call)` : ''} + poll /health every 5 ms`, p)
      results.add({ id: `start${count}-tight`, section: SECTION, figure, system: `runner with healthCheck.retryIntervalMs ${TIGHT_RETRY_MS} (default 1000)`, unit: 'ms', values: rt, baseline: `start${count}-pm2` })
    }

    // Stop → port free, cooperative and SIGTERM-ignoring servers; grace 1000 ms on both
    // (runner shutdownTimeoutMs, PM2 kill_timeout). PM2 signals SIGINT, the runner SIGTERM: the
    // fixture treats both alike.
    for (const ignore of [false, true]) {
      const n = ignore ? runs.stopIgnore : runs.stop
      const r = []
      const p = []
      for (let i = 0; i < n; i++) {
        const extra = ignore ? { BENCH_IGNORE_SIGTERM: '1' } : {}
        const server = await deploy(runner, extra)
        const t0 = performance.now()
        await runner.stop(server)
        await waitPortFree(server.port)
        r.push(performance.now() - t0)
        const [port] = await pm2Ports(1)
        const [app] = pm2Apps([port], { env: extra })
        await pm2.start([app])
        await waitHealthy(port)
        const t1 = performance.now()
        await pm2.delete(app.name)
        await waitPortFree(port)
        p.push(performance.now() - t1)
      }
      const kind = ignore ? 'SIGTERM-ignoring server' : 'cooperative server'
      pair(results, `stop-${ignore ? 'ignore' : 'coop'}`, `stop → port free, ${kind}`, 'ms',
        'runner `stop()`', r, `PM2 \`delete\` (kill_timeout ${GRACE_MS} ms)`, p,
        ignore ? { note: `grace ${GRACE_MS} ms on both` } : {})
    }

    // Crash → serving again, restart on both with the same constant backoff.
    {
      const r = []
      const p = []
      const server = await deploy(restarting)
      const [port] = await pm2Ports(1, 100)
      const [app] = pm2Apps([port], { autorestart: true, restart_delay: BACKOFF_MS, max_restarts: 1000, min_uptime: 100 })
      await pm2.start([app])
      await waitHealthy(port)
      const crashAndWait = async (p0) => {
        await sleep(300)
        const t0 = performance.now()
        if ((await get(p0, '/crash')) !== 200) throw new Error('the fixture refused /crash')
        await waitPortFree(p0, { intervalMs: 1 })
        const t = await waitHealthy(p0, { intervalMs: 5 })
        return t - t0
      }
      try {
        for (let i = 0; i < runs.crash; i++) {
          try {
            r.push(await crashAndWait(server.port))
          } catch (error) {
            const tail = await restarting.getLogs(server, { tail: 20 })
            throw new Error(`runner crash run ${i}: ${error.message}; last log lines:\n${tail}`)
          }
          p.push(await crashAndWait(port))
        }
      } finally {
        await restarting.stop(server)
        await deleteApps([app])
      }
      pair(results, 'crash', `crash → serving again (backoff ${BACKOFF_MS} ms on both)`, 'ms',
        `runner \`restartPolicy\` { backoffMs: ${BACKOFF_MS}, maxBackoffMs: ${BACKOFF_MS} }`, r,
        `PM2 autorestart, restart_delay ${BACKOFF_MS}`, p,
        { note: 'from the /crash answer; bench polls /health every 5 ms' })
    }

    // The cost of sampling CPU and memory, per server, with 10 servers each.
    {
      const { servers } = await timedDeploy(runner, 10)
      const list = await pm2Ports(10, 300)
      const apps = pm2Apps(list)
      try {
        await pm2.start(apps)
        await waitAllHealthy(list)
        const r = []
        const pd = []
        const pl = []
        for (let i = 0; i < runs.sample + 2; i++) {
          let t0 = performance.now()
          for (const s of servers) {
            const u = await runner.getResourceUsage(s)
            if (u.memoryUsageMb === null) throw new Error('runner: no usage for a live server')
          }
          const tr = (performance.now() - t0) / servers.length
          t0 = performance.now()
          for (const app of apps) {
            const [d] = await pm2.call('describe', app.name)
            if (!d?.monit) throw new Error('PM2: no monit data')
          }
          const td = (performance.now() - t0) / apps.length
          t0 = performance.now()
          const all = await pm2.call('list')
          if (all.length < apps.length) throw new Error('PM2: list is short')
          const tl = (performance.now() - t0) / apps.length
          if (i >= 2) {
            r.push(tr)
            pd.push(td)
            pl.push(tl)
          }
        }
        results.add({ id: 'sample-pm2-list', section: SECTION, figure: 'CPU/memory sample, per server (10 servers)', system: 'PM2 `list()` ÷ 10', unit: 'ms', values: pl })
        results.add({ id: 'sample-pm2-describe', section: SECTION, figure: 'CPU/memory sample, per server (10 servers)', system: 'PM2 `describe(name)`, one per server', unit: 'ms', values: pd })
        results.add({ id: 'sample-runner', section: SECTION, figure: 'CPU/memory sample, per server (10 servers)', system: 'runner `getResourceUsage(server)`, one per server', unit: 'ms', values: r, baseline: 'sample-pm2-describe' })
        results.add({ id: 'sample-runner-vs-list', section: SECTION, figure: 'CPU/memory sample, per server (10 servers)', system: 'runner `getResourceUsage(server)` (as above)', unit: 'ms', values: r, baseline: 'sample-pm2-list', note: 'goal (issue 18): ≤ 1.0× PM2 list() ÷ 10' })
      } finally {
        await Promise.all(servers.map((s) => runner.stop(s)))
        await deleteApps(apps)
      }
    }
  } finally {
    if (raced) results.notes.push(`${SECTION}: ${raced} timed runner run(s) lost a port race (EADDRINUSE) and were done again.`)
    await runner.shutdown()
    await restarting.shutdown()
    await tight.shutdown()
  }
}
