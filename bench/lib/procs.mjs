// /proc helpers: memory of a process, the descendants of a process, the fixture servers left
// running, and the loopback ports still listening. Linux only, as is the runner's /proc path.
import fs from 'node:fs'

/** Resident set size of `pid` in MB (VmRSS), or null when it is gone. */
export function rssMb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch {
    return null
  }
}

/** `[pid, ppid, state]` of every process. */
function table() {
  const rows = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8')
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      rows.push([Number(name), Number(rest[1]), rest[0]])
    } catch {
      // gone meanwhile
    }
  }
  return rows
}

/** `pid` and every live (non-zombie) descendant of it. */
export function treePids(pid) {
  const rows = table().filter(([, , state]) => state !== 'Z' && state !== 'X')
  const out = [pid]
  for (let i = 0; i < out.length; i++) for (const [p, pp] of rows) if (pp === out[i]) out.push(p)
  return out
}

/** Live (non-zombie) processes whose environment holds `KEY=value`. */
export function processesWithEnv(key, value) {
  const needle = `${key}=${value}`
  const found = []
  for (const [pid, , state] of table()) {
    if (state === 'Z' || state === 'X' || pid === process.pid) continue
    try {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
      if (env.includes(needle)) found.push(pid)
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

/** TCP ports in [start, end] with a socket in LISTEN state (IPv4 and IPv6). */
export function listeningPorts(start, end) {
  const ports = new Set()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 4 || cols[3] !== '0A') continue
      const port = parseInt(cols[1].split(':')[1], 16)
      if (port >= start && port <= end) ports.add(port)
    }
  }
  return [...ports].sort((a, b) => a - b)
}
