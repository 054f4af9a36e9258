// Projects shaped like public Mastra apps (issue #21), built and served through the runner with
// `defaultSource: 'local'`: the package manager version package.json names (fetched once, then
// from the cache with the registry cut off), `mastra init` apps without a build script, and
// lifecycle scripts that need a git work tree. The builds' PATH carries this package's pnpm 12
// and yarn 1, so a build that works with pnpm 9 or yarn 4 proves the named version ran.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'
import { entities, makeRunner, shutdownRunners } from './helpers/runner'

const fixtures = path.join(__dirname, 'fixtures')
const PATH = `${path.join(packageRoot, 'node_modules', '.bin')}:${process.env.PATH}`

/** Variables that cut every package manager off the registry, so only warm caches can serve. */
const OFFLINE = {
  npm_config_registry: 'http://127.0.0.1:9',
  YARN_NPM_REGISTRY_SERVER: 'http://127.0.0.1:9',
  HTTP_PROXY: 'http://127.0.0.1:9',
  HTTPS_PROXY: 'http://127.0.0.1:9',
  http_proxy: 'http://127.0.0.1:9',
  https_proxy: 'http://127.0.0.1:9',
}

const temps: string[] = []

afterEach(async () => {
  await shutdownRunners()
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** A copy of fixture `name` outside this repository (the "checkout" the local source copies). */
function checkout(name: string): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'realworld-'))
  temps.push(root)
  const dir = path.join(root, name)
  fs.cpSync(path.join(fixtures, name), dir, { recursive: true })
  return dir
}

type Runner = ReturnType<typeof makeRunner>['runner']

/** Builds `dir` through `runner`, deploys the result and checks /health; returns the build. */
async function buildAndServe(runner: Runner, dir: string, envVars: Record<string, string> = {}) {
  const { project, deployment, build } = entities()
  project.sourceConfig = { path: dir }
  const result = await runner.build(project, { ...build, status: 'queued' }, { envVars })
  expect(result.status, result.logs).toBe('succeeded')
  const server = await runner.deploy(project, deployment, result)
  expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200)
  await runner.stop(server)
  return result
}

