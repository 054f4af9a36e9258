// The addon and runners on temporary build directories whose builds are the bench fixture
// server, with entity objects shaped like MastraAdmin's.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const packageRoot = path.resolve(benchDir, '..')
export const fixture = path.join(benchDir, 'fixtures', 'server.mjs')

const require = createRequire(path.join(packageRoot, 'package.json'))

/** The package's exports, loaded the way a CommonJS consumer loads them. */
export const addon = require(packageRoot)

/** A runner on `buildDir` (created) with the given config. */
export function makeRunner(buildDir, config = {}) {
  fs.mkdirSync(buildDir, { recursive: true })
  return new addon.LocalProcessRunner({ buildDir, shutdownTimeoutMs: 1000, ...config })
}

/** Puts the bench fixture in place as build `buildId`'s output under `buildDir`. */
export function installBuild(buildDir, buildId) {
  const output = path.join(buildDir, buildId, '.mastra', 'output')
  fs.mkdirSync(output, { recursive: true })
  fs.copyFileSync(fixture, path.join(output, 'index.mjs'))
}

let sequence = 0

/** A project, deployment and build with fresh ids (the build is `buildId` when given). */
export function entities(buildId) {
  sequence += 1
  const now = new Date()
  const project = {
    id: `proj-${sequence}`,
    teamId: 'team-bench',
    name: 'Bench',
    slug: `bench-${sequence}`,
    sourceType: 'local',
    sourceConfig: { path: '/nowhere' },
    defaultBranch: 'main',
    envVars: [],
    createdAt: now,
    updatedAt: now,
  }
  const deployment = {
    id: `dep-${sequence}`,
    projectId: project.id,
    type: 'production',
    branch: 'main',
    slug: project.slug,
    status: 'pending',
    currentBuildId: null,
    publicUrl: null,
    internalHost: null,
    envVarOverrides: [],
    autoShutdown: false,
    expiresAt: null,
    createdAt: now,
    updatedAt: now,
  }
  const build = {
    id: buildId ?? `build-${sequence}`,
    deploymentId: deployment.id,
    trigger: 'manual',
    triggeredBy: 'bench',
    commitSha: 'bench',
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

/**
 * Whether `error` is a deploy that failed because its server could not listen on the port the
 * runner allocated (EADDRINUSE): an outgoing connection took that port as its ephemeral port
 * between allocation and listen (see BENCHMARKS.md, "Ports and the ephemeral range").
 */
export function isPortRace(error) {
  return /EADDRINUSE/.test(String(error?.message ?? error))
}

/** How many deploys this process retried after a port race. */
export const portRaces = { count: 0 }

/** `runner.deploy(...)`, tried again (up to 3 times in all) when it lost a port race. */
export async function deployRetrying(runner, { project, deployment, build }, options) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runner.deploy(project, deployment, build, options)
    } catch (error) {
      if (attempt >= 3 || !isPortRace(error)) throw error
      portRaces.count += 1
    }
  }
}

/** Deploys `count` servers at once; when any fails, stops the others and rethrows. */
export async function deployAll(runner, count, makeEntities, options) {
  const settled = await Promise.allSettled(
    Array.from({ length: count }, () => {
      const { project, deployment, build } = makeEntities()
      return runner.deploy(project, deployment, build, options)
    }),
  )
  const failed = settled.find((s) => s.status === 'rejected')
  const servers = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value)
  if (failed) {
    await Promise.all(servers.map((s) => runner.stop(s)))
    throw failed.reason
  }
  return servers
}
