// keepServersOnExit: a server outlives its host (SIGKILLed, or exiting after detach()), and the
// next host's runner on the same buildDir adopts it: same id and port, the lines printed while
// no host ran in getLogs, new lines in streamLogs, stop() leaves nothing. Servers that died
// meanwhile are reported, not adopted; of two hosts starting at once only one adopts; with the
// default (false) a SIGKILLed host still takes its servers with it.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { LocalProcessRunnerConfig, RunningServer } from '../index'
import { addon, packageRoot } from './helpers/addon'
import { alive, entities, installBuild, listening } from './helpers/runner'
import { waitFor } from './helpers/wait'

type Runner = InstanceType<typeof addon.LocalProcessRunner>

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

let nextPort = 18400 + (Number(process.env.VITEST_POOL_ID ?? 1) % 8) * 40

/** A build directory with the fixture server as build output, and a config on one port. */
function setting(extra: LocalProcessRunnerConfig = {}) {
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-kept-'))
  const port = nextPort++
  const { project, deployment, build } = entities()
  installBuild(buildDir, build.id)
  const config: LocalProcessRunnerConfig = {
    buildDir,
    portRange: { start: port, end: port },
    shutdownTimeoutMs: 2000,
    healthCheck: { retryIntervalMs: 100, maxRetries: 50 },
    keepServersOnExit: true,
    ...extra,
  }
  cleanups.push(() => fs.rmSync(buildDir, { recursive: true, force: true }))
  return { config, port, project, deployment, build }
}

/** A runner in this process; shut down after the test. */
function runnerOf(config: LocalProcessRunnerConfig): Runner {
  const runner = new addon.LocalProcessRunner(config)
  cleanups.push(() => runner.shutdown())
  return runner
}

/** A host process whose runner deploys the fixture (printing a tick every 100 ms), prints
 * `deployed <id> <port> <pid>`, then runs `after` (JS, with `runner` and `server` in scope). */
function startHost(s: ReturnType<typeof setting>, after = '') {
  const script = `
    const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
    const runner = new LocalProcessRunner(${JSON.stringify(s.config)})
    runner.deploy(${JSON.stringify(s.project)}, ${JSON.stringify(s.deployment)}, ${JSON.stringify(s.build)},
      { envVars: { FIXTURE_TICK_MS: '100' } }).then(async (server) => {
        console.log('deployed', server.id, server.port, server.processId)
        ${after}
      }, (error) => console.log('failed', error.message))
    setInterval(() => {}, 1000)`
  return hostProcess(script)
}

function hostProcess(script: string) {
  const host = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  host.stdout!.on('data', (chunk) => (out += chunk))
  const exited = new Promise<void>((resolve) => host.once('exit', () => resolve()))
  cleanups.push(() => {
    if (host.exitCode === null && host.signalCode === null) host.kill('SIGKILL')
  })
  return { host, out: () => out, exited }
}

async function deployedBy(out: () => string): Promise<{ id: string; port: number; pid: number }> {
  await waitFor(() => /deployed \S+ \d+ \d+\n|failed/.test(out()), 30_000, 'the host to deploy')
  const match = /deployed (\S+) (\d+) (\d+)/.exec(out())
  if (!match) throw new Error(`the host's deploy failed: ${out()}`)
  return { id: match[1], port: Number(match[2]), pid: Number(match[3]) }
}

/** A host deploys, detaches and exits; then its server is SIGKILLed while no host runs. */
async function detachedThenKilled(s: ReturnType<typeof setting>) {
  const { out, exited } = startHost(s, `await runner.detach(); process.exit(0)`)
  const kept = await deployedBy(out)
  await exited
  process.kill(kept.pid, 'SIGKILL')
  return kept
}

async function healthOf(port: number): Promise<number | string> {
  return fetch(`http://127.0.0.1:${port}/health`).then(
    (r) => r.status,
    (e) => String(e.cause?.code ?? e),
  )
}

function ticksIn(text: string): number[] {
  return [...text.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]))
}

/** Kills a server process that outlived its test, whatever happened. */
function killLater(pid: number) {
  cleanups.push(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  })
}

/** The adopted server: listed with `id` and `port`, healthy; its log has every tick. */
async function expectAdopted(runner: Runner, kept: { id: string; port: number; pid: number }) {
  const listed = runner.listServers()
  expect(listed.map((s) => [s.id, s.port, s.processId])).toEqual([[kept.id, kept.port, kept.pid]])
  expect(runner.getStats().adoption?.adopted).toEqual([kept.id])
  expect(runner.getStats().allocatedPorts).toEqual([kept.port])
  const server = listed[0] as RunningServer
  await waitFor(async () => (await runner.healthCheck(server)).healthy, 10_000, 'health')
  await waitFor(async () => runner.listServers()[0]?.healthStatus === 'healthy', 10_000, 'healthy status')
  return server
}

