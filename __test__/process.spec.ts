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

/** Resolves with the arguments of the next `event` of `child`. */
function next(child: { once(event: string, listener: (...args: any[]) => void): unknown }, event: string): Promise<unknown[]> {
  return new Promise((resolve) => child.once(event, (...args: unknown[]) => resolve(args)))
}

describe('spawnCommand', () => {
  it('returns the process at once with its pid, and reports output with stream tags and the exit code', async () => {
    const lines: [string, string][] = []
    // The pause keeps the process running while the synchronous checks below read it.
    const child = spawnCommand('sh', ['-c', 'echo out; echo err >&2; sleep 0.5; exit 3'], {
      onOutput: (line, stream) => lines.push([line, stream]),
    })
    expect(child).not.toBeInstanceOf(Promise)
    expect(typeof child.pid).toBe('number')
    expect(child.pid).toBeGreaterThan(1)
    expect(child.exitCode).toBeNull()
    const exit = await child.wait()
    expect(exit.exitCode).toBe(3)
    expect(child.running).toBe(false)
    expect(child.exitCode).toBe(3)
    expect(child.signal).toBeNull()
    await waitFor(() => lines.length === 2)
    expect(lines).toEqual(expect.arrayContaining([['out', 'stdout'], ['[stderr] err', 'stderr']]))
    expect(child.getOutput()).toMatch(/out/)
  })

  it("emits exit (code, signal), then close once every line reached onOutput, as Node's ChildProcess does", async () => {
    const lines: string[] = []
    const events: string[] = []
    const child = spawnCommand('sh', ['-c', 'for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; exit 4'], {
      onOutput: (line) => lines.push(line),
    })
    const exited = next(child, 'exit')
    const closed = new Promise<unknown[]>((resolve) =>
      child.on('close', (...args: unknown[]) => {
        events.push(`close after ${lines.length} lines`)
        resolve(args)
      }),
    )
    expect(await exited).toEqual([4, null])
    expect(await closed).toEqual([4, null])
    expect(events).toEqual(['close after 6 lines'])
    expect(lines).toContain('[stderr] oops')
  })

  it('supports once and off, and on() returns the process for chaining', async () => {
    const calls: string[] = []
    const child = spawnCommand('sh', ['-c', 'kill -TERM $$'])
    const removed = () => calls.push('removed')
    expect(child.on('exit', removed)).toBe(child)
    expect(child.off('exit', removed)).toBe(child)
    child.once('exit', (code, signal) => calls.push(`once ${code} ${signal}`))
    await next(child, 'close')
    expect(calls).toEqual(['once null SIGTERM'])
  })

  it('reports a signal death as the signal, never as exit 0', async () => {
    const child = spawnCommand('sh', ['-c', 'kill -KILL $$'])
    const exit = await child.wait()
    expect(exit.signal).toBe('SIGKILL')
    expect(exit.exitCode ?? null).toBeNull()
  })

  it('passes only the allow-listed host variables plus the given ones', async () => {
    process.env.RUNNER_SECRET_FOR_TEST = 'hunter2'
    try {
      const result = await runCommand('env', [], { env: { GIVEN: 'yes' } })
      const text = result.output.join('\n')
      expect(text).toMatch(/^GIVEN=yes$/m)
      expect(text).toMatch(/^PATH=/m)
      expect(text).not.toMatch(/hunter2/)
    } finally {
      delete process.env.RUNNER_SECRET_FOR_TEST
    }
  })

  it('kill() stops a tree whose grandchild ignores SIGTERM', async () => {
    const child = spawnCommand('sh', ['-c', `trap '' TERM; sh -c 'trap "" TERM; echo gc $$; exec sleep 1000' & wait`])
    await waitFor(() => /gc \d+/.test(child.getOutput()))
    const grandchild = Number(/gc (\d+)/.exec(child.getOutput())![1])
    expect(alive(grandchild)).toBe(true)
    // Node's own child_process.kill would reach only the direct child; this reaches the group.
    const sigterm = spawnCommand('sleep', ['1000'])
    await sigterm.kill('TERM')
    expect((await sigterm.wait()).signal).toBe('SIGTERM')
    expect(sigterm.killed).toBe(true)
    const done = child.kill()
    await done
    expect(alive(grandchild)).toBe(false)
    expect(alive(child.pid!)).toBe(false)
  }, 30_000)

  it("emits 'error' naming a command that cannot start, and throws for bad arguments", async () => {
    const missing = spawnCommand('no-such-command-xyz')
    expect(missing.pid).toBeUndefined()
    const [error] = (await next(missing, 'error')) as [Error]
    expect(error).toBeInstanceOf(Error)
    expect(error.message).toMatch(/^Cannot start 'no-such-command-xyz': command not found \(PATH=/)
    const [dirError] = (await next(spawnCommand('ls', [], { cwd: '/no/such/dir' }), 'error')) as [Error]
    expect(dirError.message).toContain("Cannot start 'ls': the working directory /no/such/dir cannot be used")
    expect(() => spawnCommand(5 as never)).toThrow('Invalid command: expected a string, got number 5')
    expect(() => spawnCommand('ls', 'x' as never)).toThrow("Invalid args: expected an array of strings, got string 'x'")
    expect(() => spawnCommand('ls', [], { env: { A: 1 as never } })).toThrow('Invalid options.env.A: expected a string, got number 1')
    expect(() => spawnCommand('ls', [], { onOutput: 'x' as never })).toThrow("Invalid options.onOutput: expected a function, got string 'x'")
    const child = spawnCommand('sleep', ['1000'])
    cleanup.push(() => child.kill())
    expect(() => child.kill('SIGNOPE')).toThrow("Invalid signal: 'SIGNOPE' is not a signal name")
    expect(() => child.on('spawn' as never, () => {})).toThrow("Invalid event: must be 'exit', 'close' or 'error' (got 'spawn')")
    expect(() => child.on('exit', 'x' as never)).toThrow("Invalid listener: expected a function, got string 'x'")
  })
})

describe('runCommand', () => {
  it('resolves the exit code and the output lines, stderr prefixed', async () => {
    const lines: string[] = []
    const result = await runCommand('sh', ['-c', 'echo a; echo b >&2; exit 2'], { onOutput: (line) => lines.push(line) })
    expect(result.exitCode).toBe(2)
    // Two pipes: lines keep their order within a stream, not across streams.
    expect([...result.output].sort()).toEqual(['[stderr] b', 'a'])
    expect([...lines].sort()).toEqual(['[stderr] b', 'a'])
    expect(result.timedOut).toBe(false)
  })

  it('kills the whole tree when the timeout runs out', async () => {
    const result = await runCommand('sh', ['-c', 'echo started; sleep 1000 & wait'], { timeoutMs: 200 })
    expect(result.timedOut).toBe(true)
    expect(result.signal).toBe('SIGTERM')
    expect(result.output).toEqual(['started'])
  })

  it('rejects when the command cannot start', async () => {
    await expect(runCommand('no-such-command-xyz')).rejects.toThrow(/^Cannot start 'no-such-command-xyz'/)
  })
})

describe('ProcessManager', () => {
  it('tracks a spawned process with its port and log collector, as the TypeScript package does', async () => {
    const manager = new ProcessManager({ shutdownTimeoutMs: 300 })
    cleanup.push(() => manager.killAll())
    const logs = new addon.LogCollectorImpl()
    const before = Date.now()
    const child = spawnCommand('sh', ['-c', "trap '' TERM; sleep 1000 & wait"])
    manager.track('server-1', 'dep-1', child, 4111, logs)
    const tracked = manager.get('server-1')!
    expect(tracked.process).toBe(child)
    expect(tracked.logCollector).toBe(logs)
    expect(tracked).toMatchObject({ serverId: 'server-1', deploymentId: 'dep-1', port: 4111, pid: child.pid, running: true })
    expect(tracked.startedAt.getTime()).toBeGreaterThanOrEqual(before)
    expect(manager.getByDeploymentId('dep-1')!.serverId).toBe('server-1')
    expect(manager.get('unknown')).toBeUndefined()
    expect(manager.getByDeploymentId('unknown')).toBeUndefined()
    expect(manager.isRunning('server-1')).toBe(true)
    expect(manager.getRunningCount()).toBe(1)
    expect(() => manager.track('server-1', 'dep-1', spawnCommand('true'), 4112, logs)).toThrow(
      "Invalid serverId: a process for server 'server-1' is already running",
    )
    // kill() takes the whole tree, also the SIGTERM-ignoring shell and its sleep.
    await manager.kill('server-1')
    expect(alive(child.pid!)).toBe(false)
    expect(manager.get('server-1')).toBeUndefined()
    expect(manager.isRunning('server-1')).toBe(false)
  })

  it('forgets a process when it exits', async () => {
    const manager = new ProcessManager()
    const child = spawnCommand('sh', ['-c', 'exit 0'])
    manager.track('server-2', 'dep-2', child, 4113)
    await next(child, 'close')
    await waitFor(() => manager.get('server-2') === undefined)
    expect(manager.getAll()).toEqual([])
    expect(manager.getRunningCount()).toBe(0)
  })

  it("stops a ChildProcess-like object through its own kill(), never by signalling its pid", async () => {
    const manager = new ProcessManager()
    const node = spawn('sleep', ['1000'])
    manager.track('server-3', 'dep-3', node as never, 4114)
    expect(manager.isRunning('server-3')).toBe(true)
    await manager.killAll()
    await waitFor(() => node.signalCode === 'SIGTERM')
    expect(manager.getAll()).toEqual([])
    const fake = { pid: 1, killed: false, exitCode: null, on: () => undefined }
    manager.track('server-4', 'dep-4', fake, 4115)
    await manager.kill('server-4')
    expect(manager.get('server-4')).toBeUndefined()
  })

  it('starts, looks up and stops processes by server and deployment id', async () => {
    const manager = new ProcessManager({ shutdownTimeoutMs: 300 })
    cleanup.push(() => manager.killAll())
    const a = await manager.start('server-a', 'dep-1', 'sleep', ['1000'])
    const b = await manager.start('server-b', 'dep-2', 'sh', ['-c', "trap '' TERM; echo ready; sleep 1000"])
    expect(a).toMatchObject({ serverId: 'server-a', deploymentId: 'dep-1', running: true, exitCode: null })
    expect(a.startedAt).toBeInstanceOf(Date)
    expect(manager.get('server-a')!.pid).toBe(a.pid)
    expect(manager.getByDeploymentId('dep-2')!.pid).toBe(b.pid)
    expect(manager.getAll().map((p) => p.serverId).sort()).toEqual(['server-a', 'server-b'])
    await expect(manager.start('server-a', 'dep-1', 'sleep', ['1'])).rejects.toThrow(
      "Invalid serverId: a process for server 'server-a' is already running",
    )
    await expect(manager.start('server-c', 'dep-3', 'no-such-command-xyz')).rejects.toThrow(/^Cannot start 'no-such-command-xyz'/)
    await waitFor(() => manager.getOutput('server-b') === 'ready')
    await manager.kill('server-b')
    expect(alive(b.pid!)).toBe(false)
    expect(manager.get('server-b')).toBeUndefined()
    await manager.killAll()
    expect(alive(a.pid!)).toBe(false)
    expect(manager.getRunningCount()).toBe(0)
    await manager.kill('never-started')
  })
})

describe('getProcessResourceUsage', () => {
  it('reports CPU near one core for a busy tree and nulls for a dead pid', async () => {
    const busy = spawnCommand('sh', ['-c', 'while :; do :; done & wait'])
    const idle = spawnCommand('sleep', ['1000'])
    cleanup.push(() => busy.kill(), () => idle.kill())
    await getProcessResourceUsage(busy.pid!)
    await getProcessResourceUsage(idle.pid!)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const usage = await getProcessResourceUsage(busy.pid!)
    const calm = await getProcessResourceUsage(idle.pid!)
    // A busy loop gets most of a core on an idle machine; the bound leaves room for the other
    // test worker sharing the two cores. The idle tree shows the contrast.
    expect(usage.cpuPercent!).toBeGreaterThan(30)
    expect(calm.cpuPercent!).toBeLessThan(5)
    expect(usage.memoryUsageMb!).toBeGreaterThan(0)
    cleanupResourceMonitor()
    await busy.kill()
    const gone = await getProcessResourceUsage(busy.pid!)
    expect(gone.memoryUsageMb ?? null).toBeNull()
    expect(gone.cpuPercent ?? null).toBeNull()
  }, 30_000)
})

describe('the host process going away', () => {
  const script = (ending: string) => `
    const { spawnCommand } = require(${JSON.stringify(packageRoot)})
    const child = spawnCommand('sh', ['-c', 'sleep 1000 & echo pids $$ $!; wait'])
    const timer = setInterval(() => {
      const match = /pids (\\d+) (\\d+)/.exec(child.getOutput())
      if (!match) return
      clearInterval(timer)
      console.log(match[1], match[2])
      ${ending}
    }, 5)`

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
