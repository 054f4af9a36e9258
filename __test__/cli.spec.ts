// The mastra-runner-local command line, run as a user runs it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { alive, listening } from './helpers/runner'
import { waitFor } from './helpers/wait'

const cli = path.join(packageRoot, 'bin', 'mastra-runner-local.cjs')
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })

/** A scratch directory with a copy of a fixture project (`app`) and a state directory (`state`). */
function scratch(fixture = 'app'): { root: string; project: string; state: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cli-'))
  const project = path.join(root, 'app')
  fs.cpSync(path.join(packageRoot, '__test__', 'fixtures', fixture), project, { recursive: true })
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
    expect(result.stdout).toMatch(/--watch +\(up\) Rebuild when a file of the project changes/)
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

/** GET `url` on a connection of its own; resolves the body of a 200 and rejects on anything else. */
function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false, timeout: 5000 }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => (body += chunk))
      response.on('error', reject)
      response.on('end', () => (response.statusCode === 200 ? resolve(body) : reject(new Error(`status ${response.statusCode}`))))
    })
    request.on('timeout', () => request.destroy(new Error('no answer within 5 s')))
    request.on('error', reject)
  })
}

/** The processes whose command line or working directory names a path under `root`. */
function processesUnder(root: string): string[] {
  const found: string[] = []
  for (const pid of fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (command.includes(root) || fs.readlinkSync(`/proc/${pid}/cwd`).startsWith(root)) found.push(`${pid}: ${command}`)
    } catch {
      // Gone meanwhile.
    }
  }
  return found
}

const rebuilt = /Rebuilt and serving in (\d+\.\d) s \(change to serving\): (http:\/\/127\.0\.0\.1:(\d+))$/m
const rebuildFailed = /Rebuild failed: (.+); still serving the previous build at (\S+)$/m
/** Every line of `out` that `pattern` matches. */
const matches = (pattern: RegExp, out: string) => [...out.matchAll(new RegExp(pattern, 'gm'))]

