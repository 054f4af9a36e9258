// Rebuilds that reuse an unchanged build's output and an unchanged lockfile's install (issue 31),
// through LocalProcessRunner.build with the local source and the sandbox on, offline: an npm
// app whose file: dependency's postinstall stamps its install (cache-npm) and a pnpm workspace
// app (cache-pnpm-ws), both with a build script that takes two seconds. A build says what it
// reused in its log; what it serves and the files in its directory show what it got.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { Build } from '../index'

import {
  BUILD_SCRIPT,
  LIB_BUILD,
  POSTINSTALL,
  RESTORED,
  REUSED,
  cacheProject,
  cacheStats,
  expectFullBuild,
  expectSucceeded,
  filesUnder,
  installedStamp,
  removeCheckouts,
  restoredLine,
  reusedLine,
} from './helpers/build-cache'
import { makeRunner, shutdownRunners } from './helpers/runner'

afterEach(async () => {
  await shutdownRunners()
  removeCheckouts()
})

// The cache runs only where builds and servers are sandboxed (a tenant outside a sandbox could
// rewrite the snapshots); a kernel without Landlock or user namespaces takes that path.
const unsandboxed = (() => {
  const { isolation } = cacheProject('cache-npm').runner.getStats()
  return isolation.sandbox ? '' : ` (skipped: ${isolation.sandboxReason})`
})()

/** The build output of the app in `appDir`. */
function outputOf(appDir: string): string {
  return path.join(appDir, '.mastra', 'output', 'index.mjs')
}

/** How long `build` took. */
function elapsedMs(build: Build): number {
  return build.completedAt!.getTime() - build.startedAt!.getTime()
}

/** Rewrites the file `file` of a checkout. */
function edit(file: string, text: string | Buffer): void {
  fs.writeFileSync(file, text)
}

