// Builds (SPEC §3) with the real package managers: npm (the machine's), and pnpm, yarn 1 and bun
// (devDependencies of this package, found through node_modules/.bin on the builds' PATH).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { ProjectBuildResult } from '../index'
import { addon, packageRoot } from './helpers/addon'
import { messageOf, rejectionOf } from './helpers/errors'
import { withoutBlankLines } from './helpers/runner'
import { waitFor } from './helpers/wait'

const { ProjectBuilder, detectPackageManager, getInstallArgs, getBuildArgs, hasBuildScript } = addon

const fixtures = path.join(__dirname, 'fixtures')
/** The builds' PATH: this package's pnpm, yarn, bun and Node first, then the machine's npm. */
const PATH = `${path.join(packageRoot, 'node_modules', '.bin')}:${process.env.PATH}`

const temps: string[] = []
const builders: InstanceType<typeof ProjectBuilder>[] = []

function tempDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `build-spec-${name}-`))
  temps.push(dir)
  return dir
}

/** A copy of fixture `name` in a fresh temporary directory. */
function copyFixture(name: string): string {
  const dir = path.join(tempDir(name), 'project')
  fs.cpSync(path.join(fixtures, name), dir, { recursive: true })
  return dir
}

/** A temporary project with `package.json` = `manifest`. */
function project(name: string, manifest: object): string {
  const dir = tempDir(name)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(manifest))
  return dir
}

function builder(options: ConstructorParameters<typeof ProjectBuilder>[0] = {}) {
  const created = new ProjectBuilder({ buildDir: tempDir('builds'), globalEnvVars: { PATH }, ...options })
  builders.push(created)
  return created
}

/** Runs a build and collects what reached `onLog`. */
async function build(
  b: InstanceType<typeof ProjectBuilder>,
  id: string,
  workdir: string,
  options?: Parameters<InstanceType<typeof ProjectBuilder>['buildById']>[2],
): Promise<{ result: ProjectBuildResult; lines: string[] }> {
  const lines: string[] = []
  const result = await b.buildById(id, workdir, options, (line) => lines.push(line))
  return { result, lines }
}

