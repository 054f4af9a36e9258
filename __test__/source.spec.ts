// LocalProjectSource (SPEC §2, issues 10 and 14): discovery (depth, include, exclude, cache),
// added projects, getConfig, watchChanges, stable ids, access checks, copying with
// excludes, symlinks and modes, the onLog report, and argument errors.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { ProjectSource, ProjectSourceProvider } from '../index'
import { addon } from './helpers/addon'
import { messageOf, rejectionOf } from './helpers/errors'

const { LocalProjectSource } = addon

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh canonical temporary directory holding `base/`; removed after the test. */
function tempBase(): { dir: string; base: string } {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'source-spec-')))
  dirs.push(dir)
  const base = path.join(dir, 'base')
  fs.mkdirSync(base)
  return { dir, base }
}

/** Writes `text` at `file`, creating its directories. */
function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

/** Every path under `root`, relative and sorted (symlinks listed, not followed). */
function listing(root: string, prefix = ''): string[] {
  const out: string[] = []
  for (const entry of fs.readdirSync(path.join(root, prefix), { withFileTypes: true })) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name
    out.push(relative)
    if (entry.isDirectory()) out.push(...listing(root, relative))
  }
  return out.sort()
}

function local(project: string): ProjectSource {
  return { id: 'p1', name: 'app', type: 'local', path: project }
}

describe('constructor', () => {
  it('is a ProjectSourceProvider with type local over canonical base paths', () => {
    const { base } = tempBase()
    const provider: ProjectSourceProvider = new LocalProjectSource({ basePaths: [base, `${base}/.`] })
    expect(provider.type).toBe('local')
    expect(new LocalProjectSource({ basePaths: [base] }).basePaths).toEqual([base])
  })

  it('names the wrong argument', () => {
    const { dir } = tempBase()
    const make = (options: unknown) => () => new LocalProjectSource(options as { basePaths: string[] })
    expect(messageOf(make(undefined))).toBe('Invalid basePaths: is required')
    expect(messageOf(make({}))).toBe('Invalid basePaths: is required')
    expect(messageOf(make({ basePaths: [] }))).toBe('Invalid basePaths: must list at least one directory')
    expect(messageOf(make({ basePaths: '/tmp' }))).toBe(
      "Invalid basePaths: expected an array of strings, got string '/tmp'",
    )
    expect(messageOf(make({ basePaths: [dir, 7] }))).toBe('Invalid basePaths[1]: expected a string, got number 7')
    expect(messageOf(make({ basePaths: [path.join(dir, 'missing')] }))).toBe(
      `Invalid basePaths[0]: cannot resolve ${path.join(dir, 'missing')}: No such file or directory (os error 2)`,
    )
    write(path.join(dir, 'file'), 'x')
    expect(messageOf(make({ basePaths: [path.join(dir, 'file')] }))).toBe(
      `Invalid basePaths[0]: ${path.join(dir, 'file')} is not a directory`,
    )
    expect(messageOf(make({ basePaths: [dir], exclude: ['a/b'] }))).toBe(
      "Invalid exclude[0]: must be a directory or file name, not a path (got 'a/b')",
    )
    expect(messageOf(make('nope'))).toBe("Invalid options: expected an object, got string 'nope'")
  })
})

