// Helpers of the isolation spec: its own block of ports, attacks sent to the attacker fixture,
// and what the machine offers (a writable cgroup hierarchy).
import fs from 'node:fs'

import type { RunningServer } from '../../index'

/** What an attack answered: `ok` when it succeeded. */
export interface AttackResult {
  ok: boolean
  detail: string
}

// 18400-18599: above the regions of `makeRunner` (10000-17999), below `freeRange` (24000+) and
// the kernel's ephemeral ports; blocks of 10, one per runner, reused after twenty runners.
const first = 18_400
let nextBlock = first

/** A block of 10 ports for one runner of the isolation spec. */
export function portBlock(): { start: number; end: number } {
  const start = nextBlock
  nextBlock = nextBlock + 10 > first + 190 ? first : nextBlock + 10
  return { start, end: start + 9 }
}

/** Runs attack `name` on the attacker `server`; a server that dies on it answers `ok: false`. */
export async function attack(server: RunningServer, name: string, params: Record<string, string | number> = {}): Promise<AttackResult> {
  const query = new URLSearchParams(Object.entries(params).map(([key, value]) => [key, String(value)]))
  try {
    const response = await fetch(`http://127.0.0.1:${server.port}/attack/${name}?${query}`)
    return (await response.json()) as AttackResult
  } catch (error) {
    return { ok: false, detail: `no answer: ${(error as Error).message}` }
  }
}

/**
 * Whether this machine has a cgroup hierarchy the runner could create groups in (v1's `pids`
 * and `memory` controllers, or on v2 the group this process is in), so limits can be enforced
 * by the kernel.
 */
export function cgroupsWritable(): boolean {
  const own = /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))
  const candidates = fs.existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? [`/sys/fs/cgroup${own?.[1] ?? ''}`]
    : ['/sys/fs/cgroup/pids', '/sys/fs/cgroup/memory']
  return candidates.every((dir) => {
    try {
      fs.accessSync(dir, fs.constants.W_OK)
      return true
    } catch {
      return false
    }
  })
}

/** The heartbeat file of an escaped child (`<pid> <time> <bytes>`), or null when absent. */
export function heartbeat(file: string): { pid: number; at: number } | null {
  try {
    const [pid, at] = fs.readFileSync(file, 'utf8').split(' ').map(Number)
    return { pid, at }
  } catch {
    return null
  }
}
