// The mastra-runner-local command line, run as a user runs it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { alive, listening } from './helpers/runner'
import { waitFor } from './helpers/wait'

const cli = path.join(packageRoot, 'bin', 'mastra-runner-local.cjs')
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })

/** A scratch directory with a copy of the fixture app (`app`) and a state directory (`state`). */
function scratch(): { root: string; project: string; state: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cli-'))
  const project = path.join(root, 'app')
  fs.cpSync(path.join(packageRoot, '__test__', 'fixtures', 'app'), project, { recursive: true })
  cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }))
  return { root, project, state: path.join(root, 'state') }
}

interface Up {
  child: ChildProcess
  /** Everything printed so far, stdout and stderr. */
  out: () => string
  /** The exit status (null after a signal). */
  exited: Promise<number | null>
  /** Waits for `pattern` in the output and returns its match. */
  see: (pattern: RegExp, what: string, timeoutMs?: number) => Promise<RegExpExecArray>
}

/** `mastra-runner-local up …args` in `cwd`, with `XDG_STATE_HOME=state`; killed after the test. */
function startUp(args: string[], cwd: string, state: string, env: Record<string, string> = {}): Up {
  const child = spawn(process.execPath, [cli, 'up', ...args], {
    cwd,
    env: { ...process.env, XDG_STATE_HOME: state, MASTRA_RUNNER_LOG: 'error', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (chunk) => (out += chunk))
  child.stderr!.on('data', (chunk) => (out += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  cleanups.unshift(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const see = async (pattern: RegExp, what: string, timeoutMs = 60_000) => {
    await waitFor(() => pattern.test(out) || child.exitCode !== null, timeoutMs, what)
    const match = pattern.exec(out)
    if (!match) throw new Error(`up exited (${child.exitCode}) before printing ${what}:\n${out}`)
    return match
  }
  return { child, out: () => out, exited, see }
}

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

const serving = /Serving app at http:\/\/127\.0\.0\.1:(\d+) .*pid (\d+)\)/
const buildDirLine = /^Building .+ in (.+)$/m

describe('mastra-runner-local', () => {
  it('prints usage with --help', () => {
    const result = run('--help')
    expect(result.status).toBe(0)
    expect(result.stdout).toMatch(/^Usage: mastra-runner-local <command>/)
  })

  it('prints the resolved configuration', () => {
    const result = run('config', '{"portRange":{"start":5000,"end":5010}}')
    expect(result.status).toBe(0)
    const config = JSON.parse(result.stdout)
    expect(config.portRange).toEqual({ start: 5000, end: 5010 })
    expect(config.maxConcurrentBuilds).toBe(3)
  })

  it('exits 1 with the validation message for a bad config', () => {
    const result = run('config', '{"portRange":{"start":5010,"end":5000}}')
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe('mastra-runner-local: Invalid portRange: start (5010) is greater than end (5000)')
  })

  it('exits 2 on an unknown command', () => {
    const result = run('launch')
    expect(result.status).toBe(2)
    expect(result.stderr).toMatch(/unknown command 'launch'/)
  })

  it('build reports a failed build with its message and exit code 1', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cli-'))
    const project = path.join(root, 'broken')
    fs.mkdirSync(project)
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'broken', scripts: { build: 'exit 4' } }))
    try {
      const result = spawnSync(process.execPath, [cli, 'build', project, '--build-dir', path.join(root, 'builds')], { encoding: 'utf8' })
      expect(result.status).toBe(1)
      expect(result.stderr).toMatch(/Build failed: Build failed with exit code 4 \(npm run build\)/)
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }, 120_000)

  it('up . from inside the project builds under the state directory, serves, and exits 130 on Ctrl-C with nothing left', async () => {
    const { project, state } = scratch()
    const up = startUp(['.', '--port', '9450', '--env', 'GREETING=hi'], project, state)
    const [, port, pid] = await up.see(serving, 'the URL', 120_000)
    expect(Number(port)).toBe(9450)
    const buildDir = buildDirLine.exec(up.out())![1]
    expect(path.dirname(buildDir)).toBe(path.join(state, 'mastra-runner-local', 'builds'))
    expect(fs.existsSync(path.join(buildDir, '.mastra', 'output', 'index.mjs'))).toBe(true)
    expect(fs.existsSync(path.join(project, '.mastra'))).toBe(false)
    expect(up.out()).toMatch(/building with NODE_ENV=production/)
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
    await up.see(/built server listening/, 'the server log', 20_000)
    expect(JSON.parse(await (await fetch(`http://127.0.0.1:${port}/env`)).text()).GREETING).toBe('hi')
    up.child.kill('SIGINT')
    expect(await up.exited).toBe(130)
    expect(up.out()).toContain('SIGINT: stopping the server on port 9450')
    expect(up.out()).toContain(`Removed the build directory ${buildDir}`)
    expect(up.out()).toContain('Stopped. No process left behind.')
    expect(await listening(Number(port))).toBe(false)
    expect(alive(Number(pid))).toBe(false)
    expect(fs.existsSync(buildDir)).toBe(false)
    expect(fs.readdirSync(path.join(state, 'mastra-runner-local', 'up'))).toEqual([])
  }, 180_000)

  it('Ctrl-C during the build exits 130, kills the build and removes its directory', async () => {
    const { root, project, state } = scratch()
    const markers = path.join(root, 'markers')
    fs.mkdirSync(markers)
    // Unsandboxed: the build script writes its markers (named by its host pid) outside the build.
    const up = startUp(['.', '--port', '9451', '--no-sandbox', '--env', 'FIXTURE_BUILD=sleep', '--env', `FIXTURE_MARKER_DIR=${markers}`], project, state)
    await waitFor(() => fs.readdirSync(markers).some((f) => f.endsWith('.start')), 60_000, 'the build script')
    const buildPid = Number(fs.readdirSync(markers).find((f) => f.endsWith('.start'))!.split('.')[0])
    expect(alive(buildPid)).toBe(true)
    const buildDir = buildDirLine.exec(up.out())![1]
    up.child.kill('SIGINT')
    expect(await up.exited).toBe(130)
    expect(up.out()).toContain('SIGINT: stopping the build')
    expect(alive(buildPid)).toBe(false)
    expect(fs.existsSync(buildDir)).toBe(false)
    expect(up.out()).not.toMatch(/Serving/)
  }, 120_000)

  it('prints a heartbeat while a build step is silent, exits 143 on SIGTERM, and keeps the build with --keep', async () => {
    const { project, state } = scratch()
    const up = startUp([project, '--port', '9452', '--keep', '--env', 'FIXTURE_BUILD_MS=11000'], os.tmpdir(), state)
    await up.see(/building with NODE_ENV=production/, 'the build script', 60_000)
    const [beat] = await up.see(/… still building \(npm run build\), (\d+) s/, 'a heartbeat', 20_000)
    expect(Number(/(\d+) s$/.exec(beat)![1])).toBeGreaterThanOrEqual(10)
    const [, port, pid] = await up.see(serving, 'the URL', 60_000)
    const buildDir = buildDirLine.exec(up.out())![1]
    up.child.kill('SIGTERM')
    expect(await up.exited).toBe(143)
    expect(up.out()).toContain(`Build directory kept (--keep): ${buildDir}`)
    expect(fs.existsSync(path.join(buildDir, '.mastra', 'output', 'index.mjs'))).toBe(true)
    expect(alive(Number(pid))).toBe(false)
    expect(await listening(Number(port))).toBe(false)
  }, 120_000)

  it('says prominently when the server dies, with its exit status and last lines, and exits 1', async () => {
    const { project, state } = scratch()
    const up = startUp(['.', '--port', '9453'], project, state)
    const [, port, pid] = await up.see(serving, 'the URL', 120_000)
    await up.see(/built server listening/, 'the server log', 20_000)
    const buildDir = buildDirLine.exec(up.out())![1]
    process.kill(Number(pid), 'SIGKILL')
    expect(await up.exited).toBe(1)
    expect(up.out()).toContain(`!!! The server of app exited with signal SIGKILL (pid ${pid}). The last lines of its log:`)
    expect(up.out()).toMatch(/!!! {3}built server listening on 9453/)
    expect(up.out()).toContain('mastra-runner-local: the server is down; exiting with status 1.')
    expect(await listening(Number(port))).toBe(false)
    expect(fs.existsSync(buildDir)).toBe(false)
  }, 180_000)

  it('with --restart has the runner restart a server that died', async () => {
    const { project, state } = scratch()
    const up = startUp(['.', '--port', '9454', '--restart'], project, state)
    const [, port, pid] = await up.see(serving, 'the URL', 120_000)
    process.kill(Number(pid), 'SIGKILL')
    await up.see(/>>> The server exited with signal SIGKILL \(pid \d+\); the runner restarts it/, 'the exit notice', 20_000)
    const [, next] = await up.see(/>>> The server is running again \(pid (\d+), restart 1\)/, 'the restart', 30_000)
    expect(Number(next)).not.toBe(Number(pid))
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
    expect(up.child.exitCode).toBe(null)
    up.child.kill('SIGINT')
    expect(await up.exited).toBe(130)
    expect(alive(Number(next))).toBe(false)
  }, 180_000)

  it('refuses a second up of a project that is being served, and takes over from a dead one', async () => {
    const { root, project, state } = scratch()
    const first = startUp(['.', '--port', '9455'], project, state)
    const [, port, pid] = await first.see(serving, 'the URL', 120_000)
    // The same project through another spelling of its path.
    fs.symlinkSync(project, path.join(root, 'link'))
    const second = spawnSync(process.execPath, [cli, 'up', 'link/.', '--port', '9457'], { cwd: root, encoding: 'utf8', env: { ...process.env, XDG_STATE_HOME: state } })
    expect(second.status).toBe(1)
    expect(second.stderr).toContain(`mastra-runner-local: ${fs.realpathSync(project)} is already served at http://127.0.0.1:${port} by another mastra-runner-local up (pid ${first.child.pid},`)
    expect(second.stderr).toContain(`kill ${first.child.pid}`)
    expect(second.stdout).not.toMatch(/Building/)
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)
    // A host killed outright leaves its lock behind; the next up sees it is dead.
    first.child.kill('SIGKILL')
    await first.exited
    await waitFor(() => !alive(Number(pid)), 10_000, 'the first server to die with its host')
    const third = startUp(['.', '--port', '9455'], project, state)
    await third.see(serving, 'the URL', 120_000)
    third.child.kill('SIGINT')
    expect(await third.exited).toBe(130)
  }, 240_000)
})
