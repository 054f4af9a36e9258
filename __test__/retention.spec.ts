// Build directories do not fill the disk (retainBuilds): after a successful deploy the
// deployment's builds older than the newest `retainBuilds` are removed, never one a live server
// uses; removeBuild refuses a build that is being served; getStats reports the disk used.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { entities, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

const fixtureServer = path.join(__dirname, 'fixtures', 'server', 'index.mjs')

/** A source that "copies" a project whose build output is already there (no install, no script). */
const prebuilt = {
  type: 'prebuilt',
  async getProjectPath(_source: unknown, targetDir: string) {
    fs.mkdirSync(path.join(targetDir, '.mastra', 'output'), { recursive: true })
    fs.writeFileSync(path.join(targetDir, 'package.json'), '{"name":"prebuilt","private":true}')
    fs.copyFileSync(fixtureServer, path.join(targetDir, '.mastra', 'output', 'index.mjs'))
    fs.writeFileSync(path.join(targetDir, 'padding.bin'), Buffer.alloc(2 * 1024 * 1024, 1))
    return targetDir
  },
}

function buildDirs(buildDir: string): string[] {
  return fs.readdirSync(buildDir).filter((name) => name.startsWith('build-')).sort()
}

describe('retainBuilds', () => {
  it('keeps the newest 3 build directories of a deployment after 4 deploys', async () => {
    const { runner, buildDir } = makeRunner()
    runner.setSource(prebuilt as never)
    const { project, deployment } = entities()
    const ids: string[] = []
    for (let i = 0; i < 4; i++) {
      const { build } = entities()
      const mine = { ...build, deploymentId: deployment.id }
      expect((await runner.build(project, mine, { skipInstall: true })).status).toBe('succeeded')
      await runner.deploy(project, deployment, mine)
      ids.push(mine.id)
    }
    // The replaced servers drain first: their builds go once they have stopped.
    const newest = ids.slice(1).sort()
    await waitFor(() => JSON.stringify(buildDirs(buildDir)) === JSON.stringify(newest), 20_000, 'the oldest build to go')
    expect(runner.listServers().map((s) => s.buildId)).toEqual([ids[3]])
    await waitFor(() => runner.getStats().buildDiskUsageMb >= 6, 10_000, 'the disk usage of 3 builds')
  })

  it('never removes a build a live server runs, and removeBuild refuses it', async () => {
    const { runner, buildDir } = makeRunner({ retainBuilds: 1, redeploy: 'keep' })
    runner.setSource(prebuilt as never)
    const { project, deployment } = entities()
    const first = { ...entities().build, deploymentId: deployment.id }
    const second = { ...entities().build, deploymentId: deployment.id }
    await runner.build(project, first, { skipInstall: true })
    const serving = await runner.deploy(project, deployment, first)
    await runner.build(project, second, { skipInstall: true })
    await runner.deploy(project, deployment, second)
    expect(buildDirs(buildDir)).toEqual([first.id, second.id].sort())
    await expect(runner.removeBuild(first.id)).rejects.toMatchObject({
      code: 'ERR_BUILD_IN_USE',
      message: expect.stringContaining(`in use by running server '${serving.id}'`),
    })
    await runner.stop(serving)
    await runner.removeBuild(first.id)
    expect(buildDirs(buildDir)).toEqual([second.id])
  })
})
