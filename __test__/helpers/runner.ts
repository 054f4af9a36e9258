// Runners on temporary build directories with a fixture server as the build output, and the
// entity objects MastraAdmin would pass.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, expect } from 'vitest'

import type { Build, Deployment, LocalProcessRunnerConfig, Project } from '../../index'
import { addon } from './addon'

const fixtures = path.join(__dirname, '..', 'fixtures')

export type Runner = InstanceType<typeof addon.LocalProcessRunner>

const live: { runner: Runner; dir: string }[] = []

/** A runner on a fresh build directory; `shutdownRunners()` stops it and removes the directory. */
export function makeRunner(config: LocalProcessRunnerConfig = {}): { runner: Runner; buildDir: string } {
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-spec-'))
  const runner = new addon.LocalProcessRunner({
    buildDir,
    portRange: freeRange(),
    shutdownTimeoutMs: 2000,
    healthCheck: { retryIntervalMs: 200, maxRetries: 50 },
    ...config,
  })
  live.push({ runner, dir: buildDir })
  return { runner, buildDir }
}

/** Stops every runner made by `makeRunner` and removes their directories. */
export async function shutdownRunners(): Promise<void> {
  for (const { runner, dir } of live.splice(0)) {
    await runner.shutdown()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

// Each vitest worker gets its own region of ports and each runner a block of 20 in it, so
// runners of parallel specs never race for a port. The regions (10000-17999) stay below the
// kernel's ephemeral range (32768+), where client connections could take a server's port.
const region = 10000 + (Number(process.env.VITEST_POOL_ID ?? 1) % 8) * 1000
let nextRange = region

/** A block of 20 ports for one runner, distinct per worker and per runner. */
function freeRange(): { start: number; end: number } {
  const start = nextRange
  nextRange = nextRange + 20 >= region + 1000 ? region : nextRange + 20
  return { start, end: start + 19 }
}

/** Puts the fixture server in place as build `buildId`'s output. */
export function installBuild(buildDir: string, buildId: string, fixture = 'server'): void {
  const output = path.join(buildDir, buildId, '.mastra', 'output')
  fs.mkdirSync(output, { recursive: true })
  fs.copyFileSync(path.join(fixtures, fixture, 'index.mjs'), path.join(output, 'index.mjs'))
}

let sequence = 0

/** Entities shaped like MastraAdmin's, with fresh ids. */
export function entities(overrides: { deployment?: Partial<Deployment> } = {}): {
  project: Project
  deployment: Deployment
  build: Build
} {
  sequence += 1
  const now = new Date()
  const project: Project = {
    id: `proj-${sequence}`,
    teamId: 'team-1',
    name: 'Hello',
    slug: 'hello',
    sourceType: 'local',
    sourceConfig: { path: '/nowhere' },
    defaultBranch: 'main',
    envVars: [],
    createdAt: now,
    updatedAt: now,
  }
  const deployment: Deployment = {
    id: `dep-${sequence}`,
    projectId: project.id,
    type: 'production',
    branch: 'main',
    slug: 'hello',
    status: 'pending',
    currentBuildId: null,
    publicUrl: null,
    internalHost: null,
    envVarOverrides: [],
    autoShutdown: false,
    expiresAt: null,
    createdAt: now,
    updatedAt: now,
    ...overrides.deployment,
  }
  const build: Build = {
    id: `build-${sequence}`,
    deploymentId: deployment.id,
    trigger: 'manual',
    triggeredBy: 'user-1',
    commitSha: 'abc',
    commitMessage: null,
    status: 'succeeded',
    logs: '',
    queuedAt: now,
    startedAt: now,
    completedAt: now,
    errorMessage: null,
  }
  return { project, deployment, build }
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Whether `pid` runs code: exists and is not a zombie (PID 1 here does not reap orphans). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

/** `text` without its blank lines: what a build's `onLog` gets of its `logs`. */
export function withoutBlankLines(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .join('\n')
}

/**
 * The runner of an end-to-end spec of a bundled example: a build directory of its own and the
 * ports `portRange`; shut down and removed after the file's tests (within `cleanupMs`: removing
 * builds with their node_modules takes a while on a busy disk).
 */
export function exampleRunner(
  prefix: string,
  portRange: { start: number; end: number },
  cleanupMs = 60_000,
): { runner: Runner; buildDir: string } {
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const runner = new addon.LocalProcessRunner({ buildDir, portRange, globalEnvVars: { MASTRA_TELEMETRY_DISABLED: '1' } })
  afterAll(async () => {
    await runner.shutdown()
    fs.rmSync(buildDir, { recursive: true, force: true })
  }, cleanupMs)
  return { runner, buildDir }
}

/**
 * Builds `build` of a bundled example with the real npm and mastra CLI and checks it succeeded;
 * with `reusedFrom`, checks instead that it reused that earlier build's output (unchanged inputs).
 */
export async function buildExample(runner: Runner, project: Project, build: Build, reusedFrom?: string): Promise<Build> {
  const lines: string[] = []
  const built = await runner.build(project, build, {}, (line) => lines.push(line))
  expect(built.errorMessage).toBeNull()
  expect(built.status).toBe('succeeded')
  const log = lines.join('\n')
  if (reusedFrom) {
    expect(log).toContain(`[runner] reused the output of build ${reusedFrom} (inputs unchanged)`)
    expect(log).not.toMatch(/npm ci/)
  } else {
    expect(log).toMatch(/npm ci/)
    expect(log).toMatch(/Build successful/)
  }
  return built
}
