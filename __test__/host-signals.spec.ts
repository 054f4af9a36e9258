// A host ended by SIGINT, SIGTERM or SIGHUP (Ctrl-C, systemctl stop, docker stop, a closed
// terminal) leaves nothing running: the runner's signal hook kills every process it started
// (the server, a grandchild in its group that ignores SIGTERM, a detached child in its own
// session) and re-raises the signal, so the host still ends by it. A host with a listener of its
// own keeps its behaviour.
import { spawn } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { alive, entities, installBuild, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

/** Starts a host that deploys the fixture server and prints `server grandchild detached` pids. */
function startHost(ownListener: string) {
  const { buildDir } = makeRunner()
  const { project, deployment, build } = entities()
  installBuild(buildDir, build.id)
  const port = 10990 + Math.floor(Math.random() * 9)
  const script = `
    const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
    ${ownListener}
    // Unsandboxed: the pids the fixture reports must be host pids (a sandbox has its own).
    const runner = new LocalProcessRunner({ buildDir: ${JSON.stringify(buildDir)}, portRange: { start: ${port}, end: ${port} }, sandbox: false })
    runner.deploy(${JSON.stringify(project)}, ${JSON.stringify(deployment)}, ${JSON.stringify(build)},
      { envVars: { FIXTURE_GRANDCHILD: '1', FIXTURE_DETACHED: '1' } }).then(async (server) => {
        const find = async () => {
          const logs = await runner.getLogs(server)
          const g = /grandchild (\\d+)/.exec(logs), d = /detached (\\d+)/.exec(logs)
          return g && d ? [g[1], d[1]] : null
        }
        let pids
        while (!(pids = await find())) await new Promise((r) => setTimeout(r, 10))
        console.log('pids', server.processId, pids[0], pids[1])
      })
    setInterval(() => {}, 1000)`
  const host = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  host.stdout.on('data', (chunk) => (out += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    host.once('exit', (code, signal) => resolve({ code, signal })),
  )
  return { host, out: () => out, exited }
}

async function pidsOf(out: () => string): Promise<number[]> {
  await waitFor(() => /pids \d+ \d+ \d+\n/.test(out()), 30_000, 'the host to report its pids')
  return /pids (\d+) (\d+) (\d+)/.exec(out())!.slice(1).map(Number)
}

describe('a host ended by a signal', () => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal}: the host still ends by it, and no process of the runner is left`, async () => {
      const { host, out, exited } = startHost('')
      const pids = await pidsOf(out)
      expect(pids.every(alive)).toBe(true)
      host.kill(signal)
      expect((await exited).signal).toBe(signal)
      await waitFor(() => !pids.some(alive), 5_000, 'every process of the runner to be gone')
    })
  }

  it("a host with its own listener keeps it: the runner's hook does nothing", async () => {
    const { host, out, exited } = startHost(
      "process.on('SIGTERM', () => { console.log('host handles SIGTERM'); setTimeout(() => process.exit(7), 50) })",
    )
    const pids = await pidsOf(out)
    host.kill('SIGTERM')
    await waitFor(() => out().includes('host handles SIGTERM'), 5_000, "the host's own handler")
    expect(await exited).toEqual({ code: 7, signal: null })
    // process.exit() runs the runner's exit hook: the group and the detached child go too.
    await waitFor(() => !pids.some(alive), 5_000, 'every process of the runner to be gone')
  })
})