afterEach(async () => {
  await Promise.all(builders.splice(0).map((b) => b.cancelAll()))
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

describe('detectPackageManager, getInstallArgs, getBuildArgs, hasBuildScript', () => {
  it('detects each fixture by its lockfile, resolving a Promise', async () => {
    for (const pm of ['npm', 'pnpm', 'yarn', 'bun'] as const) {
      const detected = detectPackageManager(path.join(fixtures, `build-${pm}`))
      expect(detected).toBeInstanceOf(Promise)
      expect(await detected).toBe(pm)
    }
  })

  it('lets the packageManager field win, with a corepack hash too', async () => {
    const dir = project('field', { packageManager: 'pnpm@9.1.0+sha512.0123abcd' })
    fs.writeFileSync(path.join(dir, 'yarn.lock'), '')
    expect(await detectPackageManager(dir)).toBe('pnpm')
    expect(await detectPackageManager(project('none', {}))).toBe('npm')
    expect(await detectPackageManager(tempDir('no-manifest'))).toBe('npm')
  })

  it('names an unknown package manager and a broken package.json', async () => {
    const unknown = project('unknown', { packageManager: 'deno@2.0.0' })
    expect(await rejectionOf(detectPackageManager(unknown))).toBe(
      `Unknown package manager 'deno' (packageManager field of ${path.join(unknown, 'package.json')}): expected npm, pnpm, yarn or bun`,
    )
    const broken = tempDir('broken')
    fs.writeFileSync(path.join(broken, 'package.json'), '{\n  "name": "x",\n}')
    const message = await rejectionOf(detectPackageManager(broken))
    expect(message).toContain(`Invalid ${path.join(broken, 'package.json')}: not valid JSON: `)
    expect(message).toContain('line 3 column 1')
    expect(await rejectionOf(hasBuildScript(broken))).toContain('not valid JSON')
  })

  it("gives the TypeScript package's install flags by default and the frozen form on request", () => {
    expect(getInstallArgs('npm')).toEqual(['install', '--audit=false', '--fund=false', '--loglevel=error', '--progress=false'])
    expect(getInstallArgs('pnpm', {})).toEqual(['install', '--ignore-workspace', '--loglevel=error'])
    expect(getInstallArgs('yarn')).toEqual(['install', '--silent'])
    expect(getInstallArgs('bun', { frozen: false })).toEqual(['install', '--silent'])
    expect(getInstallArgs('npm', { frozen: true })).toEqual(['ci', '--audit=false', '--fund=false'])
    expect(getInstallArgs('pnpm', { frozen: true })).toEqual(['install', '--frozen-lockfile'])
    expect(getInstallArgs('yarn', { frozen: true })).toEqual(['install', '--frozen-lockfile'])
    expect(getInstallArgs('bun', { frozen: true })).toEqual(['install', '--frozen-lockfile'])
    for (const pm of ['npm', 'pnpm', 'yarn', 'bun'] as const) expect(getBuildArgs(pm)).toEqual(['run', 'build'])
  })

  it('rejects unknown package managers and bad arguments by name', async () => {
    const getInstall = getInstallArgs as (...args: unknown[]) => string[]
    const getBuild = getBuildArgs as (...args: unknown[]) => string[]
    expect(messageOf(() => getInstall('pip'))).toBe(
      "Unknown package manager 'pip' (argument pm): expected npm, pnpm, yarn or bun",
    )
    expect(messageOf(() => getBuild('deno'))).toContain("Unknown package manager 'deno'")
    expect(messageOf(() => getInstall(1))).toBe('Invalid pm: expected a string, got number 1')
    expect(messageOf(() => getInstall())).toBe('Invalid pm: is required')
    expect(messageOf(() => getInstall('npm', { frozen: 'yes' }))).toBe(
      "Invalid options.frozen: expected a boolean, got string 'yes'",
    )
    expect(await rejectionOf((detectPackageManager as (...a: unknown[]) => Promise<string>)())).toBe('Invalid dir: is required')
  })

  it('finds build scripts, resolving a Promise', async () => {
    expect(await hasBuildScript(path.join(fixtures, 'build-npm'))).toBe(true)
    expect(await hasBuildScript(project('noscript', { scripts: { dev: 'x' } }))).toBe(false)
    expect(await hasBuildScript(tempDir('nofile'))).toBe(false)
  })
})

describe('ProjectBuilder arguments', () => {
  it('names a wrong constructor field', () => {
    expect(messageOf(() => new ProjectBuilder({ maxConcurrentBuilds: 0 }))).toBe(
      'Invalid maxConcurrentBuilds: must be an integer from 1 to 4294967295 (got 0)',
    )
    expect(messageOf(() => new ProjectBuilder({ defaultTimeoutMs: -5 }))).toBe(
      'Invalid defaultTimeoutMs: must be an integer of at least 1 (got -5)',
    )
    expect(messageOf(() => new ProjectBuilder({ globalEnvVars: { A: 1 as unknown as string } }))).toBe(
      'Invalid globalEnvVars.A: expected a string, got number 1',
    )
  })

  it('rejects bad ids, workdirs and options before touching the disk', async () => {
    const b = builder()
    const dir = project('args', {})
    const call = b.buildById as (...args: unknown[]) => Promise<ProjectBuildResult>
    expect(await rejectionOf(call.call(b, '../x', dir))).toBe(
      "Invalid buildId: must not contain a path separator (got '../x')",
    )
    expect(await rejectionOf(call.call(b, '', dir))).toBe('Invalid buildId: must not be empty')
    expect(await rejectionOf(call.call(b, 'a\0b', dir))).toBe('Invalid buildId: must not contain a NUL character')
    expect(await rejectionOf(call.call(b, 'ok', 5))).toBe('Invalid workdir: expected a string, got number 5')
    expect(await rejectionOf(call.call(b, 'ok', dir, { timeoutMs: 0 }))).toBe(
      'Invalid options.timeoutMs: must be an integer of at least 1 (got 0)',
    )
    expect(await rejectionOf(call.call(b, 'ok', dir, {}, 'not a function'))).toBe(
      "Invalid onLog: expected a function, got string 'not a function'",
    )
    expect(fs.readdirSync(dir)).toEqual(['package.json'])
  })
})

/** Lockfile, cache directory and the tool's out-of-sync message, per package manager. */
const managers = [
  { pm: 'npm', frozen: 'npm ci --audit=false --fund=false', cache: 'npm', outOfSync: 'can only install packages when your package.json and package-lock.json' },
  { pm: 'pnpm', frozen: 'pnpm install --frozen-lockfile', cache: 'pnpm-store', outOfSync: 'ERR_PNPM_OUTDATED_LOCKFILE' },
  { pm: 'yarn', frozen: 'yarn install --frozen-lockfile', cache: 'yarn', outOfSync: 'Your lockfile needs to be updated' },
  { pm: 'bun', frozen: 'bun install --frozen-lockfile --backend=copyfile', cache: 'bun', outOfSync: 'lockfile had changes, but lockfile is frozen' },
] as const

/** Variables that cut every package manager off the registry, so only a warm cache can serve. */
const OFFLINE = {
  HTTP_PROXY: 'http://127.0.0.1:9',
  HTTPS_PROXY: 'http://127.0.0.1:9',
  http_proxy: 'http://127.0.0.1:9',
  https_proxy: 'http://127.0.0.1:9',
  npm_config_offline: 'true',
  pnpm_config_offline: 'true',
  YARN_OFFLINE: 'true',
}

describe.each(managers)('a $pm project', ({ pm, frozen, cache, outOfSync }) => {
  it('installs with the frozen form, builds, and produces the output', async () => {
    const b = builder()
    const workdir = copyFixture(`build-${pm}`)
    const { result, lines } = await build(b, `${pm}-1`, workdir)
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.errorMessage).toBeNull()
    expect(result.packageManager).toBe(pm)
    expect(result.startedAt).toBeInstanceOf(Date)
    expect(result.completedAt.getTime()).toBeGreaterThanOrEqual(result.startedAt.getTime())
    expect(result.logs).toContain(`\n[runner] Detected package manager: ${pm} (from lockfile `)
    expect(result.logs).toContain(`\n[runner] Installing dependencies... (${frozen})\n`)
    expect(result.logs).toContain(`\n[runner] Running build script... (${pm} run build)\n`)
    expect(result.logs).toContain('build: wrote .mastra/output/index.mjs (NODE_ENV=production)')
    expect(fs.readFileSync(path.join(workdir, '.mastra/output/index.mjs'), 'utf8')).toContain('"production"')
    // Every line reached onLog, in order, before the Promise resolved; the blank lines package
    // managers print between steps stay in `logs` only.
    expect(lines.filter((line) => line.trim() === '')).toEqual([])
    expect(lines.join('\n')).toBe(withoutBlankLines(result.logs))
  })

  it('fails with the package manager message when the lockfile is out of sync', async () => {
    const b = builder()
    const workdir = copyFixture(`build-${pm}`)
    const manifest = path.join(workdir, 'package.json')
    fs.writeFileSync(manifest, fs.readFileSync(manifest, 'utf8').replace('"is-number": "7.0.0"', '"is-number": "6.0.0"'))
    const { result } = await build(b, `${pm}-sync`, workdir)
    expect(result.status).toBe('failed')
    const message = result.errorMessage ?? ''
    expect(message.split('\n')[0]).toBe(`Dependency installation failed with exit code 1 (${frozen})`)
    expect(message).toContain(outOfSync)
  })

  it('rebuilds from the warm cache without the registry', async () => {
    const b = builder()
    const { result: cold } = await build(b, `${pm}-cold`, copyFixture(`build-${pm}`))
    expect(cold.status, cold.logs).toBe('succeeded')
    const { result: warm } = await build(b, `${pm}-warm`, copyFixture(`build-${pm}`), { envVars: OFFLINE })
    expect(warm.status, warm.logs).toBe('succeeded')

    // The same offline settings fail a builder whose cache is empty: the registry really is cut off.
    const empty = builder()
    const { result: blocked } = await build(empty, `${pm}-blocked`, copyFixture(`build-${pm}`), { envVars: OFFLINE })
    expect(blocked.status).toBe('failed')
    expect(blocked.errorMessage?.split('\n')[0]).toMatch(/^Dependency installation failed with exit code \d+ \(.*\)$/)
    expect(blocked.errorMessage).toContain(frozen)
  })

  it("keeps what a build writes into its node_modules out of the cache the next build installs from", async () => {
    const b = builder()
    const first = copyFixture(`build-${pm}`)
    const { result: cold } = await build(b, `${pm}-writer`, first)
    expect(cold.status, cold.logs).toBe('succeeded')
    // A build script (or the server it becomes) rewriting a dependency in its own tree.
    const installed = path.join(first, 'node_modules/is-number/index.js')
    if (!fs.existsSync(installed)) return // yarn berry's Plug'n'Play has no node_modules
    fs.appendFileSync(installed, '\n// poisoned by an earlier build\n')
    const second = copyFixture(`build-${pm}`)
    const { result: warm } = await build(b, `${pm}-reader`, second, { envVars: OFFLINE })
    expect(warm.status, warm.logs).toBe('succeeded')
    const text = fs.readFileSync(path.join(second, 'node_modules/is-number/index.js'), 'utf8')
    expect(text).not.toContain('poisoned')
  })

  it('keeps its cache under <buildDir>/.cache', async () => {
    const buildDir = tempDir(`cache-${pm}`)
    const b = builder({ buildDir })
    const { result } = await build(b, `${pm}-cache`, copyFixture(`build-${pm}`))
    expect(result.status, result.logs).toBe('succeeded')
    expect(fs.readdirSync(path.join(buildDir, '.cache', cache)).length).toBeGreaterThan(0)
  })
})

describe('dependency build scripts under pnpm 12', () => {
  it('a lockfile project with a dependency postinstall builds with pnpm 12 on PATH', async () => {
    // No packageManager and no policy (onlyBuiltDependencies, allowBuilds, ...): pnpm 12 would stop
    // with ERR_PNPM_IGNORED_BUILDS; the build skips the script as pnpm 10 does, and says so.
    const b = builder()
    const workdir = copyFixture('build-pnpm-scripts')
    const { result } = await build(b, 'pnpm-scripts', workdir)
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.logs).toContain(' using pnpm v12.')
    expect(result.logs).toContain(
      '\n[runner] Build scripts of dependencies not run: dep-with-postinstall@file:dep (skipped as pnpm 10 skips them: ' +
        'the project sets no policy such as onlyBuiltDependencies or allowBuilds)\n',
    )
    expect(fs.existsSync(path.join(workdir, 'postinstall-ran'))).toBe(false)
    expect(result.logs).toContain('build: wrote .mastra/output/index.mjs (from the dependency)')
  })

  it('keeps the policy a project sets', async () => {
    const b = builder()
    const workdir = copyFixture('build-pnpm-scripts')
    fs.writeFileSync(path.join(workdir, 'pnpm-workspace.yaml'), 'strictDepBuilds: true\n')
    const { result } = await build(b, 'pnpm-policy', workdir)
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toContain('ERR_PNPM_IGNORED_BUILDS')
    expect(result.logs).not.toContain('[runner] Build scripts of dependencies not run')
  })
})

