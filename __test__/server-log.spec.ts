// setOnServerLog delivers every line of a server from its first one (MastraAdmin's live log
// view): the startup banner printed before deploy() resolves, and the whole output of a deploy
// that fails, in order, as getLogs has it.
import { afterEach, describe, expect, it } from 'vitest'

import { entities, installBuild, makeRunner, shutdownRunners } from './helpers/runner'
import { waitFor } from './helpers/wait'

afterEach(shutdownRunners)

type Seen = { serverId: string; line: string; stream: string; id?: string }

function listen(runner: ReturnType<typeof makeRunner>['runner']): Seen[] {
  const seen: Seen[] = []
  runner.setOnServerLog((serverId, line, stream, id) => seen.push({ serverId, line, stream, id }))
  return seen
}

describe('setOnServerLog', () => {
  it('receives the lines printed before deploy() resolved, in the order getLogs has them', async () => {
    const { runner, buildDir } = makeRunner()
    const seen = listen(runner)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    const logged = (await runner.getLogs(server)).split('\n')
    expect(logged[0]).toMatch(/^listening on \d+/)
    await waitFor(() => seen.length >= logged.length, 10_000, 'every line before the deploy resolved')
    const mine = seen.filter((s) => s.serverId === server.id)
    expect(mine.map((s) => (s.stream === 'stderr' ? `[stderr] ${s.line}` : s.line))).toEqual(logged)
    expect(mine[0]).toMatchObject({ stream: 'stdout' })
    expect(mine.map((s) => Number(s.id))).toEqual([...mine.map((s) => Number(s.id))].sort((a, b) => a - b))
  })

  it('receives the whole output of a deploy that fails, under the failed server id', async () => {
    const { runner, buildDir } = makeRunner()
    const seen = listen(runner)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    await expect(
      runner.deploy(project, deployment, build, { envVars: { FIXTURE_CRASH_ON_START: '1' } }),
    ).rejects.toThrow(/fatal: cannot connect to the database/)
    await waitFor(() => seen.some((s) => s.line.includes('fatal: cannot connect')), 10_000, 'the failed output')
    const line = seen.find((s) => s.line.includes('fatal: cannot connect'))
    expect(line).toMatchObject({ stream: 'stderr' })
    expect(line?.serverId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(runner.getStats().servers.map((server) => server.id)).not.toContain(line?.serverId)
  })

  it('gets a burst of lines in batches, each with its own stream and id, as getLogsPaginated has them', async () => {
    const { runner, buildDir } = makeRunner()
    const seen = listen(runner)
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id, 'chatty')
    const server = await runner.deploy(project, deployment, build, {
      envVars: { FIXTURE_LINES: '5000', FIXTURE_CHUNK: '500' },
    })
    await waitFor(() => seen.some((s) => s.serverId === server.id && s.line === 'done printing'), 20_000, 'the last line')
    const mine = seen.filter((s) => s.serverId === server.id)
    const ids = mine.map((s) => Number(s.id))
    expect(ids).toEqual(ids.map((_, i) => ids[0] + i))
    const numbered = mine.filter((s) => /^(out|err) \d+$/.test(s.line))
    expect(numbered).toHaveLength(4999) // line 500 is a pino JSON line
    for (const s of numbered) expect(s.stream).toBe(s.line.startsWith('err') ? 'stderr' : 'stdout')
    for (const prefix of ['out ', 'err ']) {
      const numbers = numbered.filter((s) => s.line.startsWith(prefix)).map((s) => Number(s.line.slice(4)))
      expect(numbers).toEqual([...numbers].sort((a, b) => a - b))
    }
    const page = await runner.getLogsPaginated(server, { limit: 300 })
    const byId = new Map(mine.map((s) => [s.id, s]))
    for (const entry of page.entries) expect(byId.get(entry.id)).toMatchObject({ line: entry.line, stream: entry.stream })
  })

  it('a listener set while servers run gets their new lines once, and a replaced one gets none', async () => {
    const { runner, buildDir } = makeRunner()
    const { project, deployment, build } = entities()
    installBuild(buildDir, build.id)
    const server = await runner.deploy(project, deployment, build)
    const first = listen(runner)
    const second = listen(runner)
    const before = first.length
    const other = await runner.deploy(project, { ...deployment, id: `${deployment.id}-b` }, build)
    await waitFor(() => second.some((s) => s.serverId === other.id && s.line.startsWith('listening on')), 10_000, 'the second server banner')
    expect(first.length).toBe(before)
    expect(second.filter((s) => s.serverId === other.id && s.line.startsWith('listening on'))).toHaveLength(1)
    expect(server.id).not.toBe(other.id)
  })
})