describe('the package manager version package.json names', () => {
  it('builds a pnpm 9 project (engines.pnpm ^9, corepack hash) with pnpm 9 while pnpm 12 is on PATH, then offline', async () => {
    const { runner, buildDir } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const dir = checkout('pm-pnpm9')
    const cached = path.join(buildDir, '.cache', 'pm', 'pnpm@9.15.0')
    const first = await buildAndServe(runner, dir)
    expect(first.logs).toContain(
      `[runner] Package manager pnpm@9.15.0: fetched pnpm@9.15.0 from the npm registry into ${cached}, its sha512 hash checked`,
    )
    // It runs from the build's own copy, unpacked from the tarball whose hash was checked.
    expect(first.logs).toMatch(/running pnpm 9\.15\.0 from \S+\/\.cache\/pm\/\.run\/[^/\s]+\/bin\/pnpm \(the version package\.json names\)/)
    expect(first.logs).toContain('[runner] Installing dependencies... (pnpm install --frozen-lockfile)')
    expect(first.logs).toMatch(/build: wrote \.mastra\/output\/index\.mjs with pnpm\/9\.15\.0 /)
    // pnpm 9 reads npm_config_store_dir; npm's own variable is not passed to it.
    expect(fs.readdirSync(path.join(buildDir, '.cache', 'pnpm-store')).length).toBeGreaterThan(0)

    const second = await buildAndServe(runner, dir, OFFLINE)
    expect(second.logs).toContain(`[runner] Package manager pnpm@9.15.0: using the copy cached in ${cached}`)
    expect(second.logs).not.toContain('fetched pnpm@9.15.0')
    expect(second.logs).toMatch(/with pnpm\/9\.15\.0 /)
  })

  it('builds a yarn 4 project with only yarn 1 on PATH, then offline', async () => {
    const { runner, buildDir } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const dir = checkout('pm-yarn4')
    const cached = path.join(buildDir, '.cache', 'pm', 'yarn@4.9.2')
    const first = await buildAndServe(runner, dir)
    expect(first.logs).toContain(
      `[runner] Package manager yarn@4.9.2: fetched @yarnpkg/cli-dist@4.9.2 from the npm registry into ${cached}, its sha512 hash checked against the npm registry's integrity, unpacked for this build into `,
    )
    expect(first.logs).toContain('[runner] Detected package manager: yarn@4.9.2 (from packageManager field')
    expect(first.logs).toMatch(/running yarn 4\.9\.2 from \S+\/\.cache\/pm\/\.run\/[^/\s]+\/bin\/yarn /)
    expect(first.logs).toContain('[runner] Installing dependencies... (yarn install --immutable)')
    expect(first.logs).toMatch(/with yarn\/4\.9\.2 /)

    const second = await buildAndServe(runner, dir, OFFLINE)
    expect(second.logs).toContain(`[runner] Package manager yarn@4.9.2: using the copy cached in ${cached}`)
    expect(second.logs).toMatch(/with yarn\/4\.9\.2 /)
  })

  it('fails when the tarball does not match the hash package.json carries', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const dir = checkout('pm-pnpm9')
    const manifest = path.join(dir, 'package.json')
    const text = fs.readFileSync(manifest, 'utf8')
    fs.writeFileSync(manifest, text.replace(/sha512\.[0-9a-f]+/, `sha512.${'0'.repeat(128)}`))
    const { project, build } = entities()
    project.sourceConfig = { path: dir }
    const result = await runner.build(project, { ...build, status: 'queued' })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(
      /^pnpm@9\.15\.0 does not match the hash in package\.json's packageManager field: sha512 76e23797[0-9a-f]+ instead of 0{128}$/,
    )
  })

  it('falls back to PATH, with a warning, when the named version cannot be had', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const dir = checkout('build-npm')
    const manifest = path.join(dir, 'package.json')
    const parsed = JSON.parse(fs.readFileSync(manifest, 'utf8'))
    fs.writeFileSync(manifest, JSON.stringify({ ...parsed, packageManager: 'npm@0.0.0-does-not-exist' }))
    const { project, build } = entities()
    project.sourceConfig = { path: dir }
    const result = await runner.build(project, { ...build, status: 'queued' })
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.logs).toMatch(
      /\n\[runner\] Warning: cannot fetch npm@0\.0\.0-does-not-exist: npm view npm@0\.0\.0-does-not-exist exited with exit code 1: npm error code E(TARGET|404); using npm from PATH\n/,
    )
    expect(result.logs).toMatch(/running npm \d+\.\d+\.\d+ from \S+ \(found on PATH\)/)
    expect(result.logs).toMatch(/\[runner\] Warning: package\.json asks for npm@0\.0\.0-does-not-exist but npm \d+\S* is on PATH; using it/)
  })
})

describe('Mastra apps without a build script', () => {
  it("runs the project's own mastra build and serves it", async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const result = await buildAndServe(runner, checkout('mastra-init'))
    expect(result.logs).toContain(
      '[runner] No build script in package.json; the project depends on mastra, so its own mastra build runs (npm exec --no -- mastra build)',
    )
    expect(result.logs).toContain('fake mastra: built .mastra/output/index.mjs')
  })

  it('says to add a build script when mastra is not installed', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const { project, build } = entities()
    project.sourceConfig = { path: checkout('mastra-init') }
    const result = await runner.build(project, { ...build, status: 'queued' }, { skipInstall: true })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(
      /^package\.json has no build script, and mastra \(a dependency\) is not installed in \S+: add "build": "mastra build" to its scripts$/,
    )
  })
})

