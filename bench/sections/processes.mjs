// Issue 4: spawn-to-pid, kill-to-reaped, and one resource sample of a 10-process tree, each
// beside Node's own equivalent (child_process, the pidusage package) in the same run.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { treePids } from '../lib/procs.mjs'
import { addon, packageRoot } from '../lib/runner.mjs'

const require = createRequire(path.join(packageRoot, 'package.json'))
const SECTION = 'Processes (issue 4)'

/** Runs `a` and `b` alternately `runs` times after `warmup` untimed rounds; each returns ms. */
async function alternate(runs, warmup, a, b) {
  const xs = []
  const ys = []
  for (let i = 0; i < warmup + runs; i++) {
    const x = await a()
    const y = await b()
    if (i >= warmup) {
      xs.push(x)
      ys.push(y)
    }
  }
  return [xs, ys]
}

export async function processes({ results, runs }) {
  // Spawn to pid: spawnCommand resolving vs child_process.spawn's 'spawn' event. Both capture
  // stdout and stderr through pipes; the child is `sleep 30`, killed untimed afterwards.
  const [spawnRunner, spawnNode] = await alternate(
    runs.spawn,
    2,
    async () => {
      const t0 = performance.now()
      const child = await addon.spawnCommand('sleep', ['30'], { onOutput: () => {} })
      const t = performance.now() - t0
      await child.kill('SIGKILL')
      await child.wait()
      return t
    },
    async () => {
      const t0 = performance.now()
      const child = spawn('sleep', ['30'], { stdio: ['ignore', 'pipe', 'pipe'] })
      await once(child, 'spawn')
      const t = performance.now() - t0
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
      return t
    },
  )
  results.add({ id: 'spawn-node', section: SECTION, figure: 'spawn → pid', system: 'Node child_process.spawn (until `spawn` event)', unit: 'ms', values: spawnNode })
  results.add({ id: 'spawn-runner', section: SECTION, figure: 'spawn → pid', system: 'runner `spawnCommand` (until it resolves)', unit: 'ms', values: spawnRunner, baseline: 'spawn-node' })

  // Kill to reaped, cooperative child (`sleep` dies at SIGTERM): kill() resolving (SIGTERM to
  // the group, wait for the reap) vs child.kill('SIGTERM') until 'exit'.
  const [killRunner, killNode] = await alternate(
    runs.spawn,
    2,
    async () => {
      const child = await addon.spawnCommand('sleep', ['30'])
      const t0 = performance.now()
      await child.kill()
      return performance.now() - t0
    },
    async () => {
      const child = spawn('sleep', ['30'], { stdio: ['ignore', 'pipe', 'pipe'] })
      await once(child, 'spawn')
      const exited = once(child, 'exit')
      const t0 = performance.now()
      child.kill('SIGTERM')
      await exited
      return performance.now() - t0
    },
  )
  results.add({ id: 'kill-node', section: SECTION, figure: 'kill → reaped (cooperative child)', system: "Node `child.kill('SIGTERM')` until `exit`", unit: 'ms', values: killNode })
  results.add({ id: 'kill-runner', section: SECTION, figure: 'kill → reaped (cooperative child)', system: 'runner `SpawnedProcess.kill()` (group SIGTERM, resolves once reaped)', unit: 'ms', values: killRunner, baseline: 'kill-node' })

  // One resource sample of a 10-process tree: sh and 9 sleeping children.
  const pidusage = require('pidusage')
  const tree = await addon.spawnCommand('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9; do sleep 60 & done; wait'])
  try {
    let pids = []
    const deadline = performance.now() + 5000
    while ((pids = treePids(tree.pid)).length < 10 && performance.now() < deadline) await sleep(5)
    if (pids.length !== 10) throw new Error(`expected a 10-process tree, found ${pids.length}`)
    const [sampleRunner, samplePidusage] = await alternate(
      runs.micro,
      3,
      async () => {
        const t0 = performance.now()
        const usage = await addon.getProcessResourceUsage(tree.pid)
        const t = performance.now() - t0
        if (usage.memoryUsageMb === null) throw new Error('getProcessResourceUsage found no tree')
        return t
      },
      async () => {
        const t0 = performance.now()
        const usage = await pidusage(pids)
        const t = performance.now() - t0
        if (Object.keys(usage).length !== 10) throw new Error('pidusage missed a pid')
        return t
      },
    )
    results.add({ id: 'sample-pidusage', section: SECTION, figure: 'one CPU/memory sample of a 10-process tree', system: 'pidusage 4 (the 10 pids given explicitly: it does not walk trees)', unit: 'ms', values: samplePidusage })
    results.add({ id: 'sample-runner', section: SECTION, figure: 'one CPU/memory sample of a 10-process tree', system: 'runner `getProcessResourceUsage(rootPid)` (finds the descendants itself)', unit: 'ms', values: sampleRunner, baseline: 'sample-pidusage' })
  } finally {
    await tree.kill()
    addon.cleanupResourceMonitor()
    pidusage.clear()
  }
}
