// Issue 3 and issue 7's log throughput: the fixture writes numbered lines as fast as its stdout
// takes them for a few seconds. Measured with the same file, the same Node, in the same run:
//   ceiling   stdout is /dev/null: the lines/s the child can produce at all
//   cat       stdout is a default pipe that `cat` drains into /dev/null: the simplest pipe reader
//   Node      stdout is a pipe read by child_process + readline in this process (lines to JS)
//   runner    a deployed server, stored by the runner, one streamLogs subscriber in its host
//   PM2       the same server under PM2, which writes its stdout to a log file
//   paced     the runner again, with the flood held to the lines/s plain Node took in this run
//             (a subscriber that can keep up: does it see a lag marker?)
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

import { startHost } from '../lib/host.mjs'
import { freePorts, get, waitHealthy, waitPortFree } from '../lib/net.mjs'
import { rssMb } from '../lib/procs.mjs'
import { fixture } from '../lib/runner.mjs'

const SECTION = 'Logs (issues 3 and 7)'

/** Samples the RSS of `pid()` every 20 ms until `stop()` is called; resolves the peak in MB. */
function peakRss(pid) {
  let peak = 0
  let running = true
  const done = (async () => {
    while (running) {
      const p = pid()
      const mb = p ? rssMb(p) : null
      if (mb !== null && mb > peak) peak = mb
      await sleep(20)
    }
    return peak
  })()
  return {
    stop() {
      running = false
      return done
    },
  }
}

/**
 * The fixture in flood-only mode with `stdout` as given (`'cat'`: a default pipe that `cat`
 * drains into /dev/null, the simplest reader of a pipe); resolves `{ n, ms }` from stderr.
 */