describe('lifecycle scripts that need git', () => {
  it('run in a build copy made a git work tree, with HUSKY=0', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const result = await buildAndServe(runner, checkout('git-prepare'))
    expect(result.logs).toContain(
      "[runner] Initialised an empty git repository in the build copy (without the source's history), for lifecycle scripts that need a git work tree",
    )
    expect(result.logs).toContain('[runner] Installing dependencies... (npm ci --audit=false --fund=false)')
  })

  it('says so when git is not on PATH, and the script fails as it would', async () => {
    // A PATH of node and npm only.
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'realworld-path-'))
    temps.push(bare)
    for (const tool of ['node', 'npm']) {
      const found = process.env.PATH!.split(':').map((d) => path.join(d, tool)).find((p) => fs.existsSync(p))!
      fs.symlinkSync(fs.realpathSync(found), path.join(bare, tool))
    }
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH: bare } })
    const { project, build } = entities()
    project.sourceConfig = { path: checkout('git-prepare') }
    const result = await runner.build(project, { ...build, status: 'queued' })
    expect(result.logs).toContain(
      '[runner] git is not on PATH: the build copy is not a git work tree, so lifecycle scripts that need one (husky, lefthook) may fail',
    )
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(/^Dependency installation failed with exit code \d+ \(npm ci --audit=false --fund=false\)/)
  })
})