describe('listProjects and getProject', () => {
  it('finds projects by dependency and by src/mastra/index.ts, and ignores plain directories', async () => {
    const { base } = tempBase()
    write(path.join(base, 'by-dep', 'package.json'), JSON.stringify({ name: 'weather', dependencies: { '@mastra/core': '^1' } }))
    write(path.join(base, 'by-dev-dep', 'package.json'), JSON.stringify({ devDependencies: { mastra: '^1' } }))
    write(path.join(base, 'by-entry', 'src', 'mastra', 'index.ts'), 'export const mastra = {}')
    write(path.join(base, 'plain', 'package.json'), JSON.stringify({ dependencies: { express: '^4' } }))
    fs.mkdirSync(path.join(base, 'empty'))
    const source = new LocalProjectSource({ basePaths: [base] })

    const projects = await source.listProjects('team-1')
    expect(projects.map((p) => [p.name, p.path, p.type])).toEqual([
      ['weather', path.join(base, 'by-dep'), 'local'],
      ['by-dev-dep', path.join(base, 'by-dev-dep'), 'local'],
      ['by-entry', path.join(base, 'by-entry'), 'local'],
    ])
    for (const project of projects) {
      expect(project.id).toMatch(/^local_[0-9a-f]{12}$/)
      expect(await source.getProject(project.id)).toEqual(project)
    }
    // Ids are stable: another source over the same directory agrees.
    const again = await new LocalProjectSource({ basePaths: [path.join(base, '..', 'base')] }).listProjects('team-2')
    expect(again.map((p) => p.id)).toEqual(projects.map((p) => p.id))
  })

  it('rejects an unknown id naming it, and a missing argument', async () => {
    const { base } = tempBase()
    const source = new LocalProjectSource({ basePaths: [base] })
    expect(await rejectionOf(source.getProject('deadbeef'))).toBe(
      `Project not found: no Mastra project with id 'deadbeef' under ${base}`,
    )
    expect(await rejectionOf((source.getProject as (id?: unknown) => Promise<unknown>)())).toBe(
      'Invalid projectId: is required',
    )
    expect(await rejectionOf((source.listProjects as (id?: unknown) => Promise<unknown>)(42))).toBe(
      'Invalid teamId: expected a string, got number 42',
    )
  })
})

describe('validateAccess', () => {
  it('allows projects inside a base path and refuses .. tricks and escaping symlinks', async () => {
    const { dir, base } = tempBase()
    write(path.join(base, 'app', 'src', 'mastra', 'index.ts'), 'export {}')
    fs.mkdirSync(path.join(base, 'plain'))
    write(path.join(dir, 'outside', 'src', 'mastra', 'index.ts'), 'export {}')
    fs.symlinkSync(path.join(dir, 'outside'), path.join(base, 'escape'))
    const source = new LocalProjectSource({ basePaths: [base] })
    expect(await source.validateAccess(local(path.join(base, 'app')))).toBe(true)
    for (const bad of [
      path.join(base, 'plain'),
      path.join(dir, 'outside'),
      `${base}/../outside`,
      `${base}/app/../../outside`,
      path.join(base, 'escape'),
      '/etc',
      base,
      path.join(base, 'missing'),
      'base/app',
    ]) {
      expect(await source.validateAccess(local(bad)), bad).toBe(false)
    }
    expect(await source.validateAccess({ ...local(path.join(base, 'app')), type: 'github' })).toBe(false)
    expect(
      await rejectionOf((source.validateAccess as (s: unknown) => Promise<boolean>)({ id: 'x' })),
    ).toBe('Invalid source.path: is required')
  })
})

