// End to end with data: the real example app examples/memory-mastra (an agent whose Memory is
// stored by @mastra/libsql in `file:../mastra.db`, relative to the server's working directory) is
// installed with npm, built with `mastra build` and deployed; a memory thread created over
// Mastra's HTTP API (no model call, no API key) must still be there after the deployment is
// redeployed from the same build, twice, and after it is deployed from a new build of the
// project. A deployment's data lives in a directory of its own (<buildDir>/.data/<deploymentId>/,
// given to the server as MASTRA_DATA_DIR), not in the copy of a build (README, "Data"); during
// each redeploy's drain two servers have the database open (LibSQL in WAL mode).
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import type { Build, RunningServer } from '../index'
import { addon, packageRoot } from './helpers/addon'
import { alive, buildExample, entities, exampleRunner, listening } from './helpers/runner'

const example = path.join(packageRoot, 'examples', 'memory-mastra')
const agentId = 'notes-agent'
const resourceId = 'user-ada'
// Two builds (their node_modules, their output's node_modules and npm's cache) take a while to
// remove from a busy disk: over the default minute on a loaded CI machine.
const { runner } = exampleRunner('runner-memory-e2e-', { start: 9420, end: 9430 }, 180_000)

interface Thread {
  id: string
  resourceId: string
  title?: string
}

/** Creates a memory thread of the agent: `POST /api/memory/threads?agentId=` (no model call). */
async function createThread(server: RunningServer, title: string): Promise<Thread> {
  const response = await fetch(`http://127.0.0.1:${server.port}/api/memory/threads?agentId=${agentId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resourceId, title }),
  })
  expect(response.status).toBe(200)
  return (await response.json()) as Thread
}

/** `GET /api/memory/threads/:id?agentId=`: the status and the thread (or the error body). */
async function readThread(server: RunningServer, threadId: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${server.port}/api/memory/threads/${threadId}?agentId=${agentId}`)
  return { status: response.status, body: await response.json() }
}

/** The ids of the resource's threads: `GET /api/memory/threads?agentId=&resourceId=`. */
async function threadIds(server: RunningServer): Promise<string[]> {
  const response = await fetch(`http://127.0.0.1:${server.port}/api/memory/threads?agentId=${agentId}&resourceId=${resourceId}`)
  expect(response.status).toBe(200)
  return ((await response.json()) as { threads: Thread[] }).threads.map((thread) => thread.id)
}

describe('examples/memory-mastra', () => {
  runner.setSource(new addon.LocalProjectSource({ basePaths: [path.dirname(example)] }))
  const { project, deployment, build } = entities()
  project.name = 'memory-mastra'
  project.slug = 'memory-mastra'
  project.sourceConfig = { path: example }
  // Filled in by the first case and used by the later ones, which run in order.
  let built: Build | undefined
  let server: RunningServer | undefined
  let thread: Thread | undefined

  it('builds with the real mastra CLI, creates a memory thread over HTTP and reads it back', async () => {
    built = await buildExample(runner, project, build)
    server = await runner.deploy(project, deployment, built)
    expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200)

    thread = await createThread(server, 'Shopping list')
    expect(thread).toMatchObject({ resourceId, title: 'Shopping list' })
    expect(thread.id).toEqual(expect.any(String))
    expect(await readThread(server, thread.id)).toEqual({
      status: 200,
      body: expect.objectContaining({ id: thread.id, resourceId, title: 'Shopping list' }),
    })
    expect(await threadIds(server)).toEqual([thread.id])
    // A thread that was never created is a 404, so the reads below tell "lost" from "kept".
    expect((await readThread(server, 'no-such-thread')).status).toBe(404)
  }, 480_000)

  for (const round of [1, 2]) {
    it(`keeps the thread when the same build is redeployed (redeploy ${round} of 2)`, async () => {
      expect(built && server && thread).toBeTruthy()
      const previous = server!
      server = await runner.deploy(project, deployment, built!)
      expect(server.id).not.toBe(previous.id)
      expect(server.buildId).toBe(built!.id)

      expect(await readThread(server, thread!.id)).toEqual({
        status: 200,
        body: expect.objectContaining({ id: thread!.id, resourceId, title: 'Shopping list' }),
      })
      expect(await threadIds(server)).toEqual([thread!.id])
    }, 120_000)
  }

  it('keeps the thread when a new build of the project is deployed to the deployment', async () => {
    expect(built && server && thread).toBeTruthy()
    const now = new Date()
    const rebuild: Build = { ...build, id: `${build.id}-rebuilt`, queuedAt: now, startedAt: now, completedAt: now, logs: '' }
    // The same inputs: the build cache restores the first build's output into the new build's
    // own directory (a real Mastra app's 26 000 files), and the server runs from there.
    const rebuilt = await buildExample(runner, project, rebuild, built!.id)
    expect(rebuilt.id).not.toBe(built!.id)
    const previous = server!
    server = await runner.deploy(project, deployment, rebuilt)
    expect(server.id).not.toBe(previous.id)
    expect(server.buildId).toBe(rebuilt.id)

    expect(await readThread(server, thread!.id)).toEqual({
      status: 200,
      body: expect.objectContaining({ id: thread!.id, resourceId, title: 'Shopping list' }),
    })
    expect(await threadIds(server)).toEqual([thread!.id])
    // The build's own files are read through the data view: the studio's page and assets,
    // which the server finds from its working directory.
    const studio = await fetch(`http://127.0.0.1:${server.port}/`)
    expect(studio.status).toBe(200)
    expect(await studio.text()).toMatch(/<html/i)
  }, 480_000)

  it('stops every server of the deployment, leaving no process and no port', async () => {
    expect(server).toBeTruthy()
    // Stopping the deployment's current server stops the ones its redeploys replaced too.
    await runner.stop(server!)
    expect(alive(server!.processId!)).toBe(false)
    expect(await listening(server!.port)).toBe(false)
    expect(runner.getStats()).toMatchObject({ runningProcesses: 0, allocatedPorts: [] })
  }, 60_000)
})