describe('mastra-runner-local up --watch', () => {
  it('rebuilds on a change and replaces the server with no failed request, keeps serving through a failed rebuild, and stops cleanly on Ctrl-C during a rebuild', async () => {
    const { root, project, state } = scratch('watch-app')
    const builds = path.join(state, 'mastra-runner-local', 'builds')
    const buildsLeft = () => fs.readdirSync(builds).filter((name) => name.startsWith('cli-'))
    const up = startUp(['.', '--port', '9460', '--watch'], project, state)
    const [, firstPort, firstPid] = await up.see(serving, 'the URL', 60_000)
    const ports = new Set([Number(firstPort)])

    // Requests one after another, each to the URL printed last, for as long as the test runs.
    const answers: string[] = []
    const failures: string[] = []
    let requesting = true
    const requests = (async () => {
      while (requesting) {
        const latest = matches(rebuilt, up.out()).at(-1)
        const url = latest ? latest[2] : `http://127.0.0.1:${firstPort}`
        await get(`${url}/`).then(
          (answer) => answers.push(answer),
          (error) => failures.push(`${url}: ${error.message}`),
        )
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    await waitFor(() => answers.includes('first answer'), 10_000, 'the first answer')

    // A rebuild that takes seconds; the changes made meanwhile, in two batches, queue one more.
    fs.writeFileSync(path.join(project, 'src', 'build-delay-ms'), '2000')
    fs.writeFileSync(path.join(project, 'src', 'message.txt'), 'second answer\n')
    await up.see(/Changed: src\/build-delay-ms and 1 more; rebuilding…/, 'the first rebuild', 10_000)
    // Once the copy is made, the build script runs for 2 s.
    await up.see(/building the answer 'second answer' in 2000 ms/, 'the build script of the first rebuild', 20_000)
    fs.writeFileSync(path.join(project, 'src', 'message.txt'), 'third answer\n')
    await new Promise((resolve) => setTimeout(resolve, 500))
    fs.writeFileSync(path.join(project, 'src', 'message.txt'), 'fourth answer\n')
    await up.see(rebuilt, 'the first rebuild to serve', 30_000)
    await waitFor(() => answers.at(-1) === 'second answer', 10_000, 'the answer of the first rebuild')
    await waitFor(() => matches(rebuilt, up.out()).length === 2, 30_000, 'the queued rebuild to serve')
    const [, seconds, url, port] = matches(rebuilt, up.out())[1]
    ports.add(Number(matches(rebuilt, up.out())[0][3])).add(Number(port))
    expect(Number(seconds)).toBeGreaterThan(0)
    expect(up.out()).toContain('Changed: src/message.txt; rebuilding…')
    await waitFor(() => answers.at(-1) === 'fourth answer', 10_000, 'the answer of the queued rebuild')
    const [lock] = fs.readdirSync(path.join(state, 'mastra-runner-local', 'up'))
    expect(JSON.parse(fs.readFileSync(path.join(state, 'mastra-runner-local', 'up', lock), 'utf8')).url).toBe(url)
    // The replaced build's directory goes once its server has drained.
    await waitFor(() => buildsLeft().length === 1, 20_000, 'the replaced build directory to be removed')
    expect(failures).toEqual([])

    fs.writeFileSync(path.join(project, 'build.mjs'), "console.error('error: broken on purpose')\nprocess.exit(1)\n")
    const [, reason, stillAt] = await up.see(rebuildFailed, 'the failed rebuild', 30_000)
    expect(reason).toContain('Build failed with exit code 1 (npm run build)')
    expect(matches(/^Changed: /, up.out())).toHaveLength(3)
    expect(matches(rebuilt, up.out())).toHaveLength(2)
    expect(stillAt).toBe(url)
    const answered = answers.length
    await waitFor(() => answers.length >= answered + 5, 10_000, 'answers after the failed rebuild')
    expect(new Set(answers.slice(answered))).toEqual(new Set(['fourth answer']))
    await waitFor(() => buildsLeft().length === 1, 10_000, 'the failed build directory to be removed')

    // A build whose server exits at start: the deploy rejects and the old server stays.
    fs.writeFileSync(
      path.join(project, 'build.mjs'),
      "import fs from 'node:fs'\nfs.mkdirSync('.mastra/output', { recursive: true })\nfs.writeFileSync('.mastra/output/index.mjs', \"console.error('crash on start'); process.exit(3)\")\n",
    )
    await waitFor(() => matches(rebuildFailed, up.out()).length === 2, 30_000, 'the failed deploy')
    const [, deployReason, servedAt] = matches(rebuildFailed, up.out())[1]
    expect(deployReason).toMatch(/exit code 3/)
    expect(servedAt).toBe(url)
    const beforeCrash = answers.length
    await waitFor(() => answers.length >= beforeCrash + 5, 10_000, 'answers after the failed deploy')
    expect(new Set(answers.slice(answered))).toEqual(new Set(['fourth answer']))
    await waitFor(() => buildsLeft().length === 1, 10_000, 'the directory of the build that did not start to be removed')
    requesting = false
    await requests
    expect(failures).toEqual([])

    // A build that takes its time, with a grandchild, interrupted by Ctrl-C.
    fs.writeFileSync(
      path.join(project, 'build.mjs'),
      "import { spawn } from 'node:child_process'\nspawn('sleep', ['60'], { stdio: 'ignore' })\nconsole.log('building slowly')\nsetTimeout(() => {}, 60_000)\n",
    )
    await up.see(/^ {2}building slowly$/m, 'the slow rebuild', 30_000)
    expect(buildsLeft().length).toBe(2)
    up.child.kill('SIGINT')
    expect(await up.exited).toBe(130)
    expect(up.out()).toContain(`SIGINT: stopping the server on port ${port} and the rebuild`)
    expect(up.out()).toContain('Stopped. No process left behind.')
    expect(alive(Number(firstPid))).toBe(false)
    for (const used of ports) expect(await listening(used)).toBe(false)
    expect(processesUnder(root)).toEqual([])
    expect(buildsLeft()).toEqual([])
    expect(fs.readdirSync(path.join(state, 'mastra-runner-local', 'up'))).toEqual([])
  }, 90_000)

  it('waits for the next change when the server dies, as nodemon does, then serves the rebuilt one', async () => {
    const { project, state } = scratch('watch-app')
    // A server that exits when asked to.
    const script = fs.readFileSync(path.join(project, 'build.mjs'), 'utf8')
    fs.writeFileSync(
      path.join(project, 'build.mjs'),
      script.replace("else if (req.url === '/') ", "else if (req.url === '/exit') process.exit(7)\n  else if (req.url === '/') "),
    )
    const up = startUp(['.', '--port', '9470', '--watch'], project, state)
    const [, port] = await up.see(serving, 'the URL', 60_000)
    await get(`http://127.0.0.1:${port}/exit`).catch(() => {})
    await up.see(/The server of .* exited with exit code 7/, 'the exit', 15_000)
    await up.see(/Waiting for a change to the project to rebuild it \(--watch\)/, 'the wait', 15_000)
    expect(up.child.exitCode).toBeNull()
    fs.writeFileSync(path.join(project, 'src', 'message.txt'), 'after the exit\n')
    const [, , url] = await up.see(rebuilt, 'the rebuild after the exit', 30_000)
    expect(await get(`${url}/`)).toBe('after the exit')
    up.child.kill('SIGINT')
    expect(await up.exited).toBe(130)
  }, 90_000)
})