/** `getLogs` holds at least `count` ticks from tick 1 without a gap, and `streamLogs` gets the
 * ones that follow. */
async function expectTicks(runner: Runner, server: RunningServer, count: number) {
  await waitFor(async () => ticksIn(await runner.getLogs(server)).length >= count, 10_000, 'ticks in getLogs')
  const ticks = ticksIn(await runner.getLogs(server))
  expect(ticks[0]).toBe(1)
  expect(ticks.every((t, i) => i === 0 || t === ticks[i - 1] + 1)).toBe(true)
  const streamed: string[] = []
  const unsubscribe = runner.streamLogs(server, (line) => streamed.push(line))
  await waitFor(() => ticksIn(streamed.join('\n')).length >= 2, 10_000, 'streamed ticks')
  unsubscribe()
  expect(ticksIn(streamed.join('\n'))[0]).toBeGreaterThan(ticks[ticks.length - 1] - 1)
}

describe('keepServersOnExit: true', () => {
  it('a SIGKILLed host leaves its server serving; the next runner adopts it with its logs, and stop() leaves nothing', async () => {
    const s = setting()
    const { host, out, exited } = startHost(s)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    await waitFor(async () => ticksIn((await fs.promises.readFile(logFileOf(s, kept.id), 'utf8')).toString()).length >= 3, 10_000, 'a few ticks')
    host.kill('SIGKILL')
    await exited
    // Ticks go on while no host runs.
    const before = ticksIn(fs.readFileSync(logFileOf(s, kept.id), 'utf8')).length
    await waitFor(() => ticksIn(fs.readFileSync(logFileOf(s, kept.id), 'utf8')).length >= before + 3, 10_000, 'ticks with no host')
    expect(alive(kept.pid)).toBe(true)
    expect(await healthOf(kept.port)).toBe(200)

    const runner = runnerOf(s.config)
    const server = await expectAdopted(runner, kept)
    // getLogs has every tick from the first, the ones printed while no host ran included.
    await expectTicks(runner, server, before + 3)
    const usage = await runner.getResourceUsage(server)
    expect(usage.memoryUsageMb).toBeGreaterThan(0)

    await runner.stop(server)
    expect(alive(kept.pid)).toBe(false)
    expect(await listening(kept.port)).toBe(false)
    expect(runner.listServers()).toEqual([])
    expect(runner.getStats().allocatedPorts).toEqual([])
    expect(fs.readdirSync(keptDir(s)).filter((f) => f.startsWith(kept.id))).toEqual([])
  })

  it('detach() then a normal exit: the server keeps running and the next runner adopts it', async () => {
    const s = setting()
    const { out, exited } = startHost(s, `await runner.detach(); console.log('detached'); process.exit(0)`)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    await exited
    expect(out()).toContain('detached')
    expect(alive(kept.pid)).toBe(true)
    expect(await healthOf(kept.port)).toBe(200)

    const runner = runnerOf(s.config)
    const server = await expectAdopted(runner, kept)
    await expectTicks(runner, server, 3)
    await runner.stop(server)
    expect(alive(kept.pid)).toBe(false)
    expect(await listening(server.port)).toBe(false)
    expect(runner.getStats().allocatedPorts).toEqual([])
  })

  it('getLogs and getLogsPaginated of a just-adopted server hold every line its file held, without waiting', async () => {
    const s = setting({ logRetentionLines: 1_000_000 })
    const { out, exited } = startHost(s, `await runner.detach(); process.exit(0)`)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    await exited
    // Output that piled up while no host ran: the file holds 200 000 lines more.
    const filler = Array.from({ length: 200_000 }, (_, i) => `filler ${i + 1}\n`).join('')
    fs.appendFileSync(logFileOf(s, kept.id), filler)

    const runner = runnerOf(s.config)
    const [server] = runner.listServers()
    expect(server.id).toBe(kept.id)
    const logs = await runner.getLogs(server)
    expect(logs).toContain('\nfiller 1\n')
    expect(logs).toContain('\nfiller 200000')
    const page = await runner.getLogsPaginated(server, { limit: 1_000_000 })
    expect(page.entries.filter((entry) => entry.line.startsWith('filler '))).toHaveLength(200_000)
    await runner.stop(server)
  })

  for (const [how, after] of [
    ['ends by SIGTERM (its signal hook runs)', `process.kill(process.pid, 'SIGTERM')`],
    ['exits without detach()', `process.exit(0)`],
  ] as const) {
    it(`a host that ${how} leaves its server running for the next runner`, async () => {
      const s = setting()
      const { out, exited } = startHost(s, after)
      const kept = await deployedBy(out)
      killLater(kept.pid)
      await exited
      expect(alive(kept.pid)).toBe(true)
      expect(await healthOf(kept.port)).toBe(200)
      const runner = runnerOf(s.config)
      await expectAdopted(runner, kept)
    })
  }

  it('a server that died while no host ran is reported, not adopted, and its port is free', async () => {
    const s = setting()
    const kept = await detachedThenKilled(s)
    await waitFor(() => !alive(kept.pid), 5_000, 'the server to die')

    const runner = runnerOf(s.config)
    expect(runner.listServers()).toEqual([])
    const adoption = runner.getStats().adoption!
    expect(adoption.adopted).toEqual([])
    expect(adoption.died.map((d) => [d.serverId, d.port])).toEqual([[kept.id, kept.port]])
    expect(adoption.died[0].logEndedAt).toBeInstanceOf(Date)
    expect(adoption.died[0].reason).toMatch(/stopped while no runner supervised it/)
    expect(runner.getStats().allocatedPorts).toEqual([])
    // The port is free: nothing listens, and a new deploy gets it (the range is that one port).
    // A SIGKILLed Node's main thread turns zombie a moment before its other threads have
    // closed its sockets, so the listener may outlive the `alive()` check above briefly.
    await waitFor(async () => !(await listening(kept.port)), 5_000, 'the listener to close')
    await waitFor(() => canBind(kept.port), 5_000, 'the port to be bindable')
    const fresh = await runner.deploy(s.project, s.deployment, s.build)
    expect(fresh.port).toBe(kept.port)
  })

  it('a recorded pid now used by an unrelated process is not adopted, and that process is left alone', async () => {
    const s = setting()
    const kept = await detachedThenKilled(s)
    const unrelated = spawn('sleep', ['30'], { stdio: 'ignore' })
    cleanups.push(() => void unrelated.kill('SIGKILL'))
    const recordPath = path.join(keptDir(s), `${kept.id}.json`)
    const record = JSON.parse(fs.readFileSync(recordPath, 'utf8'))
    fs.writeFileSync(recordPath, JSON.stringify({ ...record, pid: unrelated.pid, pgid: unrelated.pid }))

    const runner = runnerOf(s.config)
    expect(runner.listServers()).toEqual([])
    expect(runner.getStats().adoption!.died.map((d) => d.serverId)).toEqual([kept.id])
    expect(alive(unrelated.pid!)).toBe(true)
  })

  it('two hosts starting at once on the same buildDir: exactly one adopts', async () => {
    const s = setting()
    const { host, out, exited } = startHost(s)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    host.kill('SIGKILL')
    await exited
    const adopter = `
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner(${JSON.stringify(s.config)})
      console.log('report ' + JSON.stringify({ listed: runner.listServers().map((s) => s.id), adoption: runner.getStats().adoption }))
      setInterval(() => {}, 1000)`
    const hosts = [hostProcess(adopter), hostProcess(adopter)]
    const reports = await Promise.all(
      hosts.map(async ({ out }) => {
        await waitFor(() => /report .*\n/.test(out()), 20_000, 'an adoption report')
        return JSON.parse(/report (.*)\n/.exec(out())![1])
      }),
    )
    const adopters = reports.filter((r) => r.listed.length === 1)
    expect(adopters).toHaveLength(1)
    expect(adopters[0].listed).toEqual([kept.id])
    const other = reports.find((r) => r.listed.length === 0)
    expect(other.adoption.adopted).toEqual([])
    // It says why: the other one was adopting right then, or owns the server now.
    expect(Boolean(other.adoption.notAdopted) || other.adoption.leftToOtherRunner.includes(kept.id)).toBe(true)
    expect(await healthOf(kept.port)).toBe(200)
  })

  it('a runner started while the first host still runs leaves its servers to it', async () => {
    const s = setting()
    const { out } = startHost(s)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    const runner = runnerOf(s.config)
    expect(runner.listServers()).toEqual([])
    expect(runner.getStats().adoption!.leftToOtherRunner).toEqual([kept.id])
  })
})

describe('keepServersOnExit: false (the default)', () => {
  it('a SIGKILLed host still takes its server with it, and detach() rejects with ERR_INVALID_STATE', async () => {
    const s = setting({ keepServersOnExit: false })
    const { host, out, exited } = startHost(s)
    const kept = await deployedBy(out)
    killLater(kept.pid)
    host.kill('SIGKILL')
    await exited
    await waitFor(() => !alive(kept.pid), 5_000, 'the server to die with its host')
    const runner = runnerOf(s.config)
    expect(runner.getStats().adoption).toBeUndefined()
    await expect(runner.detach()).rejects.toMatchObject({ code: 'ERR_INVALID_STATE' })
    await expect(runner.detach()).rejects.toThrow(/keepServersOnExit/)
  })
})

/** Whether a listener can be bound on 127.0.0.1:`port` now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

function keptDir(s: ReturnType<typeof setting>): string {
  return path.join(s.config.buildDir!, '.runner', 'kept')
}

function logFileOf(s: ReturnType<typeof setting>, id: string): string {
  return path.join(keptDir(s), `${id}.log`)
}

