// Issue 30's tenant attacks, run by a hostile server (fixtures/attacker) against a victim
// deployed beside it, against the host (this process, a decoy process, a file of the admin's)
// and against the port range: each succeeds with `sandbox: false` (so the spec can fail) and is
// refused by the default sandbox. Then the kernel limits (pids, memory) with a second server
// unaffected, a build whose postinstall steals from the host, and `getStats().isolation`.
// Where the kernel has no Landlock or user namespaces, or no writable cgroup, the protected
// halves skip with the reason `getStats()` gives.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { LocalProcessRunnerConfig, RunningServer, RunOptions } from '../index'
import { addon, packageRoot } from './helpers/addon'
import { attack, cgroupsWritable, heartbeat, portBlock } from './helpers/isolation'
import { alive, entities, installBuild, makeRunner, type Runner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

const temps: string[] = []
const decoys: number[] = []

afterAll(async () => {
  await shutdownRunners()
  for (const pid of decoys) if (alive(pid)) process.kill(pid, 'SIGKILL')
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh directory outside every build directory, removed after the file. */
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  temps.push(dir)
  return dir
}

/** A runner of this spec (its own ports), with `config` over the defaults. */
function isolationRunner(config: LocalProcessRunnerConfig = {}) {
  return makeRunner({ portRange: portBlock(), ...config })
}

/** Deploys the attacker fixture as a new deployment of `runner`. */
async function deployAttacker(runner: Runner, buildDir: string, options: RunOptions = {}) {
  const { project, deployment, build } = entities()
  installBuild(buildDir, build.id, 'attacker')
  const server = await runner.deploy(project, deployment, build, options)
  return { server, buildId: build.id }
}

const root = process.getuid?.() === 0

/** Whether `command` is on PATH. */
function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

const stats = isolationRunner().runner.getStats().isolation
const noSandbox = stats.sandbox ? '' : ` (skipped: ${stats.sandboxReason})`
const noCgroup = cgroupsWritable() ? '' : ` (skipped: ${stats.limitsReason ?? 'no writable cgroup hierarchy'})`

/** `[name, mode]`: without the sandbox every attack must succeed (so each spec can fail). */
const modes = [
  ['with sandbox: false, each attack succeeds', { config: { sandbox: false }, succeeds: true, skip: false }],
  [`in the default sandbox, each attack is refused${noSandbox}`, { config: {}, succeeds: false, skip: !stats.sandbox }],
] as const

describe.each(modes)('%s', (_name, { config, succeeds, skip }) => {
  let runner: Runner
  let buildDir: string
  let attacker: RunningServer
  let attackerBuildId: string
  let victim: RunningServer
  let victimBuildId: string
  const secret = `hunter2-${randomUUID()}`
  const abstractSocket = `victim-${randomUUID()}`

  beforeAll(async () => {
    if (skip) return
    ;({ runner, buildDir } = isolationRunner(config))
    const envVars = { VICTIM_SECRET: secret, ATTACK_TICK_MS: '20', ATTACK_ABSTRACT: abstractSocket }
    ;({ server: victim, buildId: victimBuildId } = await deployAttacker(runner, buildDir, { envVars }))
    // Without the sandbox there is no private TMPDIR: the file stands for one.
    for (const dir of [victimBuildId, path.join('.data', victim.deploymentId), path.join('.tmp', victim.id)]) {
      fs.mkdirSync(path.join(buildDir, dir), { recursive: true })
      fs.writeFileSync(path.join(buildDir, dir, 'secret.txt'), secret)
    }
    ;({ server: attacker, buildId: attackerBuildId } = await deployAttacker(runner, buildDir))
  })

  /** Expects `attack` to have succeeded exactly when this mode says it should. */
  function expectOutcome(result: { ok: boolean; detail: string }) {
    expect(result.ok, result.detail).toBe(succeeds)
  }

  it.skipIf(skip)("reads another deployment's environment (/proc/*/environ)", async () => {
    expectOutcome(await attack(attacker, 'environ-scan', { secret }))
  })

  it.skipIf(skip)("reads the admin's environment (/proc/<host pid>/environ)", async () => {
    expectOutcome(await attack(attacker, 'read-environ', { pid: process.pid }))
  })

  it.skipIf(skip)("reads the admin's files", async () => {
    const file = path.join(tempDir('isolation-admin-'), 'github-app.pem')
    const adminSecret = `admin-${randomUUID()}`
    fs.writeFileSync(file, adminSecret)
    expectOutcome(await attack(attacker, 'read-file', { path: file, secret: adminSecret }))
  })

  it.skipIf(skip)("reads another build's output", async () => {
    expectOutcome(await attack(attacker, 'read-file', { path: path.join(buildDir, victimBuildId, 'secret.txt'), secret }))
  })

  it.skipIf(skip)("reads another deployment's data directory", async () => {
    expectOutcome(await attack(attacker, 'read-file', { path: path.join(buildDir, '.data', victim.deploymentId, 'secret.txt'), secret }))
  })

  it.skipIf(skip)("reads another server's TMPDIR", async () => {
    expectOutcome(await attack(attacker, 'read-file', { path: path.join(buildDir, '.tmp', victim.id, 'secret.txt'), secret }))
  })

  it.skipIf(skip).each(['hard', 'sym'])("reads another build's file through a %s link in its own build", async (kind) => {
    const from = path.join(buildDir, victimBuildId, 'secret.txt')
    const to = path.join(buildDir, attackerBuildId, `stolen-${kind}`)
    expectOutcome(await attack(attacker, 'link', { from, to, secret, kind }))
  })

  it.skipIf(skip)("writes the runner's state (.runner)", async () => {
    const file = path.join(buildDir, '.runner', 'planted.json')
    expectOutcome(await attack(attacker, 'write-file', { path: file }))
    expect(fs.existsSync(file)).toBe(succeeds)
    fs.rmSync(file, { force: true })
  })

  it.skipIf(skip)("connects to another server's abstract unix socket", async () => {
    expectOutcome(await attack(attacker, 'connect-abstract', { name: abstractSocket }))
  })

  it.skipIf(skip).each([
    ['a directory of the admin', () => path.join(tempDir('isolation-admin-'), 'planted.mjs')],
    ['/dev/shm', () => `/dev/shm/isolation-${randomUUID()}`],
  ])("writes the host's files (%s)", async (_where, file) => {
    const target = file()
    await attack(attacker, 'write-file', { path: target })
    // Judged by the host's file: a sandbox writing its own private /dev/shm is no attack.
    const written = fs.existsSync(target)
    fs.rmSync(target, { force: true })
    expect(written).toBe(succeeds)
  })

  it.skipIf(skip)("reads the host's shared memory (/dev/shm)", async () => {
    const segment = `/dev/shm/isolation-${randomUUID()}`
    fs.writeFileSync(segment, secret, { mode: 0o600 })
    try {
      expectOutcome(await attack(attacker, 'read-file', { path: segment, secret }))
    } finally {
      fs.rmSync(segment, { force: true })
    }
  })

  it.skipIf(skip)("connects to the admin's unix socket", async () => {
    const socketPath = path.join(tempDir('isolation-admin-'), 'admin.sock')
    const admin = net.createServer((socket) => socket.end())
    await new Promise<void>((resolve) => admin.listen(socketPath, resolve))
    try {
      expectOutcome(await attack(attacker, 'connect-unix', { path: socketPath }))
    } finally {
      admin.close()
    }
  })

  it.skipIf(skip || !root)('holds capabilities (a host running as root)', async () => {
    expectOutcome(await attack(attacker, 'capabilities'))
  })

  it.skipIf(skip || !root)("reads the host's /etc/shadow (a host running as root)", async () => {
    expectOutcome(await attack(attacker, 'read-file', { path: '/etc/shadow', secret: 'root:' }))
  })

  it.skipIf(skip || !root || !has('losetup'))("reads a disk of the host's (a loop device; a host running as root)", async (context) => {
    const image = path.join(tempDir('isolation-disk-'), 'disk.img')
    const diskSecret = `disk-${randomUUID()}`
    fs.writeFileSync(image, Buffer.concat([Buffer.from(diskSecret), Buffer.alloc(64 * 1024)]))
    const attached = spawnSync('losetup', ['--find', '--show', image], { encoding: 'utf8' })
    if (attached.status !== 0) context.skip(`no loop device: ${attached.stderr.trim()}`)
    const device = attached.stdout.trim()
    try {
      expectOutcome(await attack(attacker, 'read-file', { path: device, secret: diskSecret }))
    } finally {
      spawnSync('losetup', ['--detach', device])
    }
  })

  it.skipIf(skip || !root)('moves itself out of its cgroup (a host running as root)', async () => {
    const { server: mover } = await deployAttacker(runner, buildDir)
    const file = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup/cgroup.procs' : '/sys/fs/cgroup/pids/cgroup.procs'
    expectOutcome(await attack(mover, 'leave-cgroup', { file }))
    await runner.stop(mover)
  })

  it.skipIf(skip || !has('ipcmk'))("removes a SysV message queue of the host's", async () => {
    const queue = /(\d+)/.exec(execFileSync('ipcmk', ['-Q'], { encoding: 'utf8' }))![1]
    try {
      expectOutcome(await attack(attacker, 'exec', { command: 'ipcrm', args: JSON.stringify(['-q', queue]) }))
    } finally {
      spawnSync('ipcrm', ['-q', queue])
    }
  })

  it.skipIf(skip || !has('bash'))("reads a file of the host's through a descriptor the host left open", async () => {
    // A host started with an open descriptor that is not close-on-exec (a file or socket its
    // own parent passed down): the runner runs in a separate Node with the file as its fd 300
    // (Node marks low inherited descriptors close-on-exec at startup, not high ones).
    const dir = tempDir('isolation-host-')
    const file = path.join(dir, 'admin.key')
    const hostSecret = `fd-${randomUUID()}`
    fs.writeFileSync(file, hostSecret)
    const { project, deployment, build } = entities()
    const hostBuildDir = path.join(dir, 'builds')
    installBuild(hostBuildDir, build.id, 'attacker')
    const script = `
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner(${JSON.stringify({ buildDir: hostBuildDir, portRange: portBlock(), ...config })})
      runner.deploy(${JSON.stringify([project, deployment, build]).slice(1, -1)}).then(async (server) => {
        const response = await fetch('http://127.0.0.1:' + server.port + '/attack/inherited-fds?secret=${hostSecret}')
        console.log(await response.text())
        await runner.shutdown()
      })`
    const host = spawnSync('bash', ['-c', 'exec "$0" -e "$1" 300<"$2"', process.execPath, script, file], {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      timeout: 20_000,
    })
    // Refused with and without a sandbox: the one spawner marks every descriptor above the
    // standard ones (and the IPC channel) close-on-exec in every child it starts.
    const result = JSON.parse(host.stdout)
    expect(result.ok, result.detail).toBe(false)
  })

  it.skipIf(skip)("rewrites another server's index.mjs", async () => {
    const file = path.join(buildDir, victimBuildId, '.mastra', 'output', 'index.mjs')
    const original = fs.readFileSync(file, 'utf8')
    const result = await attack(attacker, 'write-file', { path: file })
    const changed = fs.readFileSync(file, 'utf8') !== original
    fs.writeFileSync(file, original)
    expectOutcome(result)
    expect(changed).toBe(succeeds)
  })

  it.skipIf(skip)("reads another server's stdout (/proc/<pid>/fd/1)", async () => {
    expectOutcome(await attack(attacker, 'read-fd', { pid: victim.processId! }))
  })

  it.skipIf(skip)('binds another port of the range', async () => {
    const { end } = runner.getConfig().portRange
    const other = [end, end - 1].find((port) => port !== attacker.port && port !== victim.port)!
    expectOutcome(await attack(attacker, 'bind', { port: other }))
  })

  it.skipIf(skip)('binds another port of the range over IPv6', async () => {
    const { end } = runner.getConfig().portRange
    const other = [end, end - 1].find((port) => port !== attacker.port && port !== victim.port)!
    expectOutcome(await attack(attacker, 'bind', { port: other, host: '::1' }))
  })

  it.skipIf(skip)('takes every free port of the range', async () => {
    const { start, end } = runner.getConfig().portRange
    expectOutcome(await attack(attacker, 'bind-range', { start, end }))
  })

  it.skipIf(skip)('SIGKILLs a process of the host', async () => {
    const decoy = spawn('sleep', ['1000'], { stdio: 'ignore' })
    decoys.push(decoy.pid!)
    expectOutcome(await attack(attacker, 'kill', { pid: decoy.pid! }))
    if (succeeds) await waitFor(() => !alive(decoy.pid!), 5_000, 'the decoy to die')
    else expect(alive(decoy.pid!)).toBe(true)
  })

  it.skipIf(skip)('SIGKILLs another server', async () => {
    const { server: target } = await deployAttacker(runner, buildDir)
    expectOutcome(await attack(attacker, 'kill', { pid: target.processId! }))
    if (succeeds) await waitFor(async () => !(await runner.healthCheck(target)).healthy, 5_000, 'the target to die')
    else expect(await runner.healthCheck(target)).toEqual({ healthy: true })
    await runner.stop(target)
  })

  it.skipIf(skip)('hides a `setsid env -i` child holding 300 MB from getResourceUsage, alive after stop()', async () => {
    const { server: escaper } = await deployAttacker(runner, buildDir)
    const started = await attack(escaper, 'escape', { mb: 300 })
    expect(started.ok, started.detail).toBe(true)
    const file = started.detail
    await waitFor(() => heartbeat(file) !== null, 10_000, 'the first heartbeat')
    // With a cgroup per server (sandboxed or not), the kernel counts the escapee and stop()
    // ends it; only a runner with neither a sandbox nor a cgroup misses it.
    const missed = succeeds && !!noCgroup
    const usage = await runner.getResourceUsage(escaper)
    expect(usage.memoryUsageMb! >= 300, `${usage.memoryUsageMb} MB counted`).toBe(!missed)
    await runner.stop(escaper)
    const last = heartbeat(file)!
    if (missed) {
      await waitFor(() => heartbeat(file)!.at > last.at, 5_000, 'a heartbeat after stop()')
      process.kill(heartbeat(file)!.pid, 'SIGKILL')
    } else {
      // No condition to wait on for "nothing happens": give the child ten beats' time.
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      expect(heartbeat(file)?.at ?? last.at).toBe(last.at)
    }
  })
})

describe(`private temporary directories${noSandbox}`, () => {
  it.skipIf(!stats.sandbox)('a starting runner removes those a killed host left, and keeps those in use', async () => {
    const { runner: first, buildDir } = isolationRunner()
    const { server } = await deployAttacker(first, buildDir)
    const tmp = path.join(buildDir, '.tmp')
    const ownTmp = path.join(tmp, server.id)
    expect(fs.existsSync(ownTmp)).toBe(true)
    // What a host SIGKILLed mid-build left (an hour old), and one another host just made.
    const left = path.join(tmp, `build-${randomUUID()}`)
    const fresh = path.join(tmp, `build-${randomUUID()}`)
    fs.mkdirSync(path.join(left, 'npm'), { recursive: true })
    fs.writeFileSync(path.join(left, 'npm', 'leftover.tgz'), 'x')
    fs.mkdirSync(fresh)
    const hourAgo = new Date(Date.now() - 3_600_000)
    for (const dir of [left, ownTmp]) fs.utimesSync(dir, hourAgo, hourAgo)

    const next = new addon.LocalProcessRunner({ buildDir, portRange: portBlock() })
    try {
      await deployAttacker(next, buildDir)
      expect(fs.existsSync(left), 'the leftover goes').toBe(false)
      expect(fs.existsSync(fresh), 'a directory made a moment ago stays').toBe(true)
      expect(fs.existsSync(ownTmp), 'the first runner still holds its server\'s').toBe(true)
    } finally {
      await next.shutdown()
    }
    await first.shutdown()
    expect(fs.existsSync(ownTmp)).toBe(false)
  })
})

describe(`sandbox.isolatePorts${noSandbox}`, () => {
  it.skipIf(!stats.sandbox || stats.landlockAbi < 4)("keeps a server from another server's port of the range by default, not from its own or others", async () => {
    const outside = net.createServer((socket) => socket.end())
    await new Promise<void>((resolve) => outside.listen(0, '127.0.0.1', resolve))
    const outsidePort = (outside.address() as net.AddressInfo).port
    try {
      // By default a server cannot reach another's port past the router; with the sandbox off,
      // or `isolatePorts: false`, it can.
      const cases: Array<{ sandbox: LocalProcessRunnerConfig['sandbox']; refused: boolean }> = [
        { sandbox: undefined, refused: true },
        { sandbox: { isolatePorts: false }, refused: false },
        { sandbox: false, refused: false },
      ]
      for (const { sandbox, refused } of cases) {
        const { runner, buildDir } = isolationRunner(sandbox === undefined ? {} : { sandbox })
        const { server: victim } = await deployAttacker(runner, buildDir)
        const { server: attacker } = await deployAttacker(runner, buildDir)
        const other = await attack(attacker, 'connect-tcp', { port: victim.port })
        expect(other.ok, `sandbox ${JSON.stringify(sandbox)}: ${other.detail}`).toBe(!refused)
        const own = await attack(attacker, 'connect-tcp', { port: attacker.port })
        expect(own.ok, own.detail).toBe(true)
        const elsewhere = await attack(attacker, 'connect-tcp', { port: outsidePort })
        expect(elsewhere.ok, elsewhere.detail).toBe(true)
        await runner.shutdown()
      }
    } finally {
      outside.close()
    }
  })
})

describe(`kernel limits${noCgroup}`, () => {
  it.skipIf(!!noCgroup)('pids: 64 makes forks fail inside the server only; the next deploy works', async () => {
    const { runner, buildDir } = isolationRunner()
    const { server: unlimited } = await deployAttacker(runner, buildDir)
    const free = await attack(unlimited, 'fork', { max: 200 })
    expect(free.ok, free.detail).toBe(true)
    await runner.stop(unlimited)

    const { server: bomber } = await deployAttacker(runner, buildDir, { limits: { pids: 64 } })
    const bombed = await attack(bomber, 'fork', { max: 200 })
    expect(bombed.ok, bombed.detail).toBe(false)
    expect(bombed.detail).toMatch(/^\d+ started, then E/)
    const { server: next } = await deployAttacker(runner, buildDir)
    expect(await runner.healthCheck(next)).toEqual({ healthy: true })
    expect(await runner.healthCheck(bomber)).toEqual({ healthy: true })
  })

  it.skipIf(!!noCgroup)('memoryMb: 160 (config) kills a server allocating 400 MB, saying why; the next deploy works', async () => {
    const free = isolationRunner()
    const { server: unlimited } = await deployAttacker(free.runner, free.buildDir)
    const allocated = await attack(unlimited, 'alloc', { mb: 400 })
    expect(allocated.ok, allocated.detail).toBe(true)
    await free.runner.stop(unlimited)

    const { runner, buildDir } = isolationRunner({ limits: { memoryMb: 160 } })
    const { server: hog } = await deployAttacker(runner, buildDir)
    const hogged = await attack(hog, 'alloc', { mb: 400 })
    expect(hogged.ok, hogged.detail).toBe(false)
    const oom = /killed: out of memory \(limit 160 MB\)/
    await waitFor(async () => oom.test(await runner.getLogs(hog)), 10_000, 'the out-of-memory line')
    expect(await runner.healthCheck(hog)).toEqual({ healthy: false, message: expect.stringMatching(oom) })
    const { server: next } = await deployAttacker(runner, buildDir)
    expect(await runner.healthCheck(next)).toEqual({ healthy: true })
  })

  it.skipIf(!!noCgroup || !stats.enforced.cpus)('cpus: 0.2 holds a busy server to a fifth of a core', async () => {
    const { runner, buildDir } = isolationRunner()
    const { server: free } = await deployAttacker(runner, buildDir)
    const { server: held } = await deployAttacker(runner, buildDir, { limits: { cpus: 0.2 } })
    const busy = async (server: RunningServer) => {
      await runner.getResourceUsage(server)
      await attack(server, 'spin', { ms: 1500 })
      return (await runner.getResourceUsage(server)).cpuPercent!
    }
    const unlimited = await busy(free)
    const limited = await busy(held)
    // The unlimited figure only shows the spin is busy enough to tell; other work on the host
    // (a parallel build, say) takes part of a core from it.
    expect(unlimited, `unlimited ${unlimited} %`).toBeGreaterThan(45)
    expect(limited, `limited ${limited} %`).toBeLessThan(35)
  })

  it('without a cgroup (MASTRA_RUNNER_CGROUPS=off), an RSS watchdog enforces memoryMb and says so', async () => {
    // The switch is read when the runner first looks for cgroups (its first deploy); this file's
    // specs run one after another in this worker, so no other runner sees it.
    process.env.MASTRA_RUNNER_CGROUPS = 'off'
    try {
      const { runner, buildDir } = isolationRunner({ limits: { memoryMb: 100 } })
      const { server: hog } = await deployAttacker(runner, buildDir)
      const { isolation } = runner.getStats()
      expect(isolation).toMatchObject({ limits: 'watchdog', enforced: { memory: true, pids: false, cpus: false } })
      expect(isolation.limitsReason).toBe('turned off by MASTRA_RUNNER_CGROUPS=off')
      await attack(hog, 'alloc', { mb: 300 })
      const oom = /killed: out of memory \(limit 100 MB\)/
      await waitFor(async () => oom.test(await runner.getLogs(hog)), 10_000, 'the watchdog to kill the server')
      expect(await runner.getLogs(hog)).toMatch(/memory watchdog: \d+ MB resident, over the limit of 100 MB/)
      expect(await runner.healthCheck(hog)).toEqual({ healthy: false, message: expect.stringMatching(oom) })
    } finally {
      delete process.env.MASTRA_RUNNER_CGROUPS
    }
  })

  it('without a cgroup, a kept server adopted by the next runner is still watched (memoryMb)', async () => {
    process.env.MASTRA_RUNNER_CGROUPS = 'off'
    try {
      const config = { keepServersOnExit: true, limits: { memoryMb: 100 } }
      const { runner: first, buildDir } = isolationRunner(config)
      const { server } = await deployAttacker(first, buildDir)
      await first.detach()
      const next = new addon.LocalProcessRunner({ buildDir, portRange: first.getConfig().portRange, ...config })
      try {
        expect(next.getStats().adoption?.adopted).toEqual([server.id])
        const [adopted] = next.listServers()
        await attack(adopted, 'alloc', { mb: 300 })
        const oom = /killed: out of memory \(limit 100 MB\)/
        await waitFor(async () => oom.test(await next.getLogs(adopted)), 10_000, 'the watchdog to kill the adopted server')
        expect(await next.healthCheck(adopted)).toEqual({ healthy: false, message: expect.stringMatching(oom) })
      } finally {
        await next.shutdown()
      }
    } finally {
      delete process.env.MASTRA_RUNNER_CGROUPS
    }
  })
})

describe.each(modes)('a build whose postinstall steals from the host, %s', (_name, { config, succeeds, skip }) => {
  it.skipIf(skip)("reaches the admin's environment and files only without the sandbox", async () => {
    const { runner } = isolationRunner(config)
    const source = tempDir('isolation-project-')
    fs.cpSync(path.join(__dirname, 'fixtures', 'attacker', 'project'), source, { recursive: true })
    const adminFile = path.join(tempDir('isolation-admin-'), 'github-app.pem')
    const adminSecret = `admin-${randomUUID()}`
    fs.writeFileSync(adminFile, adminSecret)
    const appKey = `ADMIN_GITHUB_APP_KEY-${randomUUID()}`
    process.env.ADMIN_GITHUB_APP_KEY = appKey
    try {
      const { project, build } = entities()
      project.sourceConfig = { path: source }
      runner.setSource({
        type: 'local',
        async getProjectPath(from: { path: string }, targetDir: string) {
          fs.cpSync(from.path, targetDir, { recursive: true })
          return targetDir
        },
      })
      const lines: string[] = []
      const built = await runner.build(project, build, { envVars: { ATTACK_FILE: adminFile } }, (line) => lines.push(line))
      const log = lines.join('\n')
      expect(log).toMatch(/stolen|environ of|file: /)
      expect(log.includes(`stolen environ of ${process.pid}:`), log).toBe(succeeds)
      expect(log.includes(adminSecret), log).toBe(succeeds)
      expect(log).not.toContain(appKey)
      expect(built.status, log).toBe('succeeded')
    } finally {
      delete process.env.ADMIN_GITHUB_APP_KEY
    }
  })
})

describe.each(modes)('a build that widens its own sandbox, %s', (_name, { config, succeeds, skip }) => {
  it.skipIf(skip)('gets no write access through a cache variable it sets, and binds no port of the range', async () => {
    const { runner, buildDir } = isolationRunner(config)
    const source = tempDir('isolation-project-')
    fs.cpSync(path.join(__dirname, 'fixtures', 'attacker', 'project'), source, { recursive: true })
    runner.setSource({
      type: 'local',
      async getProjectPath(from: { path: string }, targetDir: string) {
        fs.cpSync(from.path, targetDir, { recursive: true })
        return targetDir
      },
    })
    const { project, build } = entities()
    project.sourceConfig = { path: source }
    fs.mkdirSync(path.join(buildDir, '.runner'), { recursive: true })
    const planted = path.join(buildDir, '.runner', 'planted')
    const port = runner.getConfig().portRange.end
    const lines: string[] = []
    const built = await runner.build(
      project,
      build,
      {
        // An npm build: the runner sets only npm's cache variable; this one is the build's own,
        // and climbs out of the caches into the runner's state directory.
        envVars: { BUN_INSTALL_CACHE_DIR: path.join(buildDir, '.cache', '..', '.runner'), ATTACK_WRITE: planted, ATTACK_BIND: String(port) },
      },
      (line) => lines.push(line),
    )
    const log = lines.join('\n')
    expect(built.status, log).toBe('succeeded')
    expect(fs.existsSync(planted), log).toBe(succeeds)
    expect(log.includes('bound a port of the runner'), log).toBe(succeeds)
  })
})

describe(`a buildDir outside the hidden system directories${noSandbox}`, () => {
  it.skipIf(!stats.sandbox)("keeps a server from another tenant's unix socket in it", async () => {
    // In the working directory, as MastraAdmin's default '.mastra/builds' is: only the mask of
    // buildDir itself hides the victim's socket there.
    const buildDir = fs.mkdtempSync(path.join(process.cwd(), '.isolation-builds-'))
    temps.push(buildDir)
    const runner = new addon.LocalProcessRunner({ buildDir, portRange: portBlock() })
    try {
      const { server: victim } = await deployAttacker(runner, buildDir)
      const socketPath = path.join(buildDir, '.data', victim.deploymentId, 'tenant.sock')
      const listener = net.createServer((socket) => socket.end())
      await new Promise<void>((resolve) => listener.listen(socketPath, resolve))
      try {
        const { server: attacker } = await deployAttacker(runner, buildDir)
        const result = await attack(attacker, 'connect-unix', { path: socketPath })
        expect(result.ok, result.detail).toBe(false)
      } finally {
        listener.close()
      }
    } finally {
      await runner.shutdown()
    }
  })
})

describe('a host that is not root', () => {
  // The CI machine runs as root; MastraAdmin often does not. A separate Node dropped to
  // nobody (setpriv) runs a runner: its sandbox then goes through a user namespace.
  const canDrop = process.getuid?.() === 0 && has('setpriv')
  it.skipIf(!canDrop)('gets the same sandbox through a user namespace, and its servers cannot read the host', async () => {
    const dir = tempDir('isolation-nobody-')
    fs.chmodSync(dir, 0o777)
    const buildDir = path.join(dir, 'builds')
    const secretFile = path.join(dir, 'admin.key')
    const hostSecret = `nobody-${randomUUID()}`
    fs.writeFileSync(secretFile, hostSecret, { mode: 0o644 })
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id, 'attacker')
    execFileSync('chown', ['-R', '65534:65534', buildDir])
    const script = `
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner(${JSON.stringify({ buildDir, portRange: portBlock() })})
      runner.deploy(${JSON.stringify([project, deployment, build]).slice(1, -1)}).then(async (server) => {
        const ask = async (name, query) => (await fetch('http://127.0.0.1:' + server.port + '/attack/' + name + '?' + new URLSearchParams(query))).json()
        const result = {
          uid: process.getuid(),
          isolation: runner.getStats().isolation,
          file: await ask('read-file', { path: ${JSON.stringify(secretFile)}, secret: ${JSON.stringify(hostSecret)} }),
          environ: await ask('read-environ', { pid: String(process.pid) }),
        }
        await runner.shutdown()
        console.log(JSON.stringify(result))
      }, (error) => { console.log(JSON.stringify({ error: String(error) })) })`
    const host = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', script], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 30_000,
    })
    const result = JSON.parse(host.stdout.trim().split('\n').pop() ?? '{}')
    expect(result.error, host.stderr).toBeUndefined()
    expect(result.uid).toBe(65534)
    expect(result.isolation).toMatchObject({ sandbox: true, capabilities: 'none' })
    expect(result.file.ok, result.file.detail).toBe(false)
    expect(result.environ.ok, result.environ.detail).toBe(false)
  })
})

describe('getStats().isolation', () => {
  it.skipIf(!stats.sandbox)(`reports the sandbox in force by default${noSandbox}`, () => {
    expect(stats).toMatchObject({ sandbox: true, sandboxReason: null, capabilities: 'none' })
    expect(stats.landlockAbi).toBeGreaterThanOrEqual(1)
  })

  it('reports sandbox: false with its reason', () => {
    const { runner } = isolationRunner({ sandbox: false })
    const off = runner.getStats().isolation
    expect(off.sandbox).toBe(false)
    expect(off.sandboxReason).toMatch(/sandbox: false/)
  })
})