// Issue 28: an app folder below a pnpm workspace root (`packages: ['.']`, packageManager
// pnpm@10.11.0) that does not list it; the app names pnpm@10.27.0 and has a file: dependency on
// a sibling folder. Built in place, so the workspace above it is there for pnpm to find.
describe('a project below a workspace that does not list it', () => {
  it('installs alone (pnpm --ignore-workspace) with the version it names, and builds', async () => {
    const root = copyFixture('ws-not-member')
    const app = path.join(root, 'examples', 'app')
    const { result } = await build(builder(), 'not-member', app)
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.logs).toContain(
      `[runner] Workspace: ${root} is a workspace root whose packages do not include the project: installing the project alone (pnpm with --ignore-workspace)`,
    )
    expect(result.logs).toMatch(/running pnpm 10\.27\.0 from \S+ \(the version package\.json names\)/)
    expect(result.logs).toContain('[runner] Installing dependencies... (pnpm install --frozen-lockfile --ignore-workspace)')
    expect(result.logs).toContain('[runner] The install ran pnpm 10.27.0 (as node_modules/.modules.yaml reports)')
    expect(result.logs).not.toContain('Warning: package.json names')
    // Built alone too, so the build script runs under the same pnpm.
    expect(result.logs).toContain('[runner] Running build script... (pnpm --ignore-workspace run build)')
    expect(result.logs).toContain('build: wrote .mastra/output/index.mjs from the sibling library with pnpm/10.27.0')
    // The root project was left alone.
    expect(fs.existsSync(path.join(root, 'node_modules'))).toBe(false)
  })

  it('reports the version that ran, and warns, when pnpm hands over to the one the workspace names', async () => {
    const root = copyFixture('ws-not-member')
    const app = path.join(root, 'examples', 'app')
    // Listed now: the app is a package of the workspace, whose root names pnpm 10.11.0.
    fs.writeFileSync(path.join(root, 'pnpm-workspace.yaml'), "packages: ['.', 'examples/*']\n")
    fs.rmSync(path.join(app, 'pnpm-lock.yaml'))
    const { result } = await build(builder(), 'member', app)
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.logs).not.toContain('installing the project alone')
    expect(result.logs).toMatch(
      /running pnpm 10\.11\.0 from \S+ \(fetched as pnpm@10\.27\.0, the version package\.json names\)/,
    )
    expect(result.logs).toMatch(/\n\[runner\] The install ran pnpm 10\.11\.0 \(as pnpm --version reports\)\n/)
    expect(result.logs).toContain('\n[runner] Warning: package.json names pnpm@10.27.0 but pnpm 10.11.0 ran the install\n')
  })
})

