// Logs of stopped servers do not pin the host's memory: a stopped server keeps only the tail of
// its log, all logs together stay within logMemoryLimitMb (the oldest stopped servers' logs go
// first), shutdown() frees every retained log, and the host's RSS comes back down.
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { entities, installBuild, makeRunner } from './helpers/runner'

describe('log memory', () => {
  it('12 servers that each logged ~10 MB: RSS comes down when they stop and after shutdown()', async () => {
    const { buildDir } = makeRunner()
    const { project, build } = entities()
    installBuild(buildDir, build.id, 'wide')
    const script = `
      const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)})
      const runner = new LocalProcessRunner({ buildDir: ${JSON.stringify(buildDir)}, portRange: { start: 10950, end: 10980 }, logMemoryLimitMb: 64 })
      const rss = () => Math.round(process.memoryUsage().rss / 1048576)
      ;(async () => {
        const before = rss()
        const servers = []
        for (let i = 0; i < 12; i++) {
          servers.push(await runner.deploy(${JSON.stringify(project)}, { id: 'dep-' + i, type: 'production' }, ${JSON.stringify(build)}))
        }
        for (const server of servers) {
          while (!(await runner.getLogs(server, { tail: 1 })).includes('done printing')) await new Promise((r) => setTimeout(r, 20))
        }
        const peak = rss()
        for (const server of servers) await runner.stop(server)
        const stopped = rss()
        const kept = (await runner.getLogs(servers[11])).split('\\n').length
        const oldest = (await runner.getLogs(servers[0])).length
        await runner.shutdown()
        const after = rss()
        const gone = (await runner.getLogs(servers[11])).length
        console.log(JSON.stringify({ before, peak, stopped, after, kept, oldest, gone }))
      })()`
    const host = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    host.stdout.on('data', (chunk) => (out += chunk))
    await new Promise((resolve) => host.once('exit', resolve))
    const figures = JSON.parse(out.trim().split('\n').pop()!)
    // 12 × 10 000 lines of 1 KB were held while the servers ran.
    expect(figures.peak - figures.before).toBeGreaterThan(60)
    // Stopped, each keeps a 1 MiB tail: most of that memory went back to the OS.
    expect(figures.stopped).toBeLessThan(figures.peak - 40)
    expect(figures.kept).toBeGreaterThan(100)
    expect(figures.kept).toBeLessThan(10_000)
    // shutdown() frees every retained log.
    expect(figures.gone).toBe(0)
    expect(figures.after).toBeLessThanOrEqual(figures.stopped + 5)
  }, 120_000)
})
