// PM2 through its programmatic API, with a private PM2_HOME under a temporary directory so
// nothing leaks into (or out of) the user's own PM2. `close()` always kills the daemon, and an
// exit hook SIGKILLs it if the benchmark dies before that.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

import { fixture, packageRoot } from './runner.mjs'

const require = createRequire(path.join(packageRoot, 'package.json'))

/** Connects to a fresh PM2 daemon whose home is `home` (created). */
export async function openPm2(home) {
  fs.mkdirSync(home, { recursive: true })
  // PM2 reads PM2_HOME once, when it is first loaded.
  process.env.PM2_HOME = home
  const pm2 = require('pm2')
  const version = require('pm2/package.json').version
  const call = (method, ...args) =>
    new Promise((resolve, reject) => pm2[method](...args, (err, res) => (err ? reject(err) : resolve(res))))
  const daemonPid = () => {
    try {
      return Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8').trim())
    } catch {
      return null
    }
  }
  const hardKill = () => {
    const pid = daemonPid()
    // Only a PM2 daemon: the pid file may outlive the daemon and its pid be reused.
    let cmdline = ''
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      // gone
    }
    if (pid && cmdline.includes('PM2')) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  process.on('exit', hardKill)
  await call('connect')
  let closed = false
  return {
    pm2,
    version,
    home,
    call,
    daemonPid,
    /** A fork-mode app running the bench fixture with the host's Node on `port`. */
    app(name, port, { env = {}, ...options } = {}) {
      return {
        name,
        script: fixture,
        interpreter: process.execPath,
        exec_mode: 'fork',
        instances: 1,
        autorestart: false,
        kill_timeout: 1000,
        vizion: false,
        pmx: false,
        automation: false,
        treekill: true,
        merge_logs: true,
        out_file: path.join(home, 'logs', `${name}-out.log`),
        error_file: path.join(home, 'logs', `${name}-err.log`),
        env: { PORT: String(port), ...env },
        ...options,
      }
    },
    /** Starts `apps` (one call) and resolves when PM2 says they are launched. */
    start(apps) {
      return call('start', { apps })
    },
    /** Deletes `name` ('all' for every app). */
    delete(name) {
      return call('delete', name)
    },
    /** Kills the daemon (and with it every app) and disconnects. Safe to call twice. */
    async close() {
      if (closed) return
      closed = true
      try {
        await Promise.race([call('killDaemon'), new Promise((r) => setTimeout(r, 10000))])
      } finally {
        hardKill()
        try {
          pm2.disconnect()
        } catch {
          // not connected
        }
      }
    },
  }
}
