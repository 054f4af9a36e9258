// Helpers of the build-cache spec (issue 31): checkouts of the cache fixtures, a runner that
// builds them offline through the local source, builds of one project with fresh ids, what a
// deployed build answers, and the log lines that tell a reused build from a fresh one.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expect } from 'vitest'

import type { Build, BuildCacheStats, BuildOptions, Deployment, LocalProcessRunnerConfig, Project } from '../../index'
import { packageRoot } from './addon'
import { entities, makeRunner, type Runner } from './runner'

const fixtures = path.join(__dirname, '..', 'fixtures')

/** The builds' PATH: this package's pnpm and Node first, then the machine's npm. */
const PATH = `${path.join(packageRoot, 'node_modules', '.bin')}:${process.env.PATH}`

/** Variables that cut npm and pnpm off the registry: the fixtures install from local directories only. */
const OFFLINE = {
  npm_config_offline: 'true',
  pnpm_config_offline: 'true',
  npm_config_registry: 'http://127.0.0.1:9',
  HTTP_PROXY: 'http://127.0.0.1:9',
  HTTPS_PROXY: 'http://127.0.0.1:9',
  http_proxy: 'http://127.0.0.1:9',
  https_proxy: 'http://127.0.0.1:9',
}

/** What the stamp dependency's postinstall prints: the install ran. */
export const POSTINSTALL = 'STAMP-DEP postinstall ran'
/** What the app's build script prints: the build script ran. */
export const BUILD_SCRIPT = 'BUILD-SCRIPT ran'
/** What the workspace library's build script prints. */
export const LIB_BUILD = 'LIB-BUILD ran'
/** The start of the line of a build that reused an earlier one's output. */
export const REUSED = '[runner] reused the output of build'
/** The start of the line of a build whose dependencies were restored. */
export const RESTORED = '[runner] dependencies restored from build'

/** The line of a build that reused the output of build `id`. */
export function reusedLine(id: string): string {
  return `${REUSED} ${id} (inputs unchanged)`
}

/** The line of a build whose `node_modules` were restored from build `id`'s install. */
export function restoredLine(id: string): string {
  return `${RESTORED} ${id} (lockfile unchanged)`
}

/** `getStats().buildCache` of `runner`. */
export function cacheStats(runner: Runner): BuildCacheStats {
  return runner.getStats().buildCache
}

const temps: string[] = []

/** Removes every checkout made by `checkout()`. */
export function removeCheckouts(): void {
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/** A copy of fixture `name` in a fresh temporary directory (the checkout the local source copies). */
export function checkout(name: string): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'build-cache-'))
  temps.push(root)
  const dir = path.join(root, name)
  fs.cpSync(path.join(fixtures, name), dir, { recursive: true })
  return dir
}

/** One project of a cache fixture, built again and again through one runner. */
export interface CacheProject {
  runner: Runner
  buildDir: string
  /** The fixture's checkout (edit it between builds). */
  root: string
  /** The deployed app's folder in the checkout. */
  app: string
  project: Project
  deployment: Deployment
  /** Builds `project` once more with a fresh id. */
  build(options?: BuildOptions): Promise<Build>
  /** Where build `build`'s app lives in the build directory. */
  appDir(build: Build): string
  /** Deploys `build`, and answers what its server says at `/` (then stops it unless `keep`). */
  serve(build: Build, keep?: boolean): Promise<ServedAnswer>
}

/** What the fixture server answers at `/`. */
export interface ServedAnswer {
  /** `src/message.txt` at build time. */
  message: string
  /** `CACHE_FIXTURE_FLAVOUR` at build time (`plain` without it). */
  flavour: string
  /** The installed stamp dependency's stamp now (`installed <id>`, plus what servers appended). */
  stamp: string
  /** The workspace library's greeting (the pnpm fixture only). */
  greeting?: string
  /** The port it was served on (the server still runs when `keep`). */
  port: number
}

/**
 * A runner (sandboxed, as by default) on a fresh build directory with the local source, building
 * fixture `fixture` (`cache-npm`: the app in `app`; `cache-pnpm-ws`: `packages/app` of the
 * workspace) as one project.
 */
export function cacheProject(fixture: 'cache-npm' | 'cache-pnpm-ws', config: LocalProcessRunnerConfig = {}): CacheProject {
  const { runner, buildDir } = makeRunner({
    defaultSource: 'local',
    retainBuilds: 20,
    ...config,
    globalEnvVars: { PATH, ...OFFLINE, ...config.globalEnvVars },
  } as LocalProcessRunnerConfig)
  const root = checkout(fixture)
  const relativeApp = fixture === 'cache-npm' ? 'app' : path.join('packages', 'app')
  const app = path.join(root, relativeApp)
  const { project, deployment, build: template } = entities()
  project.sourceConfig = { path: app }
  let count = 0
  return {
    runner,
    buildDir,
    root,
    app,
    project,
    deployment,
    async build(options = {}) {
      count += 1
      const build = { ...template, id: `${project.id}-${count}`, status: 'queued' as const, logs: '' }
      return runner.build(project, build, options)
    },
    appDir(build) {
      return path.join(buildDir, build.id, relativeApp)
    },
    async serve(build, keep = false) {
      const server = await runner.deploy(project, deployment, build)
      const response = await fetch(`http://127.0.0.1:${server.port}/`)
      expect(response.status).toBe(200)
      const answer = { ...((await response.json()) as Omit<ServedAnswer, 'port'>), port: server.port }
      if (!keep) await runner.stop(server)
      return answer
    },
  }
}

/** Checks `build` succeeded (showing its log otherwise). */
export function expectSucceeded(build: Build): void {
  expect(build.status, build.logs).toBe('succeeded')
  expect(build.errorMessage).toBeNull()
}

/** Checks that `build` ran everything: the install (the postinstall) and the build script. */
export function expectFullBuild(build: Build): void {
  expectSucceeded(build)
  expect(build.logs).not.toContain(REUSED)
  expect(build.logs).not.toContain(RESTORED)
  expect(build.logs).toContain(POSTINSTALL)
  expect(build.logs).toContain(BUILD_SCRIPT)
}

/** The stamp the install of `build` left in its app's `node_modules` (as the server reads it). */
export function installedStamp(appDir: string): string {
  return fs.readFileSync(path.join(appDir, 'node_modules', 'stamp-dep', 'stamp.txt'), 'utf8')
}

/** Every file under `dir` (none when it does not exist). */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.join(entry.parentPath, entry.name))
}