describe.skipIf(!!unsandboxed)(`an npm project${unsandboxed}`, () => {
  it('rejects a cache option that is not a boolean, naming it', async () => {
    const app = cacheProject('cache-npm')
    await expect(app.build({ cache: 'yes' as never })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
      message: "Invalid options.cache: expected a boolean, got string 'yes'",
    })
  })

  it('builds from scratch the first time: install (postinstall), build script, served output', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    expect(fs.existsSync(outputOf(app.appDir(first)))).toBe(true)
    // The file: dependency is a copy in node_modules (not a link back into the source), stamped.
    expect(fs.lstatSync(path.join(app.appDir(first), 'node_modules', 'stamp-dep')).isDirectory()).toBe(true)
    const stamp = installedStamp(app.appDir(first))
    expect(stamp).toMatch(/^installed [0-9a-f]{16}\n$/)
    expect(await app.serve(first)).toMatchObject({ message: 'hello from the first source', flavour: 'plain', stamp })
  })

  it('reuses the output of an unchanged build: no install, no build script, output and node_modules in place', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    const again = await app.build()
    expectSucceeded(again)
    expect(again.logs).toContain(reusedLine(first.id))
    expect(again.logs).not.toContain(POSTINSTALL)
    expect(again.logs).not.toContain(BUILD_SCRIPT)
    // Faster than the first build, whose build script alone takes two seconds.
    expect(elapsedMs(again)).toBeLessThan(elapsedMs(first))
    // Its own directory has what the first build left: the output and the same install.
    const dir = app.appDir(again)
    expect(fs.readFileSync(outputOf(dir), 'utf8')).toBe(fs.readFileSync(outputOf(app.appDir(first)), 'utf8'))
    expect(installedStamp(dir)).toBe(firstStamp)
    // Copies, not links to (or hard links shared with) the first build's files.
    expect(fs.lstatSync(path.join(dir, 'node_modules')).isSymbolicLink()).toBe(false)
    expect(fs.statSync(outputOf(dir)).ino).not.toBe(fs.statSync(outputOf(app.appDir(first))).ino)
    expect(await app.serve(again)).toMatchObject({ message: 'hello from the first source', stamp: firstStamp })
  })

  it('restores the dependencies when only the source changed: the build script runs, the new source is served', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    edit(path.join(app.app, 'src', 'message.txt'), 'hello from the edited source\n')
    const edited = await app.build()
    expectSucceeded(edited)
    expect(edited.logs).not.toContain(REUSED)
    expect(edited.logs).toContain(BUILD_SCRIPT)
    expect(edited.logs).toContain(restoredLine(first.id))
    expect(edited.logs).not.toContain(POSTINSTALL)
    expect(installedStamp(app.appDir(edited))).toBe(firstStamp)
    expect(await app.serve(edited)).toMatchObject({ message: 'hello from the edited source', stamp: firstStamp })
  })

  it('rebuilds when the build environment changes (envVars)', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)

    const flavoured = await app.build({ envVars: { CACHE_FIXTURE_FLAVOUR: 'spicy' } })
    expectSucceeded(flavoured)
    expect(flavoured.logs).not.toContain(REUSED)
    expect(flavoured.logs).toContain(BUILD_SCRIPT)
    expect(await app.serve(flavoured)).toMatchObject({ message: 'hello from the first source', flavour: 'spicy' })
  })

  it('reinstalls when the lockfile and a dependency change', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    // stamp-dep 1.0.0 becomes 1.0.1, in its package.json and in the lockfile.
    const dependency = path.join(app.root, 'stamp-dep', 'package.json')
    edit(dependency, fs.readFileSync(dependency, 'utf8').replace('"version": "1.0.0"', '"version": "1.0.1"'))
    const lockfile = path.join(app.app, 'package-lock.json')
    const locked = fs.readFileSync(lockfile, 'utf8')
    const bumped = locked.replace(/("node_modules\/stamp-dep": \{\s*"version": )"1\.0\.0"/, '$1"1.0.1"')
    expect(bumped).not.toBe(locked)
    edit(lockfile, bumped)

    const reinstalled = await app.build()
    expectFullBuild(reinstalled)
    const stamp = installedStamp(app.appDir(reinstalled))
    expect(stamp).not.toBe(firstStamp)
    const installed = path.join(app.appDir(reinstalled), 'node_modules', 'stamp-dep', 'package.json')
    expect(JSON.parse(fs.readFileSync(installed, 'utf8')).version).toBe('1.0.1')
    expect(await app.serve(reinstalled)).toMatchObject({ stamp })
  })

  it('builds from scratch with cache: false even though a snapshot matches', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    const fresh = await app.build({ cache: false })
    expectFullBuild(fresh)
    const stamp = installedStamp(app.appDir(fresh))
    expect(stamp).not.toBe(firstStamp)
    expect(await app.serve(fresh)).toMatchObject({ message: 'hello from the first source', stamp })
  })

  it('after cache: false, the next unchanged build reuses the refreshed snapshot', async () => {
    const app = cacheProject('cache-npm')
    expectFullBuild(await app.build())
    const fresh = await app.build({ cache: false })
    expectFullBuild(fresh)

    const again = await app.build()
    expectSucceeded(again)
    expect(again.logs).toContain(reusedLine(fresh.id))
    expect(installedStamp(app.appDir(again))).toBe(installedStamp(app.appDir(fresh)))
  })

  it("keeps a running server's writes into its node_modules out of the next builds", async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const pristine = installedStamp(app.appDir(first))
    const served = await app.serve(first, true)
    expect((await fetch(`http://127.0.0.1:${served.port}/poison`)).status).toBe(200)
    // The server wrote into its own tree (the snapshot was taken before).
    expect(installedStamp(app.appDir(first))).toBe(`${pristine}poisoned by a running server\n`)

    // Unchanged: the next build gets the install as it was when the first build finished.
    const again = await app.build()
    expectSucceeded(again)
    expect(installedStamp(app.appDir(again))).not.toContain('poisoned')
    expect(again.logs).toContain(reusedLine(first.id))
    expect(installedStamp(app.appDir(again))).toBe(pristine)

    // Source changed: the restored dependencies are pristine too.
    edit(path.join(app.app, 'src', 'message.txt'), 'hello after the poison\n')
    const edited = await app.build()
    expectSucceeded(edited)
    expect(edited.logs).toContain(RESTORED)
    expect(installedStamp(app.appDir(edited))).toBe(pristine)
    expect(await app.serve(edited)).toMatchObject({ message: 'hello after the poison', stamp: pristine })
  })

  it('falls back to a full build, with a warning, when a snapshot fails to restore', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    expect(first.logs).not.toContain('Warning:')

    // Every object of the store disappears.
    const objects = filesUnder(path.join(app.buildDir, '.runner', 'build-cache', 'objects'))
    for (const file of objects) fs.rmSync(file, { force: true })

    const after = await app.build()
    expectFullBuild(after)
    expect(await app.serve(after)).toMatchObject({ message: 'hello from the first source', stamp: installedStamp(app.appDir(after)) })
    expect(after.logs).toMatch(/^.*Warning:.*$/m)
    expect(objects.length, 'files under <buildDir>/.runner/build-cache/objects after the first build').toBeGreaterThan(0)
  })

  it('keeps reusing a build\'s snapshots after removeBuild of its directory', async () => {
    // Snapshots are not build directories: MastraAdmin's retention and the CLI's --watch remove
    // old builds, and the next unchanged build still reuses the snapshot (the bound alone
    // removes snapshots).
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    expectSucceeded(await app.build())
    await app.runner.removeBuild(first.id)
    expect(fs.existsSync(path.join(app.buildDir, first.id))).toBe(false)

    const later = await app.build()
    expectSucceeded(later)
    expect(later.logs).toContain(reusedLine(first.id))
    expect(fs.existsSync(outputOf(app.appDir(later)))).toBe(true)
    const stamp = installedStamp(app.appDir(later))
    expect(await app.serve(later)).toMatchObject({ message: 'hello from the first source', stamp })
  })

  it('counts hits and misses in getStats().buildCache', async () => {
    const app = cacheProject('cache-npm')
    const initial = cacheStats(app.runner)
    expect(initial).toMatchObject({ sizeMb: 0, snapshots: 0, outputHits: 0, installHits: 0, misses: 0, evictions: 0 })
    expect(initial.maxMb).toBeGreaterThan(0)

    expectFullBuild(await app.build())
    const built = cacheStats(app.runner)
    expect(built.misses).toBeGreaterThanOrEqual(1)
    expect(built.snapshots).toBeGreaterThanOrEqual(1)
    expect(built.sizeMb).toBeGreaterThan(0)

    expectSucceeded(await app.build())
    const reused = cacheStats(app.runner)
    expect(reused.outputHits).toBe(built.outputHits + 1)

    edit(path.join(app.app, 'src', 'message.txt'), 'hello from the edited source\n')
    expectSucceeded(await app.build())
    const restored = cacheStats(app.runner)
    expect(restored.installHits).toBe(reused.installHits + 1)
    expect(restored.outputHits).toBe(reused.outputHits)
  })

  it('keeps the snapshots within buildCache.maxMb, evicting the least recently used', async () => {
    const app = cacheProject('cache-npm', { buildCache: { maxMb: 1 } })
    // 200 KB that do not compress, in the source and copied into the output (stored once): each
    // build adds about 200 KB to the store, so the sixth pushes the oldest out of 1 MB. (The
    // tree of one build stays under half the bound, which the cache requires.)
    const payload = path.join(app.app, 'src', 'payload.bin')
    for (const size of Array(6).fill(200_000)) {
      edit(payload, crypto.randomBytes(size))
      const build = await app.build()
      expectSucceeded(build)
      expect(build.logs).toContain(BUILD_SCRIPT)
      expect(build.logs).not.toContain('Build cache not used')
    }
    const stats = cacheStats(app.runner)
    expect(stats.maxMb).toBe(1)
    expect(stats.sizeMb).toBeLessThanOrEqual(1)
    expect(stats.evictions).toBeGreaterThan(0)
  })

  it('leaves a copy larger than half of maxMb out of the cache, before reading it', async () => {
    const app = cacheProject('cache-npm', { buildCache: { maxMb: 1 } })
    edit(path.join(app.app, 'src', 'payload.bin'), crypto.randomBytes(700_000))
    for (let i = 0; i < 2; i++) {
      const build = await app.build()
      expectSucceeded(build)
      expect(build.logs).toContain('[runner] Build cache not used: the build copy takes more than half of buildCache.maxMb')
      expect(build.logs).toContain(BUILD_SCRIPT)
    }
    expect(cacheStats(app.runner)).toMatchObject({ snapshots: 0, sizeMb: 0 })
  })

  it('keeps no install snapshot when a dependency script writes into the project, and installs again', async () => {
    // As `prisma generate` does: what it writes comes from project files the install fingerprint
    // does not follow, so restoring it later could be stale.
    const app = cacheProject('cache-npm')
    const options = { envVars: { STAMP_INTO_PROJECT: '1' } }
    const first = await app.build(options)
    expectFullBuild(first)
    expect(first.logs).toContain(
      '[runner] No install snapshot of this build was kept: the install changed app/src/generated-stamp.txt outside node_modules',
    )
    edit(path.join(app.app, 'src', 'message.txt'), 'hello from the edited source\n')
    const edited = await app.build(options)
    expectSucceeded(edited)
    expect(edited.logs).not.toContain(RESTORED)
    expect(edited.logs).toContain(POSTINSTALL)
  })

  it('is held by one runner of a buildDir at a time: a second one builds without it and says so', async () => {
    const app = cacheProject('cache-npm')
    const first = await app.build()
    expectFullBuild(first)
    const config = app.runner.getConfig()
    const { runner: second } = makeRunner({
      buildDir: app.buildDir,
      defaultSource: 'local',
      globalEnvVars: config.globalEnvVars,
    })
    const build = { ...first, id: `${app.project.id}-second-runner`, status: 'queued' as const, logs: '' }
    const other = await second.build(app.project, build)
    expectFullBuild(other)
    expect(other.logs).toContain('[runner] Build cache not used: another runner on this buildDir holds it')
    // The first runner's cache is intact: its next unchanged build still reuses.
    expect((await app.build()).logs).toContain(reusedLine(first.id))
  })

  it('is off where builds and servers run without a sandbox, and says so', async () => {
    const app = cacheProject('cache-npm', { sandbox: false })
    expectFullBuild(await app.build())
    const again = await app.build()
    expectFullBuild(again)
    expect(again.logs).toContain('[runner] Build cache not used: builds and servers run without a sandbox here')
    expect(cacheStats(app.runner).snapshots).toBe(0)
  })
})

