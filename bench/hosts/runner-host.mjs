// A Node process that hosts a LocalProcessRunner the way MastraAdmin would, so that its memory
// (RSS) is the runner's and not the benchmark harness's or PM2's API client's. The parent
// sends one JSON command per stdin line and reads one JSON event per stdout line.
//
//   node runner-host.mjs '{"buildDir": "...", "portStart": 40300, "portEnd": 40319}'
//   ← {"event":"loaded"}                                   addon loaded, runner constructed
//   → {"cmd":"deploy","count":10}  ← {"event":"deployed","ports":[...],"servers":[...]}
//   → {"cmd":"flood","ms":3000}    ← {"event":"flooded", ...}   one server's flood, one subscriber
//   → {"cmd":"flood","ms":3000,"rate":5000000}   the same, at 5 M lines/s at most
//   → {"cmd":"shutdown"}           ← {"event":"shutdown"}  then the process exits
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

import { get } from '../lib/net.mjs'
import { deployRetrying, entities, installBuild, makeRunner } from '../lib/runner.mjs'
import { epochNow } from '../lib/stats.mjs'

const options = JSON.parse(process.argv[2])
const marker = options.marker
const runner = makeRunner(options.buildDir, { portRange: { start: options.portStart, end: options.portEnd } })
const buildId = 'host-build'
installBuild(options.buildDir, buildId)
let servers = []

const send = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)

async function deploy(count) {
  servers = await Promise.all(
    Array.from({ length: count }, () => deployRetrying(runner, entities(buildId), { envVars: { BENCH_FIXTURE: marker } })),
  )
  return { event: 'deployed', ports: servers.map((s) => s.port), pids: servers.map((s) => s.processId) }
}

/**
 * Floods the first server's stdout for `ms` (at `rate` lines/s at most, when given) with one
 * streamLogs subscriber checking order.
 */
async function flood(ms, rate) {
  const server = servers[0]
  const before = await runner.getLogsPaginated(server, { limit: 1 })
  const idBefore = Number(before.newestCursor)
  let expected = 1
  let delivered = 0
  let gaps = 0
  let missedMarkers = 0
  let floodStart = null
  let done = null
  let deliveredAt = null
  const unsubscribe = runner.streamLogs(server, (line) => {
    if (line.startsWith('line ')) {
      const n = Number(line.slice(5))
      if (n !== expected) gaps += 1
      expected = n + 1
      delivered += 1
    } else if (line.startsWith('flood start at ')) {
      floodStart = Number(line.slice('flood start at '.length))
    } else if (line.startsWith('flood done ')) {
      done = Number(line.split(' ')[2])
      deliveredAt = epochNow()
    } else if (line.includes('lines skipped')) {
      missedMarkers += 1
    }
  })
  const paced = rate ? `&rate=${Math.round(rate)}` : ''
  if ((await get(server.port, `/flood?ms=${ms}${paced}`)) !== 200) throw new Error('the fixture refused /flood')
  // Stored: the newest entry of the store is the flood's last line.
  let storedAt = null
  let idDone = null
  const deadline = performance.now() + ms + 30000
  while (performance.now() < deadline) {
    const page = await runner.getLogsPaginated(server, { limit: 1 })
    const last = page.entries[0]
    if (last && last.line.startsWith('flood done ')) {
      storedAt = epochNow()
      idDone = Number(last.id)
      break
    }
    await sleep(2)
  }
  while (deliveredAt === null && performance.now() < deadline) await sleep(2)
  unsubscribe()
  if (storedAt === null || deliveredAt === null || floodStart === null) throw new Error('flood did not finish in time')
  return {
    event: 'flooded',
    produced: done,
    // Entries the store took between the line before the flood and the flood's last line:
    // the flood's `start` line, its numbered lines and its `done` line.
    stored: idDone - idBefore - 2,
    delivered,
    gaps,
    missedMarkers,
    storedSeconds: (storedAt - floodStart) / 1000,
    deliveredSeconds: (deliveredAt - floodStart) / 1000,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }
}

const rl = readline.createInterface({ input: process.stdin })
send({ event: 'loaded' })
for await (const line of rl) {
  const command = JSON.parse(line)
  try {
    if (command.cmd === 'deploy') send(await deploy(command.count))
    else if (command.cmd === 'flood') send(await flood(command.ms, command.rate))
    else if (command.cmd === 'shutdown') {
      await runner.shutdown()
      send({ event: 'shutdown' })
      break
    }
  } catch (error) {
    send({ event: 'error', message: String(error?.stack ?? error) })
  }
}
rl.close()
await runner.shutdown()
process.exit(0)