describe('ProjectBuilder.build(project, build, sourceDir, options?, onLog?)', () => {
  const projectEntity = { id: 'proj-1', slug: 'shop' } as never
  /** A dependency-free npm project with a lockfile, whose output already exists unless `withOutput` is false. */
  function ready(name: string, manifest: object = {}, withOutput = true): string {
    const dir = project(name, { name, version: '1.0.0', private: true, ...manifest })
    fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name, version: '1.0.0' } } }))
    if (withOutput) {
      fs.mkdirSync(path.join(dir, '.mastra/output'), { recursive: true })
      fs.writeFileSync(path.join(dir, '.mastra/output/index.mjs'), '')
    }
    return dir
  }

  it("resolves the caller's Build object, updated, with the TypeScript package's log phrases", async () => {
    const b = builder()
    const dir = ready('shaped')
    const input = { id: 'shaped-1', deploymentId: 'dep-1', status: 'queued', logs: '', startedAt: null, completedAt: null, errorMessage: null, logPath: '/keep/me' }
    const lines: string[] = []
    const before = Date.now()
    const result = await b.build(projectEntity, input as never, dir, undefined, (line) => lines.push(line))
    expect(result).toBe(input)
    expect(result.status, result.logs).toBe('succeeded')
    expect(result.errorMessage).toBeNull()
    expect((result as unknown as { logPath: string }).logPath).toBe('/keep/me')
    expect(result.deploymentId).toBe('dep-1')
    expect(result.startedAt).toBeInstanceOf(Date)
    expect(result.completedAt).toBeInstanceOf(Date)
    expect(result.completedAt!.getTime()).toBeGreaterThanOrEqual(before)
    expect(lines.join('\n')).toBe(withoutBlankLines(result.logs))
    expect(lines.some((l) => l.startsWith('[runner] Detected package manager: npm'))).toBe(true)
    expect(lines).toContain('[runner] Installing dependencies... (npm ci --audit=false --fund=false)')
    expect(lines.some((l) => l.startsWith('[runner] Dependencies installed successfully in '))).toBe(true)
    expect(lines.some((l) => l.startsWith('[runner] No build script found, skipping build step'))).toBe(true)
  })

  it('says why a build failed in the original words, with the command after them', async () => {
    const b = builder()
    const install = ready('install-fails', { scripts: { preinstall: 'node -e "process.exit(7)"' } })
    const failed = await b.build(projectEntity, { id: 'install-fails' } as never, install)
    expect(failed.status).toBe('failed')
    expect(failed.errorMessage).toMatch(/^Dependency installation failed with exit code \d+ \(npm ci --audit=false --fund=false\)/)
    expect(failed.completedAt).toBeInstanceOf(Date)

    const script = ready('script-fails', { scripts: { build: 'node -e "process.exit(4)"' } })
    const broken = await b.build(projectEntity, { id: 'script-fails' } as never, script, { skipInstall: true })
    expect(broken.errorMessage).toMatch(/^Build failed with exit code 4 \(npm run build\)/)

    const empty = ready('no-output', {}, false)
    const missing = await b.build(projectEntity, { id: 'no-output' } as never, empty, { skipInstall: true })
    expect(missing.errorMessage).toBe(
      `Build output not found: ${path.join(empty, '.mastra/output/index.mjs')}\n` +
        'package.json has no build script (scripts.build) and does not depend on mastra: Mastra projects use "build": "mastra build"',
    )
  })

  it('rejects a missing build object, id or source directory by name', async () => {
    const b = builder()
    const call = b.build as (...args: unknown[]) => Promise<unknown>
    const dir = ready('args')
    expect(await rejectionOf(call.call(b, projectEntity, 'build-1', dir))).toBe("Invalid build: expected an object, got string 'build-1'")
    expect(await rejectionOf(call.call(b, undefined, { id: 'x' }, dir))).toBe('Invalid project: is required')
    expect(await rejectionOf(call.call(b, projectEntity, {}, dir))).toBe('Invalid build.id: is required')
    expect(await rejectionOf(call.call(b, projectEntity, { id: '../up' }, dir))).toBe(
      "Invalid build.id: must not contain a path separator (got '../up')",
    )
    expect(await rejectionOf(call.call(b, projectEntity, { id: 'ok' }))).toBe('Invalid sourceDir: is required')
  })
})