describe('getProjectPath', () => {
  it('copies the project without the usual excludes, at any depth, and reports to onLog', async () => {
    const { dir, base } = tempBase()
    const app = path.join(base, 'app')
    write(path.join(app, 'package.json'), '{}')
    write(path.join(app, 'dist.txt'), 'kept')
    write(path.join(app, 'src', 'mastra', 'index.ts'), 'export {}')
    write(path.join(app, 'node_modules', 'x', 'index.js'), 'skipped')
    write(path.join(app, 'a', 'b', 'node_modules', 'x'), 'skipped')
    write(path.join(app, 'a', 'dist', 'out.js'), 'skipped')
    write(path.join(app, '.git', 'HEAD'), 'skipped')
    write(path.join(app, '.mastra', 'output', 'index.mjs'), 'skipped')
    write(path.join(app, 'a', '.next', 'x'), 'skipped')
    write(path.join(app, '.turbo', 'x'), 'skipped')
    write(path.join(app, 'a', 'b', 'fixtures', 'big.bin'), 'skipped by the configured exclude')
    fs.writeFileSync(path.join(dir, 'secret'), 'outside')
    fs.symlinkSync('../../../secret', path.join(app, 'a', 'escape'))
    fs.symlinkSync(path.join(dir, 'secret'), path.join(app, 'absolute'))
    fs.symlinkSync('src/mastra', path.join(app, 'entry'))

    const source = new LocalProjectSource({ basePaths: [base], exclude: ['fixtures'] })
    const target = path.join(dir, 'builds', 'b1')
    const lines: string[] = []
    const resolved = await source.getProjectPath(local(app), target, (line) => lines.push(line))
    expect(resolved).toBe(target)
    expect(listing(target)).toEqual([
      'a',
      'a/b',
      'dist.txt',
      'entry',
      'package.json',
      'src',
      'src/mastra',
      'src/mastra/index.ts',
    ])
    expect(fs.lstatSync(path.join(target, 'entry')).isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(path.join(target, 'entry'))).toBe('src/mastra')
    expect(lines).toEqual([
      'copied 3 files (15 bytes) and 1 symlinks',
      'warning: symlink a/escape not copied: it points outside the project (-> ../../../secret)',
      `warning: symlink absolute not copied: its target is absolute (-> ${path.join(dir, 'secret')}); only relative links inside the project are kept`,
    ])
  })

  it('works with two arguments, as MastraAdmin calls it, and leaves no stale files on a second copy', async () => {
    const { dir, base } = tempBase()
    const app = path.join(base, 'app')
    write(path.join(app, 'old.txt'), 'old')
    const source: ProjectSourceProvider = new LocalProjectSource({ basePaths: [base] })
    const target = path.join(dir, 'build')
    await source.getProjectPath(local(app), target)
    fs.rmSync(path.join(app, 'old.txt'))
    write(path.join(app, 'new.txt'), 'new')
    write(path.join(target, 'leftover', 'x'), 'x')
    expect(await source.getProjectPath(local(app), target)).toBe(target)
    expect(listing(target)).toEqual(['new.txt'])
  })

  it('keeps file modes', async () => {
    const { dir, base } = tempBase()
    const app = path.join(base, 'app')
    write(path.join(app, 'run.sh'), '#!/bin/sh\necho ok\n')
    write(path.join(app, '.env'), 'KEY=1')
    fs.chmodSync(path.join(app, 'run.sh'), 0o755)
    fs.chmodSync(path.join(app, '.env'), 0o600)
    const target = path.join(dir, 'build')
    await new LocalProjectSource({ basePaths: [base] }).getProjectPath(local(app), target)
    expect(fs.statSync(path.join(target, 'run.sh')).mode & 0o777).toBe(0o755)
    expect(fs.statSync(path.join(target, '.env')).mode & 0o777).toBe(0o600)
  })

  it('refuses sources outside the base paths and unsafe targets, touching nothing', async () => {
    const { dir, base } = tempBase()
    const app = path.join(base, 'app')
    write(path.join(app, 'package.json'), '{}')
    write(path.join(dir, 'outside', 'secret'), 'x')
    fs.symlinkSync(path.join(dir, 'outside'), path.join(base, 'escape'))
    const source = new LocalProjectSource({ basePaths: [base] })
    const target = path.join(dir, 'build')

    for (const bad of [`${base}/../outside`, path.join(base, 'escape')]) {
      expect(await rejectionOf(source.getProjectPath(local(bad), target))).toBe(
        `Access denied to ${bad}: it resolves to ${path.join(dir, 'outside')}, which is outside every base path (${base})`,
      )
    }
    expect(fs.existsSync(target)).toBe(false)
    expect(await rejectionOf(source.getProjectPath(local(app), '/'))).toBe(
      `Refusing to copy into /: it is or holds the base path ${base}`,
    )
    expect(await rejectionOf(source.getProjectPath(local(app), app))).toBe(
      `Refusing to copy into ${app}: it is the project itself`,
    )
    expect(await rejectionOf(source.getProjectPath(local(app), path.join(app, 'out')))).toBe(
      `Refusing to copy into ${path.join(app, 'out')}: it is inside the project`,
    )
    expect(fs.readdirSync(app)).toEqual(['package.json'])
  })

  it('rejects bad arguments naming them', async () => {
    const { base } = tempBase()
    const app = path.join(base, 'app')
    fs.mkdirSync(app)
    const source = new LocalProjectSource({ basePaths: [base] })
    const call = source.getProjectPath as (...args: unknown[]) => Promise<string>
    expect(await rejectionOf(call.call(source))).toBe('Invalid source: is required')
    expect(await call.call(source, local(app))).toBe(app)
    expect(await rejectionOf(call.call(source, local(app), ''))).toBe('Invalid targetDir: must not be empty')
    expect(await rejectionOf(call.call(source, { ...local(app), type: 'github' }, '/tmp/x'))).toBe(
      "Invalid source.type: must be 'local' (got 'github')",
    )
    expect(await rejectionOf(call.call(source, local(app), '/tmp/x', 'log'))).toBe(
      "Invalid onLog: expected a function, got string 'log'",
    )
  })

  it('survives an onLog callback that throws', async () => {
    const { dir, base } = tempBase()
    const app = path.join(base, 'app')
    write(path.join(app, 'a.txt'), 'a')
    const source = new LocalProjectSource({ basePaths: [base] })
    const target = path.join(dir, 'build')
    const resolved = await source.getProjectPath(local(app), target, () => {
      throw new Error('boom')
    })
    expect(resolved).toBe(target)
    expect(listing(target)).toEqual(['a.txt'])
  })
})