describe.skipIf(!!unsandboxed)(`a pnpm workspace app${unsandboxed}`, () => {
  it('builds from scratch the first time: root install (postinstall), the library, then the app', async () => {
    const app = cacheProject('cache-pnpm-ws')
    const first = await app.build()
    expectFullBuild(first)
    expect(first.logs).toContain(LIB_BUILD)
    const stamp = installedStamp(app.appDir(first))
    expect(await app.serve(first)).toMatchObject({
      message: 'hello from the first source',
      greeting: 'from the workspace library',
      stamp,
    })
  })

  it('reuses the output of an unchanged build: no install, no build script of the library or the app', async () => {
    const app = cacheProject('cache-pnpm-ws')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    const again = await app.build()
    expectSucceeded(again)
    expect(again.logs).toContain(reusedLine(first.id))
    expect(again.logs).not.toContain(POSTINSTALL)
    expect(again.logs).not.toContain(LIB_BUILD)
    expect(again.logs).not.toContain(BUILD_SCRIPT)
    const dir = app.appDir(again)
    expect(fs.existsSync(outputOf(dir))).toBe(true)
    // The workspace's installs: the root's virtual store and the app's links into it.
    expect(fs.existsSync(path.join(app.buildDir, again.id, 'node_modules', '.pnpm'))).toBe(true)
    expect(installedStamp(dir)).toBe(firstStamp)
    expect(await app.serve(again)).toMatchObject({ greeting: 'from the workspace library', stamp: firstStamp })
  })

  it("restores every member's dependencies when only the app's source changed; the build scripts run", async () => {
    const app = cacheProject('cache-pnpm-ws')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    edit(path.join(app.app, 'src', 'message.txt'), 'hello from the edited source\n')
    const edited = await app.build()
    expectSucceeded(edited)
    expect(edited.logs).not.toContain(REUSED)
    expect(edited.logs).toContain(restoredLine(first.id))
    expect(edited.logs).not.toContain(POSTINSTALL)
    expect(edited.logs).toContain(LIB_BUILD)
    expect(edited.logs).toContain(BUILD_SCRIPT)
    expect(installedStamp(app.appDir(edited))).toBe(firstStamp)
    expect(await app.serve(edited)).toMatchObject({
      message: 'hello from the edited source',
      greeting: 'from the workspace library',
      stamp: firstStamp,
    })
  })

  it("reinstalls when a member's dependencies and the lockfile change", async () => {
    const app = cacheProject('cache-pnpm-ws')
    const first = await app.build()
    expectFullBuild(first)
    const firstStamp = installedStamp(app.appDir(first))

    // The library (not the deployed app) now depends on the stamp dependency too.
    const library = path.join(app.root, 'packages', 'lib', 'package.json')
    const manifest = JSON.parse(fs.readFileSync(library, 'utf8'))
    edit(library, JSON.stringify({ ...manifest, dependencies: { 'stamp-dep': 'file:../../vendor/stamp-dep' } }, null, 2))
    const lockfile = path.join(app.root, 'pnpm-lock.yaml')
    const locked = fs.readFileSync(lockfile, 'utf8')
    const member = [
      '  packages/lib:',
      '    dependencies:',
      '      stamp-dep:',
      '        specifier: file:../../vendor/stamp-dep',
      '        version: file:vendor/stamp-dep',
      '',
    ].join('\n')
    expect(locked).toContain('  packages/lib: {}\n')
    edit(lockfile, locked.replace('  packages/lib: {}\n', member))

    const reinstalled = await app.build()
    expectFullBuild(reinstalled)
    expect(reinstalled.logs).toContain(LIB_BUILD)
    const stamp = installedStamp(app.appDir(reinstalled))
    expect(stamp).not.toBe(firstStamp)
    expect(fs.existsSync(path.join(app.buildDir, reinstalled.id, 'packages', 'lib', 'node_modules', 'stamp-dep'))).toBe(true)
    expect(await app.serve(reinstalled)).toMatchObject({ greeting: 'from the workspace library', stamp })
  })

  it("keeps a running server's writes into its node_modules out of the next build", async () => {
    const app = cacheProject('cache-pnpm-ws')
    const first = await app.build()
    expectFullBuild(first)
    const pristine = installedStamp(app.appDir(first))
    const served = await app.serve(first, true)
    expect((await fetch(`http://127.0.0.1:${served.port}/poison`)).status).toBe(200)
    expect(installedStamp(app.appDir(first))).toContain('poisoned')

    const again = await app.build()
    expectSucceeded(again)
    expect(installedStamp(app.appDir(again))).not.toContain('poisoned')
    expect(again.logs).toContain(reusedLine(first.id))
    expect(installedStamp(app.appDir(again))).toBe(pristine)
  })

  it('builds from scratch with cache: false', async () => {
    const app = cacheProject('cache-pnpm-ws')
    expectFullBuild(await app.build())
    const fresh = await app.build({ cache: false })
    expectFullBuild(fresh)
    expect(fresh.logs).toContain(LIB_BUILD)
  })
})