describe('ProjectBuilder with plain scripts', () => {
  /** A project without dependencies whose build script is `script`. */
  function scripted(name: string, script: string): string {
    const dir = project(name, { name, version: '1.0.0', private: true, scripts: { build: script } })
    fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name, version: '1.0.0' } } }))
    return dir
  }

  it('cancels a running build', async () => {
    const b = builder()
    const workdir = scripted('cancel', 'node -e "console.log(\'hanging\'); setTimeout(() => {}, 1e6)"')
    const lines: string[] = []
    const pending = b.buildById('cancel-me', workdir, {}, (line) => lines.push(line))
    await waitFor(() => lines.includes('hanging'), 30_000, 'the build script to start')
    await b.cancel('cancel-me')
    const result = await pending
    expect(result.status).toBe('cancelled')
    expect(result.errorMessage).toMatch(/^Build cancelled after [\d.]+ s \(during build script: npm run build\)$/)
    await b.cancel('cancel-me') // a finished build: no-op
  })

  it('times out with the elapsed seconds', async () => {
    const b = builder({ defaultTimeoutMs: 60_000 })
    const workdir = scripted('timeout', 'node -e "setTimeout(() => {}, 1e6)"')
    const { result } = await build(b, 'slow', workdir, { timeoutMs: 2_000 })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toMatch(/^Build timed out after 2(\.\d)? s \(during build script: npm run build\)$/)
  })

  it('fails with the exit code, names missing output, and keeps host secrets out', async () => {
    process.env.BUILD_SPEC_ADMIN_SECRET = 'hunter2'
    try {
      const b = builder()
      const failing = scripted('exit', 'node -e "console.error(\'Error: broken build\'); process.exit(3)"')
      const { result } = await build(b, 'exit', failing)
      expect(result.errorMessage).toBe('Build failed with exit code 3 (npm run build)\nError: broken build')

      const dump = scripted('dump', 'node -e "require(\'fs\').writeFileSync(\'env.json\', JSON.stringify(process.env))"')
      const { result: missing } = await build(b, 'missing', dump)
      expect(missing.status).toBe('failed')
      expect(missing.errorMessage).toBe(`Build output not found: ${path.join(dump, '.mastra/output/index.mjs')}`)
      const env = JSON.parse(fs.readFileSync(path.join(dump, 'env.json'), 'utf8'))
      expect(env.BUILD_SPEC_ADMIN_SECRET).toBeUndefined()
      expect(env.NODE_ENV).toBe('production')
    } finally {
      delete process.env.BUILD_SPEC_ADMIN_SECRET
    }
  })

  it('passes npm only its own cache variable, so npm does not warn about store-dir', async () => {
    const buildDir = tempDir('store-dir-builds')
    const b = builder({ buildDir })
    const workdir = scripted('store-dir', 'node -e "require(\'fs\').writeFileSync(\'env.json\', JSON.stringify(process.env))"')
    const { result } = await build(b, 'store-dir', workdir)
    expect(result.logs).toContain('[runner] Installing dependencies... (npm ci --audit=false --fund=false)')
    expect(result.logs).not.toContain('Unknown env config')
    const env = JSON.parse(fs.readFileSync(path.join(workdir, 'env.json'), 'utf8'))
    expect(env.npm_config_cache).toBe(path.join(buildDir, '.cache', 'npm'))
    expect(env.npm_config_store_dir).toBeUndefined()
    expect(env.pnpm_config_store_dir).toBeUndefined()
    expect(env.YARN_CACHE_FOLDER).toBeUndefined()
  })

  it('says that package.json has no build script and what Mastra projects use', async () => {
    const b = builder()
    const dir = project('no-script', { name: 'no-script', version: '1.0.0', scripts: { dev: 'mastra dev' } })
    const { result } = await build(b, 'no-script', dir, { skipInstall: true })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toBe(
      `Build output not found: ${path.join(dir, '.mastra/output/index.mjs')}\n` +
        'package.json has no build script (scripts.build) and does not depend on mastra: Mastra projects use "build": "mastra build"',
    )
  })

  it('keeps the indentation of a code frame and names paths relative to the project', async () => {
    const b = builder()
    const dir = scripted('frame', 'node fail.mjs')
    fs.writeFileSync(
      path.join(dir, 'fail.mjs'),
      [
        "console.error('Error: Transform failed with 1 error:')",
        'console.error(process.cwd() + \'/src/mastra/index.ts:3:13: ERROR: Unexpected ";"\')',
        "console.error('    3 |   const x = ;')",
        "console.error('      |             ^')",
        'process.exit(1)',
      ].join('\n'),
    )
    const { result } = await build(b, 'frame', dir, { skipInstall: true })
    expect(result.status).toBe('failed')
    expect(result.errorMessage).toBe(
      [
        'Build failed with exit code 1 (npm run build)',
        'Error: Transform failed with 1 error:',
        `${dir}/src/mastra/index.ts:3:13: ERROR: Unexpected ";"`,
        '    3 |   const x = ;',
        '      |             ^',
        'In the project: src/mastra/index.ts',
      ].join('\n'),
    )
  })

  it('says in the log that a .env file is not loaded', async () => {
    const b = builder()
    const dir = scripted('dotenv', 'node -e "process.exit(process.env.FROM_DOTENV ? 5 : 0)"')
    fs.writeFileSync(path.join(dir, '.env'), 'FROM_DOTENV=1\n')
    const { result } = await build(b, 'dotenv', dir, { skipInstall: true })
    expect(result.errorMessage).toMatch(/^Build output not found: /)
    expect(result.logs).toContain(
      "[runner] Note: .env is present but not loaded (as in MastraAdmin's own builds): the build and the server get only the host's allowed variables, globalEnvVars and envVars",
    )
  })

  it('queues builds beyond maxConcurrentBuilds and says so', async () => {
    const b = builder({ maxConcurrentBuilds: 1 })
    const first = scripted('first', 'node -e "setTimeout(() => {}, 1e6)"')
    const second = scripted('second', 'node -e "require(\'fs\').mkdirSync(\'.mastra/output\', { recursive: true }); require(\'fs\').writeFileSync(\'.mastra/output/index.mjs\', \'\')"')
    const firstLines: string[] = []
    const running = b.buildById('first', first, {}, (line) => firstLines.push(line))
    await waitFor(() => firstLines.some((l) => l.startsWith('[runner] Running build script...')), 30_000, 'the first build to run')
    const secondLines: string[] = []
    const queued = b.buildById('second', second, {}, (line) => secondLines.push(line))
    await waitFor(() => secondLines.length > 0, 10_000, 'the queue line')
    expect(secondLines[0]).toBe(
      '[runner] Build second is waiting for a build slot: position 1 in the queue (1 of 1 builds running)',
    )
    await b.cancel('first')
    expect((await running).status).toBe('cancelled')
    const result = await queued
    expect(result.status, result.logs).toBe('succeeded')
  })
})
