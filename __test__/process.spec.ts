// Processes from JS: spawnCommand, runCommand, ProcessManager, resource usage, and what happens
// to children when the host Node process exits or is killed.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'

import { addon, packageRoot } from './helpers/addon'
import { waitFor } from './helpers/wait'

const { spawnCommand, runCommand, ProcessManager, getProcessResourceUsage, cleanupResourceMonitor } = addon

/** Whether `pid` runs code: exists and is not a zombie (PID 1 here does not reap orphans). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) [ZX]/.test(stat)
  } catch {
    return false
  }
}

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const step of cleanup.splice(0)) await step()
})

describe('spawnCommand', () => {
  it('runs without a shell, reports output with stream tags and the exit code', async () => {
    const lines: [string, string][] = []
    const child = await spawnCommand('sh', ['-c', 'echo out; echo err >&2; exit 3'], {
      onOutput: (line, stream) => lines.push([line, stream]),
    })
    expect(child.pid).toBeGreaterThan(1)
    const exit = await child.wait()
    expect(exit.exitCode).toBe(3)
    expect(child.running).toBe(false)
    expect(child.exitCode).toBe(3)
    expect(child.signal).toBeNull()
    await waitFor(() => lines.length === 2)
    expect(lines).toEqual(expect.arrayContaining([['out', 'stdout'], ['err', 'stderr']]))
    expect(child.getOutput()).toMatch(/out/)
  })

  it('reports a signal death as the signal, never as exit 0', async () => {
    const child = await spawnCommand('sh', ['-c', 'kill -KILL $$'])
    const exit = await child.wait()
    expect(exit.signal).toBe('SIGKILL')
    expect(exit.exitCode ?? null).toBeNull()
  })

  it('passes only the allow-listed host variables plus the given ones', async () => {
    process.env.RUNNER_SECRET_FOR_TEST = 'hunter2'
    try {
      const result = await runCommand('env', [], { env: { GIVEN: 'yes' } })
      expect(result.output).toMatch(/^GIVEN=yes$/m)
      expect(result.output).toMatch(/^PATH=/m)
      expect(result.output).not.toMatch(/hunter2/)
    } finally {
      delete process.env.RUNNER_SECRET_FOR_TEST
    }
  })

  it('kill() stops a tree whose grandchild ignores SIGTERM', async () => {
    const child = await spawnCommand('sh', ['-c', `trap '' TERM; sh -c 'trap "" TERM; echo gc $$; exec sleep 1000' & wait`])
    await waitFor(() => /gc \d+/.test(child.getOutput()))
    const grandchild = Number(/gc (\d+)/.exec(child.getOutput())![1])
    expect(alive(grandchild)).toBe(true)
    // Node's own child_process.kill would reach only the direct child; this reaches the group.
    const sigterm = await spawnCommand('sleep', ['1000'])
    await sigterm.kill('TERM')
    expect((await sigterm.wait()).signal).toBe('SIGTERM')
    const done = child.kill()
    await done
    expect(alive(grandchild)).toBe(false)
    expect(alive(child.pid)).toBe(false)
  }, 30_000)

  it('rejects with an Error naming a missing command, a missing directory or a bad argument', async () => {
    await expect(spawnCommand('no-such-command-xyz')).rejects.toThrow(/^Cannot start 'no-such-command-xyz': command not found \(PATH=/)
    await expect(spawnCommand('ls', [], { cwd: '/no/such/dir' })).rejects.toThrow(
      "Cannot start 'ls': the working directory /no/such/dir cannot be used",
    )
    await expect(spawnCommand(5 as never)).rejects.toThrow('Invalid command: expected a string, got number 5')
    await expect(spawnCommand('ls', 'x' as never)).rejects.toThrow("Invalid args: expected an array of strings, got string 'x'")
    await expect(spawnCommand('ls', [], { env: { A: 1 as never } })).rejects.toThrow('Invalid options.env.A: expected a string, got number 1')
    await expect(spawnCommand('ls', [], { onOutput: 'x' as never })).rejects.toThrow(
      "Invalid options.onOutput: expected a function, got string 'x'",
    )
    const child = await spawnCommand('sleep', ['1000'])
    cleanup.push(() => child.kill())
    await expect(child.kill('SIGNOPE')).rejects.toThrow("Invalid signal: 'SIGNOPE' is not a signal name")
  })
})

describe('runCommand', () => {
  it('resolves exit code and output', async () => {
    const result = await runCommand('sh', ['-c', 'echo a; echo b >&2; exit 2'])
    expect(result.exitCode).toBe(2)
    // Two pipes: lines keep their order within a stream, not across streams.
    expect(result.output.split('\n').sort()).toEqual(['[stderr] b', 'a'])
    expect(result.timedOut).toBe(false)
  })

  it('kills the whole tree when the timeout runs out', async () => {
    const result = await runCommand('sh', ['-c', 'echo started; sleep 1000 & wait'], { timeoutMs: 200 })
    expect(result.timedOut).toBe(true)
    expect(result.signal).toBe('SIGTERM')
    expect(result.output).toBe('started')
  })
})

describe('ProcessManager', () => {
  it('tracks processes by server and deployment id and stops them', async () => {
    const manager = new ProcessManager({ shutdownTimeoutMs: 300 })
    cleanup.push(() => manager.killAll())
    const a = await manager.start('server-a', 'dep-1', 'sleep', ['1000'])
    const b = await manager.start('server-b', 'dep-2', 'sh', ['-c', "trap '' TERM; echo ready; sleep 1000"])
    expect(a).toMatchObject({ serverId: 'server-a', deploymentId: 'dep-1', running: true, exitCode: null })
    expect(a.startedAt).toBeInstanceOf(Date)
    expect(manager.get('server-a')!.pid).toBe(a.pid)
    expect(manager.getByDeploymentId('dep-2')!.pid).toBe(b.pid)
    expect(manager.get('unknown')).toBeNull()
    expect(manager.isRunning('server-a')).toBe(true)
    expect(manager.getRunningCount()).toBe(2)
    expect(manager.getAll().map((p) => p.serverId).sort()).toEqual(['server-a', 'server-b'])
    await expect(manager.start('server-a', 'dep-1', 'sleep', ['1'])).rejects.toThrow(
      "Invalid serverId: a process for server 'server-a' is already running",
    )
    await waitFor(() => manager.getOutput('server-b') === 'ready')
    await manager.kill('server-b')
    expect(alive(b.pid)).toBe(false)
    expect(manager.get('server-b')).toBeNull()
    await manager.killAll()
    expect(alive(a.pid)).toBe(false)
    expect(manager.getRunningCount()).toBe(0)
    await manager.kill('never-started')
  })
})

describe('getProcessResourceUsage', () => {
  it('reports CPU near one core for a busy tree and nulls for a dead pid', async () => {
    const busy = await spawnCommand('sh', ['-c', 'while :; do :; done & wait'])
    const idle = await spawnCommand('sleep', ['1000'])
    cleanup.push(() => busy.kill(), () => idle.kill())
    await getProcessResourceUsage(busy.pid)
    await getProcessResourceUsage(idle.pid)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const usage = await getProcessResourceUsage(busy.pid)
    const calm = await getProcessResourceUsage(idle.pid)
    // A busy loop gets most of a core on an idle machine; the bound leaves room for the other
    // test worker sharing the two cores. The idle tree shows the contrast.
    expect(usage.cpuPercent!).toBeGreaterThan(30)
    expect(calm.cpuPercent!).toBeLessThan(5)
    expect(usage.memoryUsageMb!).toBeGreaterThan(0)
    cleanupResourceMonitor()
    await busy.kill()
    const gone = await getProcessResourceUsage(busy.pid)
    expect(gone.memoryUsageMb ?? null).toBeNull()
    expect(gone.cpuPercent ?? null).toBeNull()
  }, 30_000)
})

describe('the host process going away', () => {
  const script = (ending: string) => `
    const { spawnCommand } = require(${JSON.stringify(packageRoot)})
    spawnCommand('sh', ['-c', 'sleep 1000 & echo pids $$ $!; wait']).then((child) => {
      const timer = setInterval(() => {
        const match = /pids (\\d+) (\\d+)/.exec(child.getOutput())
        if (!match) return
        clearInterval(timer)
        console.log(match[1], match[2])
        ${ending}
      }, 5)
    })`

  function pidsFrom(output: string): [number, number] {
    const [child, grandchild] = output.trim().split(' ').map(Number)
    return [child, grandchild]
  }

  it('process.exit() leaves no process behind', () => {
    const run = spawnSync(process.execPath, ['-e', script('process.exit(0)')], { encoding: 'utf8', timeout: 20_000 })
    expect(run.status).toBe(0)
    const [child, grandchild] = pidsFrom(run.stdout)
    expect(alive(child)).toBe(false)
    expect(alive(grandchild)).toBe(false)
  })

  it('the end of the event loop leaves no process behind', () => {
    const run = spawnSync(process.execPath, ['-e', script('child.getOutput()')], { encoding: 'utf8', timeout: 20_000 })
    expect(run.signal).toBeNull()
    const [child, grandchild] = pidsFrom(run.stdout)
    expect(alive(child)).toBe(false)
    expect(alive(grandchild)).toBe(false)
  })

  it('SIGKILL of the host kills its direct children at once (parent-death signal)', async () => {
    const host = spawn(process.execPath, ['-e', script('setInterval(() => {}, 1000)')], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    host.stdout.on('data', (chunk) => (out += chunk))
    await waitFor(() => /\d+ \d+/.test(out))
    const [child, grandchild] = pidsFrom(out)
    cleanup.push(async () => {
      try {
        process.kill(grandchild, 'SIGKILL')
      } catch {}
    })
    host.kill('SIGKILL')
    await waitFor(() => !alive(child), 5_000, 'the direct child to die with its host')
    // The grandchild is out of reach of the parent-death signal: the next runner on the same
    // buildDir reaps it (see the runner's lifecycle spec).
    expect(alive(grandchild)).toBe(true)
  })
})
