// Starts `hosts/runner-host.mjs` in its own Node process and talks to it line by line.
import { spawn } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'

import { benchDir } from './runner.mjs'

/** A runner host process; `request(cmd)` resolves its answer event. */
export async function startHost(options) {
  const child = spawn(process.execPath, [path.join(benchDir, 'hosts', 'runner-host.mjs'), JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const events = []
  const waiters = []
  let exited = false
  child.on('exit', () => {
    exited = true
    for (const w of waiters.splice(0)) w.reject(new Error('runner host exited'))
  })
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let event
    try {
      event = JSON.parse(line)
    } catch {
      return
    }
    const waiter = waiters.shift()
    if (waiter) waiter.resolve(event)
    else events.push(event)
  })
  const next = (timeoutMs = 120000) =>
    new Promise((resolve, reject) => {
      if (events.length) return resolve(events.shift())
      if (exited) return reject(new Error('runner host exited'))
      const timer = setTimeout(() => reject(new Error('runner host did not answer in time')), timeoutMs)
      waiters.push({
        resolve: (e) => {
          clearTimeout(timer)
          resolve(e)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
    })
  const loaded = await next()
  if (loaded.event !== 'loaded') throw new Error(`runner host: ${JSON.stringify(loaded)}`)
  return {
    pid: child.pid,
    async request(cmd) {
      child.stdin.write(`${JSON.stringify(cmd)}\n`)
      const event = await next()
      if (event.event === 'error') throw new Error(`runner host: ${event.message}`)
      return event
    },
    /** Asks it to shut the runner down; SIGKILLs it when it does not exit in time. */
    async close() {
      if (exited) return
      const gone = new Promise((resolve) => child.once('exit', resolve))
      try {
        child.stdin.write(`${JSON.stringify({ cmd: 'shutdown' })}\n`)
      } catch {
        // stdin already closed
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000)
      await gone
      clearTimeout(timer)
    },
  }
}