describe('monorepos', () => {
  it('builds a pnpm workspace app from its folder: install at the root, the library first', async () => {
    const { runner, buildDir } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const root = checkout('ws-pnpm')
    const result = await buildAndServe(runner, path.join(root, 'apps', 'mastra'))
    const copy = path.join(buildDir, result.id)
    expect(result.logs).toContain(
      `[runner] ${path.join(root, 'apps', 'mastra')} is the package apps/mastra of the workspace at ${root}: copying the whole workspace`,
    )
    expect(result.logs).toContain(
      `[runner] Workspace: the project is the package apps/mastra of the workspace at ${copy} (pnpm-workspace.yaml); installing at its root; it depends on @ws/lib`,
    )
    expect(result.logs).toContain('[runner] Installing dependencies... (pnpm install --frozen-lockfile in .)')
    expect(result.logs).toContain('[runner] Running build script... (pnpm run build in packages/lib)')
    expect(result.logs).toContain('[runner] Running build script... (pnpm run build)\n')
    expect(result.logs).toContain('app: wrote .mastra/output/index.mjs using "built library"')
    expect(fs.existsSync(path.join(copy, 'apps', 'mastra', '.mastra', 'output', 'index.mjs'))).toBe(true)
  })

  it("builds and serves an app below a workspace that does not list it alone, with its file: dependency's folder", async () => {
    // Issue 28: pnpm-workspace.yaml `packages: ['.']` at the root (which names pnpm 10.11.0);
    // examples/app names pnpm 10.27.0 and depends on file:../lib.
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const root = checkout('ws-not-member')
    const app = path.join(root, 'examples', 'app')
    const result = await buildAndServe(runner, app)
    expect(result.logs).toContain(
      `[runner] ${app} is in no workspace; copying it with the local directories its file:/link: dependencies name (lib), at their places relative to ${path.join(root, 'examples')}`,
    )
    expect(result.logs).toMatch(/running pnpm 10\.27\.0 from \S+ \(the version package\.json names\)/)
    expect(result.logs).toContain('[runner] Installing dependencies... (pnpm install --frozen-lockfile)\n')
    expect(result.logs).toContain('[runner] The install ran pnpm 10.27.0 (as node_modules/.modules.yaml reports)')
    expect(result.logs).toContain('build: wrote .mastra/output/index.mjs from the sibling library with pnpm/10.27.0')
    expect(result.logs).not.toContain('Warning')
  })

  it('builds the one Mastra app of a workspace it is pointed at, and refuses a choice of several', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const root = checkout('ws-pnpm')
    const result = await buildAndServe(runner, root)
    expect(result.logs).toContain(`[runner] ${root} is a workspace whose one Mastra app is apps/mastra: building it`)
    expect(result.logs).toContain('[runner] Running build script... (pnpm run build in packages/lib)')

    fs.cpSync(path.join(root, 'apps', 'mastra'), path.join(root, 'apps', 'other'), { recursive: true })
    const { project, build } = entities()
    project.sourceConfig = { path: root }
    await expect(runner.build(project, { ...build, status: 'queued' })).rejects.toThrow(
      `Invalid project.sourceConfig.path: ${root} is a workspace with 2 Mastra apps (apps/mastra, apps/other): point sourceConfig.path at one of them`,
    )
  })

  it('builds an npm workspace app', async () => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const result = await buildAndServe(runner, path.join(checkout('ws-npm'), 'apps', 'mastra'))
    expect(result.logs).toContain('(package.json workspaces); installing at its root; it depends on @ws/lib')
    expect(result.logs).toContain('[runner] Installing dependencies... (npm ci --audit=false --fund=false in .)')
    expect(result.logs).toContain('[runner] Running build script... (npm run build in packages/lib)')
    expect(result.logs).toContain('app: wrote .mastra/output/index.mjs using "built library"')
  })

  it.each([
    { pm: 'yarn', install: 'yarn install --frozen-lockfile in .' },
    { pm: 'bun', install: 'bun install --frozen-lockfile --backend=copyfile in .' },
  ])('builds a $pm workspace app', async ({ pm, install }) => {
    const { runner } = makeRunner({ defaultSource: 'local', globalEnvVars: { PATH } })
    const result = await buildAndServe(runner, path.join(checkout(`ws-${pm}`), 'apps', 'mastra'))
    expect(result.logs).toContain('(package.json workspaces); installing at its root; it depends on @ws/lib')
    expect(result.logs).toContain(`[runner] Installing dependencies... (${install})`)
    expect(result.logs).toContain(`[runner] Running build script... (${pm} run build in packages/lib)`)
    expect(result.logs).toContain('app: wrote .mastra/output/index.mjs using "built library"')
  })

  it('builds a turbo workspace app with turbo --filter', async () => {
    const { runner } = makeRunner({
      defaultSource: 'local',
      globalEnvVars: { PATH, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
    })
    const result = await buildAndServe(runner, path.join(checkout('ws-turbo'), 'apps', 'mastra'))
    // The root's packageManager names npm 11.19.1: fetched like any other.
    expect(result.logs).toContain('[runner] Package manager npm@11.19.1: fetched npm@11.19.1 from the npm registry into ')
    expect(result.logs).toMatch(/running npm 11\.19\.1 from \S+\/\.cache\/pm\/\.run\/[^/\s]+\/bin\/npm \(the version package\.json names\)/)
    expect(result.logs).toContain('[runner] The workspace uses turbo: it builds @ws/app and what it depends on')
    expect(result.logs).toContain('[runner] Running build script... (npm exec --no -- turbo run build --filter=@ws/app... in .)')
    expect(result.logs).toContain('lib: wrote dist/index.js')
    expect(result.logs).toContain('app: wrote .mastra/output/index.mjs using "built library"')
    expect(result.logs).not.toContain('(npm run build in packages/lib)')
  })

  it("quotes a failed turbo task's own error lines in errorMessage", async () => {
    const { runner } = makeRunner({
      defaultSource: 'local',
      globalEnvVars: { PATH, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
    })
    const root = checkout('ws-turbo')
    // The app's build fails the way a Mastra bundle does, its cause on stdout.
    fs.writeFileSync(
      path.join(root, 'apps', 'mastra', 'build.mjs'),
      "console.log('Error: \"ObservabilityStorage\" is not exported by @mastra/core')\nprocess.exit(1)\n",
    )
    const { project, build } = entities()
    project.sourceConfig = { path: path.join(root, 'apps', 'mastra') }
    const result = await runner.build(project, { ...build, status: 'queued' })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(/app:build: .*"ObservabilityStorage" is not exported by @mastra\/core/)
    // The task's lines, first among them its error, within the six-line excerpt budget.
    const taskLines = result.errorMessage!.split('\n').filter((line) => line.startsWith('@ws/app:build: '))
    expect(taskLines[0]).toContain('"ObservabilityStorage" is not exported')
    expect(taskLines.length).toBeLessThanOrEqual(6)
  })
})
