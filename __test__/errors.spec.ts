// Every Error the package throws or rejects with carries a stable `code` (README, "Errors"):
// Node's own codes for bad arguments, the package's ERR_* codes otherwise. One real failure per
// code that JS can cause; ERR_SIGNAL_FAILED and ERR_INTERNAL cannot be caused from JS on purpose
// and are covered by the Rust unit test of `Error::code`.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import type { RunnerError, RunnerErrorCode } from '../index'
import { addon } from './helpers/addon'
import { close, listen } from './helpers/net'
import { entities, installBuild, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

/** The Error `fn` throws, or the one its Promise rejects with. */
async function failure(fn: () => unknown): Promise<RunnerError> {
  try {
    await fn()
  } catch (error) {
    expect(error).toBeInstanceOf(Error)
    return error as RunnerError
  }
  throw new Error('expected an Error, but the call succeeded')
}

async function expectCode(fn: () => unknown, code: RunnerErrorCode, message?: RegExp): Promise<RunnerError> {
  const error = await failure(fn)
  expect(error.code, error.message).toBe(code)
  if (message) expect(error.message).toMatch(message)
  return error
}

describe('error codes', () => {
  it('ERR_INVALID_ARG_TYPE and ERR_INVALID_ARG_VALUE name the argument', async () => {
    await expectCode(() => new addon.LocalProcessRunner({ portRange: 5 as never }), 'ERR_INVALID_ARG_TYPE', /^Invalid portRange: expected an object/)
    await expectCode(
      () => new addon.LocalProcessRunner({ portRange: { start: 10, end: 5 } }),
      'ERR_INVALID_ARG_VALUE',
      /portRange/,
    )
    const { runner } = makeRunner()
    const { project, deployment, build } = entities()
    await expectCode(() => runner.deploy({ ...project, id: 'a/b' }, deployment, build), 'ERR_INVALID_ARG_VALUE', /^Invalid project\.id/)
    await expectCode(() => runner.setRouter(null as never), 'ERR_INVALID_ARG_TYPE', /^Invalid router/)
    await expectCode(() => runner.stop({} as never), 'ERR_INVALID_ARG_VALUE', /^Invalid server\.id: is required/)
    await expectCode(() => runner.getLogs({ id: 's' } as never, { since: 'yesterday' as never }), 'ERR_INVALID_ARG_TYPE', /options\.since/)
  })

  it('ERR_SOURCE_NOT_CONFIGURED, ERR_PROVIDER_FAILED and ERR_BUILD_IN_PROGRESS for builds', async () => {
    const { runner } = makeRunner()
    const { project, build } = entities()
    await expectCode(() => runner.build(project, build), 'ERR_SOURCE_NOT_CONFIGURED', /^Project source provider not configured$/)

    runner.setSource({ type: 'x', getProjectPath: async () => Promise.reject(new Error('clone failed')) } as never)
    await expectCode(() => runner.build(project, build), 'ERR_PROVIDER_FAILED', /^Source provider failed for project '.*': clone failed$/)

    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    runner.setSource({ type: 'x', getProjectPath: async (_s: unknown, dir: string) => (await held, dir) } as never)
    const first = runner.build(project, { ...build })
    await expectCode(() => runner.build(project, { ...build }), 'ERR_BUILD_IN_PROGRESS', /already queued or running/)
    await runner.cancelBuild(build.id)
    release()
    expect((await first).status).toBe('cancelled')
  })

  it('ERR_BUILD_NOT_FOUND, ERR_SERVER_EXITED and ERR_HEALTH_CHECK_FAILED for deploys', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    await expectCode(() => runner.deploy(project, deployment, build), 'ERR_BUILD_NOT_FOUND', /^Build output not found for build/)
    installBuild(buildDir, build.id)
    await expectCode(
      () => runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_ON_START: '1' } }),
      'ERR_SERVER_EXITED',
      /exited with exit code 3 before it became healthy/,
    )
    await expectCode(
      () => runner.deploy(project, deployment, build, { envVars: { FIXTURE_HEALTH_STATUS: '503' }, healthCheckTimeoutMs: 300 }),
      'ERR_HEALTH_CHECK_FAILED',
      /did not answer \/health with a 2xx status/,
    )
  })

  it('ERR_PORT_EXHAUSTED when every port of the range is taken', async () => {
    const blocker = net.createServer()
    const port = await listen(blocker, 0, '127.0.0.1')
    try {
      const { runner, buildDir } = makeRunner({ portRange: { start: port, end: port } })
      const { project, deployment, build } = entities()
      installBuild(buildDir, build.id)
      await expectCode(() => runner.deploy(project, deployment, build), 'ERR_PORT_EXHAUSTED', /^No free port in range/)
    } finally {
      await close(blocker)
    }
  })

  it('ERR_PROVIDER_FAILED when the router fails, ERR_DEPLOY_INTERRUPTED when shutdown() cuts a deploy short', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    runner.setRouter({
      type: 'x',
      registerRoute: async () => Promise.reject(new Error('no capacity')),
      removeRoute: async () => {},
      getRoute: async () => null,
    } as never)
    await expectCode(() => runner.deploy(project, deployment, build), 'ERR_PROVIDER_FAILED', /^Router failed to register a route/)

    const { runner: other, buildDir: otherDir } = makeRunner()
    installBuild(otherDir, build.id)
    const deploying = failure(() =>
      other.deploy(project, deployment, build, { envVars: { FIXTURE_HEALTH_STATUS: '503' }, healthCheckTimeoutMs: 60_000 }),
    )
    await waitFor(() => other.getStats().servers.some((s) => s.healthStatus === 'starting'))
    await other.shutdown()
    const error = await deploying
    expect(error.code).toBe('ERR_DEPLOY_INTERRUPTED')
    expect(error.message).toMatch(/stopped by shutdown\(\) before it became healthy/)
    expect(other.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  })

  it('ERR_ACCESS_DENIED and ERR_PROJECT_NOT_FOUND from LocalProjectSource', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'errors-source-'))
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'errors-outside-'))
    try {
      const source = new addon.LocalProjectSource({ basePaths: [base] })
      await expectCode(() => source.getProject('local_000000000000'), 'ERR_PROJECT_NOT_FOUND', /^Project not found/)
      await expectCode(
        () => source.getProjectPath({ id: 'x', name: 'x', type: 'local', path: outside }, path.join(base, 'copy')),
        'ERR_ACCESS_DENIED',
        /^Access denied to/,
      )
    } finally {
      fs.rmSync(base, { recursive: true, force: true })
      fs.rmSync(outside, { recursive: true, force: true })
    }
  })
})