function floodOnly(ms, stdout, onLine) {
  const env = { PATH: process.env.PATH, BENCH_FLOOD_ONLY_MS: String(ms) }
  const child =
    stdout === 'cat'
      ? spawn('sh', ['-c', '"$0" "$1" | cat > /dev/null', process.execPath, fixture], { env, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, [fixture], { env, stdio: ['ignore', stdout, 'pipe'] })
  let err = ''
  child.stderr.on('data', (d) => {
    err += d
  })
  if (onLine) readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', onLine)
  return new Promise((resolve, reject) => {
    // 'close', not 'exit': every line of stdout has been read by then.
    child.on('close', () => {
      const m = /flood done (\d+) in ([\d.]+) ms/.exec(err)
      if (m) resolve({ n: Number(m[1]), ms: Number(m[2]) })
      else reject(new Error(`flood child: ${err}`))
    })
  })
}

export async function logs({ results, runs, tmp, marker, ports, pm2 }) {
  const ms = runs.floodMs
  const ceiling = []
  const catRate = []
  const nodeRate = []
  const nodeLost = []
  const runnerStored = []
  const runnerDelivered = []
  const runnerLost = []
  const runnerStoredLost = []
  const runnerMarkers = []
  const pacedMarkers = []
  const pacedLost = []
  const runnerRss = []
  const pm2Rate = []
  const pm2Lost = []
  const pm2Rss = []
  const devNull = fs.openSync('/dev/null', 'w')
  try {
    for (let i = 0; i < runs.logs; i++) {
      // Ceiling: the same child writing to /dev/null.
      {
        const { n, ms: took } = await floodOnly(ms, devNull)
        ceiling.push(n / (took / 1000))
      }
      // `cat`: the same child writing into a default pipe that `cat` empties.
      {
        const { n, ms: took } = await floodOnly(ms, 'cat')
        catRate.push(n / (took / 1000))
      }
      // Node: a pipe read line by line by this process.
      {
        let expected = 1
        let got = 0
        let gaps = 0
        let start = null
        let doneAt = null
        const { n } = await floodOnly(ms, 'pipe', (line) => {
          if (line.startsWith('line ')) {
            const k = Number(line.slice(5))
            if (k !== expected) gaps += 1
            expected = k + 1
            got += 1
          } else if (line.startsWith('flood start at ')) {
            start = Number(line.slice('flood start at '.length))
          } else if (line.startsWith('flood done ')) {
            doneAt = performance.timeOrigin + performance.now()
          }
        })
        if (start === null || doneAt === null) throw new Error('Node pipe: flood lines missing')
        nodeRate.push(got / ((doneAt - start) / 1000))
        nodeLost.push(n - got + gaps)
      }
      // The runner, in a host process of its own (its RSS is the runner's).
      {
        const host = await startHost({
          buildDir: path.join(tmp, `logs-host-${i}`),
          portStart: ports.runner,
          portEnd: ports.runner + 9,
          marker,
        })
        try {
          await host.request({ cmd: 'deploy', count: 1 })
          const rss = peakRss(() => host.pid)
          const r = await host.request({ cmd: 'flood', ms })
          runnerRss.push(Math.max(await rss.stop(), r.maxRssMb))
          runnerStored.push(r.stored / r.storedSeconds)
          runnerDelivered.push(r.delivered / r.deliveredSeconds)
          runnerLost.push(r.produced - r.delivered + r.gaps)
          runnerStoredLost.push(r.produced - r.stored)
          runnerMarkers.push(r.missedMarkers)
          const paced = await host.request({ cmd: 'flood', ms, rate: nodeRate[i] })
          pacedMarkers.push(paced.missedMarkers)
          pacedLost.push(paced.produced - paced.delivered + paced.gaps)
        } finally {
          await host.close()
        }
      }
      // PM2: the same server; its daemon writes stdout to a file, which is read afterwards.
      if (pm2) {
        const [port] = await freePorts(1, ports.pm2 + i * 10, ports.pm2 + i * 10 + 9)
        const name = `flood-${i}`
        const app = pm2.app(name, port, { env: { BENCH_FIXTURE: marker } })
        try {
          await pm2.start([app])
          await waitHealthy(port)
          const rss = peakRss(() => pm2.daemonPid())
          if ((await get(port, `/flood?ms=${ms}`)) !== 200) throw new Error('PM2 fixture refused /flood')
          const deadline = performance.now() + ms + 30000
          let doneAt = null
          while (performance.now() < deadline) {
            if (tailHas(app.out_file, 'flood done ')) {
              doneAt = performance.timeOrigin + performance.now()
              break
            }
            await sleep(2)
          }
          const peak = await rss.stop()
          if (doneAt === null) throw new Error('PM2 log file never showed the end of the flood')
          // The file can hold hundreds of MB: read it in chunks, not as one string.
          const { start, produced, got, gaps } = checkLogFile(app.out_file)
          pm2Rate.push(got / ((doneAt - start) / 1000))
          pm2Lost.push(produced - got + gaps)
          pm2Rss.push(peak)
        } finally {
          await pm2.delete(name).catch(() => {})
          await waitPortFree(port)
          fs.rmSync(app.out_file, { force: true })
        }
      }
    }
  } finally {
    fs.closeSync(devNull)
  }
  const fig = `short numbered lines for ${ms / 1000} s`
  results.add({ id: 'logs-ceiling', section: SECTION, figure: `${fig}: lines/s produced`, system: 'ceiling: the child writing to /dev/null', unit: 'lines/s', better: 'higher', values: ceiling })
  results.add({ id: 'logs-cat', section: SECTION, figure: `${fig}: lines/s produced`, system: '`cat`: the child writing into a default (64 KiB) pipe that `cat` drains to /dev/null', short: 'cat on a default pipe', unit: 'lines/s', better: 'higher', values: catRate, baseline: 'logs-ceiling' })
  results.add({ id: 'logs-node', section: SECTION, figure: `${fig}: lines/s delivered to JS`, system: 'plain Node: child_process pipe + readline', unit: 'lines/s', better: 'higher', values: nodeRate, baseline: 'logs-ceiling' })
  results.add({ id: 'logs-runner-stored', section: SECTION, figure: `${fig}: lines/s stored`, system: 'runner: deployed server, log store', unit: 'lines/s', better: 'higher', values: runnerStored, baseline: 'logs-ceiling', note: 'issue 3 target ≥ 1 M/s' })
  results.add({ id: 'logs-runner-delivered', section: SECTION, figure: `${fig}: lines/s delivered to JS`, system: 'runner: one `streamLogs` subscriber', unit: 'lines/s', better: 'higher', values: runnerDelivered, baseline: 'logs-ceiling', note: 'issue 3 target: within 2× of stored' })
  results.add({ id: 'logs-runner-delivered-vs-node', section: SECTION, figure: `${fig}: lines/s delivered to JS`, system: 'runner: one `streamLogs` subscriber (as above)', unit: 'lines/s', better: 'higher', values: runnerDelivered, baseline: 'logs-node', note: 'goal (issue 18): ≥ 1.0× plain Node' })
  if (pm2) results.add({ id: 'logs-pm2', section: SECTION, figure: `${fig}: lines/s captured`, system: 'PM2: lines in its out log file', unit: 'lines/s', better: 'higher', values: pm2Rate, baseline: 'logs-ceiling' })
  results.add({ id: 'logs-runner-vs-cat', section: SECTION, figure: `${fig}: lines/s captured`, system: 'runner: stored (as above)', unit: 'lines/s', better: 'higher', values: runnerStored, baseline: 'logs-cat', note: 'beside the simplest reader of a pipe' })
  if (pm2) results.add({ id: 'logs-pm2-vs-cat', section: SECTION, figure: `${fig}: lines/s captured`, system: 'PM2: lines in its out log file (as above)', unit: 'lines/s', better: 'higher', values: pm2Rate, baseline: 'logs-cat', note: 'beside the simplest reader of a pipe' })
  if (pm2) results.add({ id: 'logs-runner-vs-pm2', section: SECTION, figure: `${fig}: lines/s captured`, system: 'runner: stored (as above)', unit: 'lines/s', better: 'higher', values: runnerStored, baseline: 'logs-pm2' })
  results.add({ id: 'logs-lost-node', section: SECTION, figure: 'lines lost or out of order', system: 'plain Node', unit: 'lines', values: nodeLost, note: 'checked line by line' })
  results.add({ id: 'logs-lost-runner', section: SECTION, figure: 'lines lost or out of order', system: 'runner `streamLogs` subscriber', unit: 'lines', values: runnerLost, note: `checked line by line; lag markers received: ${runnerMarkers.join(', ')} (a subscriber that falls behind skips the oldest lines, by design)` })
  results.add({ id: 'logs-runner-markers', section: SECTION, figure: 'lag markers received', system: 'runner `streamLogs` subscriber', unit: 'markers', values: runnerMarkers, note: 'goal (issue 18): none while the subscriber keeps up' })
  results.add({ id: 'logs-runner-paced-markers', section: SECTION, figure: "lag markers received, flood paced at plain Node's lines/s", system: 'runner `streamLogs` subscriber', unit: 'markers', values: pacedMarkers, note: `goal (issue 18): none while the subscriber keeps up; lines lost or out of order: ${pacedLost.join(', ')}` })
  results.add({ id: 'logs-lost-runner-store', section: SECTION, figure: 'lines not ingested by the store', system: 'runner log store (entry ids)', unit: 'lines', values: runnerStoredLost, note: 'the ring keeps the last 10000 lines: ingest is checked by entry ids' })
  if (pm2) results.add({ id: 'logs-lost-pm2', section: SECTION, figure: 'lines lost or out of order', system: 'PM2 log file', unit: 'lines', values: pm2Lost, note: 'checked line by line' })
  if (pm2) results.add({ id: 'logs-rss-pm2', section: SECTION, figure: 'supervisor peak RSS during the flood', system: 'PM2 daemon', unit: 'MB', values: pm2Rss })
  results.add({ id: 'logs-rss-runner', section: SECTION, figure: 'supervisor peak RSS during the flood', system: 'runner host process (Node + addon)', unit: 'MB', values: runnerRss, baseline: pm2 ? 'logs-rss-pm2' : null })
}

/** Whether the last 256 bytes of `file` contain `needle`. */
function tailHas(file, needle) {
  let fd
  try {
    fd = fs.openSync(file, 'r')
    const size = fs.fstatSync(fd).size
    const len = Math.min(256, size)
    const buf = Buffer.alloc(len)
    fs.readSync(fd, buf, 0, len, size - len)
    return buf.toString('utf8').includes(needle)
  } catch {
    return false
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/**
 * Reads a log file in 4 MiB chunks: the flood's start time and line count, and the numbered
 * lines found (`got`) with the number of places where the numbering jumps (`gaps`).
 */
function checkLogFile(file) {
  const fd = fs.openSync(file, 'r')
  const buffer = Buffer.alloc(4 * 1024 * 1024)
  let rest = ''
  let start = null
  let produced = null
  let expected = 1
  let got = 0
  let gaps = 0
  const onLine = (line) => {
    if (line.startsWith('line ')) {
      const k = Number(line.slice(5))
      if (k !== expected) gaps += 1
      expected = k + 1
      got += 1
    } else if (line.startsWith('flood start at ')) {
      start = Number(line.slice('flood start at '.length))
    } else if (line.startsWith('flood done ')) {
      produced = Number(line.split(' ')[2])
    }
  }
  try {
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null)
      if (n === 0) break
      const lines = (rest + buffer.toString('latin1', 0, n)).split('\n')
      rest = lines.pop()
      for (const line of lines) onLine(line)
    }
    if (rest) onLine(rest)
  } finally {
    fs.closeSync(fd)
  }
  if (start === null || produced === null) throw new Error(`${file}: the flood's start or done line is missing`)
  return { start, produced, got, gaps }
}