/** A Mastra project (package.json depending on @mastra/core) at `dir`. */
function project(dir: string, name = path.basename(dir)): string {
  write(path.join(dir, 'package.json'), JSON.stringify({ name, dependencies: { '@mastra/core': '^1.0.0' } }))
  return dir
}

/** Polls `check` every 10 ms until it returns true or `ms` have passed. */
async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

describe('discovery depth, include and exclude', () => {
  it('finds projects one level deeper by default (monorepos), none deeper, and honours maxDepth', async () => {
    const { base } = tempBase()
    project(path.join(base, 'top'))
    project(path.join(base, 'mono', 'apps', 'agent'))
    project(path.join(base, 'mono', 'web'))
    project(path.join(base, 'node_modules', 'dep'))
    project(path.join(base, '.cache', 'hidden'))
    const names = async (config: Record<string, unknown>) =>
      (await new LocalProjectSource({ basePaths: [base], ...config }).listProjects('t')).map((p) => p.name)
    expect(await names({})).toEqual(['web', 'top'])
    expect(await names({ maxDepth: 1 })).toEqual(['top'])
    expect(await names({ maxDepth: 3 })).toEqual(['agent', 'web', 'top'])
    expect(await names({ maxDepth: 3, exclude: ['apps'] })).toEqual(['web', 'top'])
    expect(await names({ maxDepth: 3, include: ['apps/*'] })).toEqual(['agent'])
    expect(await names({ include: ['t*'] })).toEqual(['top'])
  })

  it('reports metadata as MastraAdmin\'s local source does', async () => {
    const { base } = tempBase()
    const dir = path.join(base, 'meta')
    write(
      path.join(dir, 'package.json'),
      JSON.stringify({ name: 'meta', version: '1.2.3', main: 'index.js', devDependencies: { mastra: '1', '@mastra/core': '1' } }),
    )
    write(path.join(dir, 'pnpm-lock.yaml'), '')
    write(path.join(dir, 'tsconfig.json'), '{}')
    write(path.join(dir, 'src', 'mastra', 'index.ts'), 'export {}')
    const [found] = await new LocalProjectSource({ basePaths: [base] }).listProjects('t')
    expect(found.metadata).toEqual({
      name: 'meta',
      version: '1.2.3',
      packageManager: 'pnpm',
      hasMastraConfig: true,
      mastraConfigPath: path.join(dir, 'src', 'mastra', 'index.ts'),
      entryPoint: 'index.js',
      isTypeScript: true,
      mastraDependencies: ['@mastra/core', 'mastra'],
      workspace: null,
    })
  })

  it('finds the apps of a workspace at any depth, with their workspace, and copies the workspace for them', async () => {
    const { dir, base } = tempBase()
    const root = path.join(base, 'repos', 'mono')
    write(path.join(root, 'package.json'), JSON.stringify({ name: 'mono', private: true }))
    write(path.join(root, 'pnpm-workspace.yaml'), "packages:\n  - 'apps/*'\n  - 'packages/*'\n")
    write(path.join(root, 'pnpm-lock.yaml'), "lockfileVersion: '9.0'\n")
    write(path.join(root, 'apps', 'agent', 'package.json'), JSON.stringify({ name: 'agent', dependencies: { '@mastra/core': '1', lib: 'workspace:*' } }))
    write(path.join(root, 'packages', 'lib', 'package.json'), JSON.stringify({ name: 'lib' }))
    const source = new LocalProjectSource({ basePaths: [base] })
    const projects = await source.listProjects('t')
    expect(projects.map((p) => p.name)).toEqual(['agent'])
    const [agent] = projects
    expect(agent.path).toBe(path.join(root, 'apps', 'agent'))
    expect(agent.metadata.packageManager).toBe('pnpm')
    expect(agent.metadata.workspace).toEqual({ root, path: 'apps/agent', marker: 'pnpm-workspace.yaml' })

    const target = path.join(dir, 'copy')
    const lines: string[] = []
    const workdir = await source.getProjectPath(agent, target, (line) => lines.push(line))
    expect(workdir).toBe(path.join(target, 'apps', 'agent'))
    expect(fs.existsSync(path.join(target, 'packages', 'lib', 'package.json'))).toBe(true)
    expect(lines[0]).toBe(`${path.join(root, 'apps', 'agent')} is the package apps/agent of the workspace at ${root}: copying the whole workspace`)
    // Pointed at the root, it builds the one app.
    const rootSource = { ...local(root) }
    expect(await source.getProjectPath(rootSource, target)).toBe(path.join(target, 'apps', 'agent'))
  })

  // Issue 27, W06: a workspace above the base path is never read, so it can neither claim the
  // project (its metadata, its package manager) nor widen what a copy takes.
  it('W06: a pnpm-workspace.yaml above the base path is not read: the project is listed and copied on its own', async () => {
    const { dir, base } = tempBase()
    write(path.join(dir, 'package.json'), JSON.stringify({ name: 'outer', private: true, packageManager: 'pnpm@9.15.0' }))
    write(path.join(dir, 'pnpm-workspace.yaml'), "packages:\n  - 'base/*'\n")
    write(path.join(dir, 'pnpm-lock.yaml'), "lockfileVersion: '9.0'\n")
    write(path.join(dir, 'secret.txt'), 'outside every base path')
    const app = project(path.join(base, 'app'))
    write(path.join(app, 'index.ts'), 'export {}')
    const source = new LocalProjectSource({ basePaths: [base] })
    const [found] = await source.listProjects('t')
    expect(found.path).toBe(app)
    expect(found.metadata.workspace).toBeNull()
    expect(found.metadata.packageManager).toBe('npm')

    const target = path.join(dir, 'copy')
    const lines: string[] = []
    expect(await source.getProjectPath(found, target, (line) => lines.push(line))).toBe(target)
    expect(listing(target)).toEqual(['index.ts', 'package.json'])
    expect(lines).toEqual(['copied 2 files (64 bytes)'])
  })

  it('W06: a base path that is itself a workspace root is as far as the search goes, and its packages build with it', async () => {
    const { dir, base } = tempBase()
    write(path.join(dir, 'pnpm-workspace.yaml'), "packages:\n  - '**'\n")
    write(path.join(base, 'package.json'), JSON.stringify({ name: 'mono', private: true, workspaces: ['apps/*', 'packages/**'] }))
    write(path.join(base, 'package-lock.json'), '{}')
    project(path.join(base, 'apps', 'agent'))
    write(path.join(base, 'packages', 'libs', 'deep', 'worker', 'package.json'), JSON.stringify({ name: 'worker', devDependencies: { mastra: '1' } }))
    const source = new LocalProjectSource({ basePaths: [base] })
    const projects = await source.listProjects('t')
    // The base path's workspace finds its apps however deep they sit; nothing above it counts.
    expect(projects.map((p) => [p.name, p.metadata.workspace, p.metadata.packageManager])).toEqual([
      ['agent', { root: base, path: 'apps/agent', marker: 'package.json workspaces' }, 'npm'],
      ['worker', { root: base, path: 'packages/libs/deep/worker', marker: 'package.json workspaces' }, 'npm'],
    ])
    const target = path.join(dir, 'copy')
    expect(await source.getProjectPath(projects[0], target)).toBe(path.join(target, 'apps', 'agent'))
    expect(listing(target)).toContain('packages/libs/deep/worker/package.json')
    expect(fs.existsSync(path.join(target, 'pnpm-workspace.yaml'))).toBe(false)
  })

  it('W06: a workspace root whose packages do not include the project is not its workspace', async () => {
    const { dir, base } = tempBase()
    write(path.join(base, 'group', 'package.json'), JSON.stringify({ name: 'group', workspaces: ['libs/*'] }))
    write(path.join(base, 'group', 'libs', 'util', 'package.json'), JSON.stringify({ name: 'util' }))
    const app = project(path.join(base, 'group', 'app'))
    const source = new LocalProjectSource({ basePaths: [base] })
    const [found] = await source.listProjects('t')
    expect(found.path).toBe(app)
    expect(found.metadata.workspace).toBeNull()
    const target = path.join(dir, 'copy')
    expect(await source.getProjectPath(found, target)).toBe(target)
    expect(listing(target)).toEqual(['package.json'])
  })

  it('names wrong options', () => {
    const { base } = tempBase()
    const make = (config: Record<string, unknown>) => () => new LocalProjectSource({ basePaths: [base], ...config })
    expect(messageOf(make({ maxDepth: 0 }))).toBe('Invalid maxDepth: must be an integer from 1 to 32 (got 0)')
    expect(messageOf(make({ maxDepth: '2' }))).toBe("Invalid maxDepth: expected a number, got string '2'")
    expect(messageOf(make({ include: [''] }))).toBe('Invalid include[0]: must not be empty')
    expect(messageOf(make({ include: ['../x'] }))).toBe("Invalid include[0]: must be a pattern relative to a base path (got '../x')")
    expect(messageOf(make({ watchChanges: 'yes' }))).toBe("Invalid watchChanges: expected a boolean, got string 'yes'")
    expect(messageOf(make({ watchDebounceMs: -1 }))).toMatch(/^Invalid watchDebounceMs: /)
  })
})

