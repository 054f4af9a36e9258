// LocalProcessRunner construction: SPEC §2 defaults and the validation rules of "Errors and bad input".
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { addon, packageRoot } from './helpers/addon'
import { messageOf } from './helpers/errors'

const { LocalProcessRunner } = addon

const runners: InstanceType<typeof LocalProcessRunner>[] = []
function make(config?: unknown) {
  const runner = new LocalProcessRunner(config as never)
  runners.push(runner)
  return runner
}
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.shutdown()))
})

describe('defaults', () => {
  it('applies every default of SPEC §2 when no config is given', () => {
    const runner = make()
    expect(runner.type).toBe('local')
    expect(runner.getConfig()).toEqual({
      portRange: { start: 4111, end: 4200 },
      maxConcurrentBuilds: 3,
      defaultBuildTimeoutMs: 600000,
      healthCheck: { timeoutMs: 5000, retryIntervalMs: 1000, maxRetries: 30, endpoint: '/health', readySignal: true },
      logRetentionLines: 10000,
      buildDir: path.join(process.cwd(), '.mastra', 'builds'),
      globalEnvVars: {},
      shutdownTimeoutMs: 10000,
      providerTimeoutMs: 30000,
      restartPolicy: null,
      defaultSource: null,
      redeploy: 'replace',
      retainBuilds: 3,
      logMemoryLimitMb: 256,
      keepServersOnExit: false,
      logFileMaxMb: 16,
      tracesEndpoint: null,
      redeployDrainMs: 60000,
      sandbox: { enabled: true, readPaths: [], writePaths: [], isolatePorts: true },
      limits: { memoryMb: null, cpus: null, pids: 4096 },
      buildLimits: { memoryMb: null, cpus: null, pids: 4096 },
      buildCache: { maxMb: 4096 },
    })
  })

  it('treats undefined, null and {} alike', () => {
    expect(make(undefined).getConfig()).toEqual(make(null).getConfig())
    expect(make({}).getConfig()).toEqual(make(null).getConfig())
  })

  it('reports an idle runner with the whole port range available', () => {
    const { isolation, buildCache, ...counts } = make().getStats()
    expect(counts).toEqual({ runningProcesses: 0, drainingServers: 0, allocatedPorts: [], availablePorts: 90, restarts: 0, servers: [], buildDiskUsageMb: 0, dataDiskUsageMb: 0 })
    expect(buildCache).toEqual({ sizeMb: 0, maxMb: 4096, snapshots: 0, outputHits: 0, installHits: 0, misses: 0, evictions: 0 })
    expect(make({ buildCache: { maxMb: 0 } }).getConfig().buildCache).toEqual({ maxMb: 0 })
    expect(Object.keys(isolation).sort()).toEqual(['bindOwnPortOnly', 'capabilities', 'enforced', 'landlockAbi', 'limits', 'limitsReason', 'sandbox', 'sandboxReason', 'scoped'])
    expect(make({ portRange: { start: 5000, end: 5000 } }).getStats().availablePorts).toBe(1)
  })

  it('keeps partial nested objects and fills the rest', () => {
    const config = make({ healthCheck: { maxRetries: 2 }, restartPolicy: {} }).getConfig()
    expect(config.healthCheck).toEqual({ timeoutMs: 5000, retryIntervalMs: 1000, maxRetries: 2, endpoint: '/health', readySignal: true })
    expect(make({ healthCheck: { readySignal: false }, redeploy: 'keep' }).getConfig()).toMatchObject({
      healthCheck: { readySignal: false },
      redeploy: 'keep',
    })
    expect(config.restartPolicy).toEqual({ maxRestarts: 10, backoffMs: 1000, maxBackoffMs: 30000 })
  })

  it('resolves a relative buildDir against the working directory at construction', () => {
    const before = process.cwd()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-cwd-'))
    try {
      process.chdir(dir)
      const runner = make({ buildDir: 'b' })
      process.chdir(before)
      expect(runner.getConfig().buildDir).toBe(path.join(fs.realpathSync(dir), 'b'))
    } finally {
      process.chdir(before)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('maps buildBaseDir to its builds subdirectory', () => {
    expect(make({ buildBaseDir: '/var/mastra' }).getConfig().buildDir).toBe('/var/mastra/builds')
  })

  it('does not touch the disk when constructed', () => {
    const dir = path.join(os.tmpdir(), `runner-untouched-${process.pid}`)
    make({ buildDir: dir })
    expect(fs.existsSync(dir)).toBe(false)
  })

  it('resolves shutdown() with nothing running', async () => {
    await expect(make().shutdown()).resolves.toBeUndefined()
  })
})

describe('validation', () => {
  const cases: [string, unknown, string][] = [
    ['config not an object', 42, 'Invalid config: expected an object, got number 42'],
    ['config an array', [1], 'Invalid config: expected an object, got an array'],
    ['start > end', { portRange: { start: 5000, end: 4000 } }, 'Invalid portRange: start (5000) is greater than end (4000)'],
    ['port 0', { portRange: { start: 0, end: 10 } }, 'Invalid portRange.start: must be an integer from 1 to 65535 (got 0)'],
    ['port above 65535', { portRange: { start: 1, end: 65536 } }, 'Invalid portRange.end: must be an integer from 1 to 65535 (got 65536)'],
    ['fractional port', { portRange: { start: 4000.5, end: 4100 } }, 'Invalid portRange.start: must be an integer from 1 to 65535 (got 4000.5)'],
    ['missing end', { portRange: { start: 4000 } }, 'Invalid portRange.end: is required'],
    ['portRange a string', { portRange: '4000-4100' }, "Invalid portRange: expected an object, got string '4000-4100'"],
    ['zero builds', { maxConcurrentBuilds: 0 }, 'Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got 0)'],
    ['negative builds', { maxConcurrentBuilds: -2 }, 'Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got -2)'],
    ['builds as string', { maxConcurrentBuilds: '3' }, "Invalid maxConcurrentBuilds: expected a number, got string '3'"],
    ['NaN builds', { maxConcurrentBuilds: NaN }, 'Invalid maxConcurrentBuilds: must be a finite number (got NaN)'],
    ['zero timeout', { defaultBuildTimeoutMs: 0 }, 'Invalid defaultBuildTimeoutMs: must be an integer of at least 1 (got 0)'],
    ['infinite timeout', { defaultBuildTimeoutMs: Infinity }, 'Invalid defaultBuildTimeoutMs: must be a finite number (got Infinity)'],
    ['zero log lines', { logRetentionLines: 0 }, 'Invalid logRetentionLines: must be an integer from 1 to 4294967295 (got 0)'],
    ['health timeout 0', { healthCheck: { timeoutMs: 0 } }, 'Invalid healthCheck.timeoutMs: must be an integer of at least 1 (got 0)'],
    ['health interval negative', { healthCheck: { retryIntervalMs: -1 } }, 'Invalid healthCheck.retryIntervalMs: must be an integer of at least 1 (got -1)'],
    ['health retries 0', { healthCheck: { maxRetries: 0 } }, 'Invalid healthCheck.maxRetries: must be an integer from 1 to 4294967295 (got 0)'],
    ['empty endpoint', { healthCheck: { endpoint: '' } }, "Invalid healthCheck.endpoint: must be a path starting with '/' (got '')"],
    ['relative endpoint', { healthCheck: { endpoint: 'health' } }, "Invalid healthCheck.endpoint: must be a path starting with '/' (got 'health')"],
    ['readySignal a string', { healthCheck: { readySignal: 'yes' } }, "Invalid healthCheck.readySignal: expected a boolean, got string 'yes'"],
    ['unknown redeploy', { redeploy: 'swap' }, "Invalid redeploy: must be 'replace' or 'keep' (got 'swap')"],
    ['keepServersOnExit a string', { keepServersOnExit: 'yes' }, "Invalid keepServersOnExit: expected a boolean, got string 'yes'"],
    ['zero log file size', { logFileMaxMb: 0 }, 'Invalid logFileMaxMb: must be an integer from 1 to 1048576 (got 0)'],
    ['a negative drain', { redeployDrainMs: -1 }, 'Invalid redeployDrainMs: must be an integer of at least 0 (got -1)'],
    ['a traces endpoint that is not a URL', { tracesEndpoint: 'localhost:3001' }, "Invalid tracesEndpoint: must be an http:// or https:// URL (got 'localhost:3001')"],
    ['zero retained builds', { retainBuilds: 0 }, 'Invalid retainBuilds: must be an integer from 1 to 4294967295 (got 0)'],
    ['a negative build cache bound', { buildCache: { maxMb: -1 } }, 'Invalid buildCache.maxMb: must be an integer from 0 to 1073741824 (got -1)'],
    ['a build cache that is not an object', { buildCache: 5 }, 'Invalid buildCache: expected an object, got number 5'],
    ['endpoint a symbol', { healthCheck: { endpoint: Symbol('x') } }, 'Invalid healthCheck.endpoint: expected a string, number, boolean, object or array, got a symbol'],
    ['empty buildDir', { buildDir: '' }, 'Invalid buildDir: must not be empty'],
    ['NUL in buildDir', { buildDir: 'a\0b' }, 'Invalid buildDir: must not contain a NUL character'],
    ['buildDir and buildBaseDir', { buildDir: 'a', buildBaseDir: 'b' }, 'Invalid buildBaseDir: give either buildDir or buildBaseDir, not both (buildBaseDir means buildDir = `${buildBaseDir}/builds`)'],
    ['env value a number', { globalEnvVars: { A: 1 } }, 'Invalid globalEnvVars.A: expected a string, got number 1'],
    ['env name with =', { globalEnvVars: { 'A=B': 'x' } }, "Invalid globalEnvVars.A=B: a variable name must be non-empty and contain neither '=' nor NUL"],
    ['env value a function', { globalEnvVars: { A: () => 'x' } }, 'Invalid globalEnvVars.A: expected a string, number, boolean, object or array, got a function'],
    ['negative shutdown timeout', { shutdownTimeoutMs: -1 }, 'Invalid shutdownTimeoutMs: must be an integer of at least 0 (got -1)'],
    ['max backoff below backoff', { restartPolicy: { backoffMs: 500, maxBackoffMs: 100 } }, 'Invalid restartPolicy.maxBackoffMs: must be at least backoffMs (100 < 500)'],
    ['unknown default source', { defaultSource: 'github' }, "Invalid defaultSource: the only supported value is 'local' (got 'github')"],
  ]

  it.each(cases)('%s', (_name, config, message) => {
    expect(messageOf(() => new LocalProcessRunner(config as never))).toBe(message)
  })

  it('passes on an Error thrown by a getter of the config object', () => {
    const config = {
      get portRange(): never {
        throw new Error('getter exploded')
      },
    }
    expect(() => new LocalProcessRunner(config as never)).toThrow('getter exploded')
  })

  it('rejects a config that refers to itself', () => {
    const config: Record<string, unknown> = {}
    config.healthCheck = config
    expect(() => new LocalProcessRunner(config as never)).toThrow(/nested too deeply/)
  })
})

describe('diagnostics', () => {
  const script = `const { LocalProcessRunner } = require(${JSON.stringify(packageRoot)}); new LocalProcessRunner()`

  it('is silent by default', () => {
    const env = { ...process.env }
    delete env.MASTRA_RUNNER_LOG
    const run = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' })
    expect(run.status).toBe(0)
    expect(run.stderr).toBe('')
    expect(run.stdout).toBe('')
  })

  it('writes debug events to stderr with MASTRA_RUNNER_LOG=debug', () => {
    const run = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, MASTRA_RUNNER_LOG: 'debug' },
      encoding: 'utf8',
    })
    expect(run.status).toBe(0)
    expect(run.stderr).toMatch(/DEBUG.*runner created/)
    expect(run.stdout).toBe('')
  })

  it('warns about an unknown level and falls back to warn', () => {
    const run = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, MASTRA_RUNNER_LOG: 'loud' },
      encoding: 'utf8',
    })
    expect(run.stderr).toMatch(/MASTRA_RUNNER_LOG="loud" is not a level/)
    expect(run.stderr).not.toMatch(/runner created/)
  })
})