describe('cache, addProject, removeProject, clearCache, getConfig', () => {
  it('reuses a scan until clearCache, and getProject still finds new projects', async () => {
    const { base } = tempBase()
    project(path.join(base, 'first'))
    const source = new LocalProjectSource({ basePaths: [base] })
    expect((await source.listProjects('t')).map((p) => p.name)).toEqual(['first'])
    project(path.join(base, 'second'))
    expect((await source.listProjects('t')).map((p) => p.name)).toEqual(['first'])
    const id = (await new LocalProjectSource({ basePaths: [base] }).listProjects('t'))[1].id
    expect((await source.getProject(id)).name).toBe('second')
    source.clearCache()
    expect((await source.listProjects('t')).map((p) => p.name)).toEqual(['first', 'second'])
  })

  it('adds a project outside the base paths, lets it be copied, and removes it again', async () => {
    const { dir, base } = tempBase()
    const outside = project(path.join(dir, 'elsewhere', 'extra'))
    write(path.join(outside, 'index.ts'), 'export const x = 1')
    const source = new LocalProjectSource({ basePaths: [base] })
    expect(await source.validateAccess(local(outside))).toBe(false)
    const added = await source.addProject(outside)
    expect(added).toMatchObject({ name: 'extra', type: 'local', path: outside })
    expect(added.id).toMatch(/^local_[0-9a-f]{12}$/)
    expect(await source.listProjects('t')).toEqual([added])
    expect(await source.getProject(added.id)).toEqual(added)
    expect(await source.validateAccess(added)).toBe(true)
    const target = path.join(dir, 'target')
    expect(await source.getProjectPath(added, target)).toBe(target)
    expect(fs.readFileSync(path.join(target, 'index.ts'), 'utf8')).toBe('export const x = 1')
    source.removeProject(added.id)
    expect(await source.validateAccess(added)).toBe(false)
    expect(await rejectionOf(source.getProject(added.id))).toMatch(/^Project not found: /)
    fs.mkdirSync(path.join(dir, 'plain'))
    expect(await rejectionOf(source.addProject(path.join(dir, 'plain')))).toMatch(
      /^Invalid projectPath: Not a valid Mastra project: /,
    )
    expect(await rejectionOf(source.addProject(dir))).toMatch(/^Invalid projectPath: Not a valid Mastra project: |^Access denied/)
  })

  it('removeProject hides a scanned project until the next scan', async () => {
    const { base } = tempBase()
    project(path.join(base, 'app'))
    const source = new LocalProjectSource({ basePaths: [base] })
    const [app] = await source.listProjects('t')
    source.removeProject(app.id)
    expect(await source.getProject(app.id)).toEqual(app)
  })

  it('getConfig returns the configuration in force as a fresh object', () => {
    const { base } = tempBase()
    const source = new LocalProjectSource({ basePaths: [base], exclude: ['coverage'] })
    const config = source.getConfig()
    expect(config).toEqual({
      basePaths: [base],
      include: ['*'],
      exclude: ['node_modules', '.git', '.mastra', 'dist', '.next', '.turbo', 'coverage'],
      maxDepth: 2,
      watchChanges: false,
      watchDebounceMs: 300,
    })
    expect(source.getConfig()).not.toBe(config)
    const custom = new LocalProjectSource({ basePaths: [base], maxDepth: 3, watchChanges: true, watchDebounceMs: 50, include: ['apps/*'] })
    expect(custom.getConfig()).toMatchObject({ maxDepth: 3, watchChanges: true, watchDebounceMs: 50, include: ['apps/*'] })
  })
})

describe('watchChanges', () => {
  it('warns and returns a no-op when watching is off', async () => {
    const { base } = tempBase()
    const app = project(path.join(base, 'app'))
    const source = new LocalProjectSource({ basePaths: [base] })
    const warnings: unknown[] = []
    const warn = console.warn
    console.warn = (message: unknown) => warnings.push(message)
    try {
      const stop = source.watchChanges(local(app), () => {})
      expect(typeof stop).toBe('function')
      stop()
    } finally {
      console.warn = warn
    }
    expect(warnings).toHaveLength(1)
    expect(String(warnings[0])).toContain('watchChanges is disabled')
  })

  it('reports added, changed and removed files, debounced, relative to the project, until unsubscribed', async () => {
    const { base } = tempBase()
    const app = project(path.join(base, 'app'))
    write(path.join(app, 'src', 'old.ts'), 'old')
    write(path.join(app, 'src', 'keep.ts'), 'keep')
    const source = new LocalProjectSource({ basePaths: [base], watchChanges: true, watchDebounceMs: 50 })
    const events: { type: string; path: string; timestamp: Date }[] = []
    const stop = source.watchChanges(local(app), (event) => events.push(event))
    write(path.join(app, 'src', 'new.ts'), 'new')
    write(path.join(app, 'src', 'keep.ts'), 'changed content')
    fs.rmSync(path.join(app, 'src', 'old.ts'))
    write(path.join(app, 'node_modules', 'dep', 'index.js'), 'ignored')
    write(path.join(app, 'debug.log'), 'ignored')
    await until(() => events.length >= 3)
    const seen = events.map((e) => `${e.type} ${e.path}`).sort()
    expect(seen).toEqual(['add src/new.ts', 'change src/keep.ts', 'unlink src/old.ts'])
    for (const event of events) expect(event.timestamp).toBeInstanceOf(Date)
    stop()
    stop()
    const count = events.length
    write(path.join(app, 'src', 'late.ts'), 'late')
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(events.length).toBe(count)
  })

  it('refuses a project outside the base paths and a missing callback', () => {
    const { dir, base } = tempBase()
    const outside = project(path.join(dir, 'outside'))
    const source = new LocalProjectSource({ basePaths: [base], watchChanges: true })
    expect(messageOf(() => source.watchChanges(local(outside), () => {}))).toMatch(/^Access denied to /)
    const call = source.watchChanges as (...args: unknown[]) => () => void
    expect(messageOf(() => call.call(source, local(outside)))).toBe('Invalid callback: expected a function, got undefined')
  })

  it('survives a callback that throws', async () => {
    const { base } = tempBase()
    const app = project(path.join(base, 'app'))
    const source = new LocalProjectSource({ basePaths: [base], watchChanges: true, watchDebounceMs: 20 })
    let calls = 0
    const stop = source.watchChanges(local(app), () => {
      calls += 1
      throw new Error('boom')
    })
    write(path.join(app, 'a.ts'), 'a')
    await until(() => calls > 0)
    write(path.join(app, 'b.ts'), 'b')
    await until(() => calls > 1)
    expect(calls).toBeGreaterThan(1)
    stop()
  })
})
