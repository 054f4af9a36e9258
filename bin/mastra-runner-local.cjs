#!/usr/bin/env node
// Command line for @mastra/runner-local: build a Mastra project from a directory and run it,
// the way MastraAdmin drives the runner, with the build log and the server log on the terminal.
'use strict'

const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { LocalProcessRunner, LocalProjectSource } = require('..')

const USAGE = `Usage: mastra-runner-local <command> [options]

Commands:
  up <dir>        Build the Mastra project in <dir> (e.g. '.'), deploy it, print its URL and
                  stream its log until Ctrl-C, which stops the server cleanly (exit status 130;
                  143 on SIGTERM). When the server dies, says so and exits 1 (or, with
                  --restart, has it restarted). The build directory is removed on exit.
  build <dir>     Build the Mastra project in <dir> and print where its output is.
  config [JSON]   Print the resolved runner configuration. JSON is an optional
                  LocalProcessRunnerConfig, e.g. '{"portRange":{"start":5000,"end":5010}}'.
  --help          Show this text.

Options (up, build):
  --port <n>        Port to serve on, or the next free one after it (default: from 4111).
  --build-dir <d>   Where builds go (default: $XDG_STATE_HOME/mastra-runner-local/builds,
                    i.e. ~/.local/state/mastra-runner-local/builds).
  --timeout <s>     Build timeout in seconds (default: 600).
  --env KEY=VALUE   A variable for the build and the server (repeatable). The host's own
                    variables do not reach them, apart from PATH, HOME, locale, proxy and
                    npm_config_* ones.
  --restart         (up) Restart the server when it exits, up to 10 times in a row, waiting
                    1 s, doubling up to 30 s (the runner's restartPolicy).
  --keep            (up) Keep the build directory on exit (with --watch, every build's).
  --watch           (up) Rebuild when a file of the project changes (node_modules, .git,
                    .mastra, dist, build and the like are not watched) and replace the
                    server without downtime; prints the time from the change to serving.
                    A failed rebuild leaves the running server up and says why.
  --no-sandbox      Run the build and the server without the sandbox (they then reach
                    everything the user running this command can; see the README's
                    Isolation).

Environment:
  XDG_STATE_HOME      Base of the state directory (default: ~/.local/state).
  MASTRA_RUNNER_LOG   Diagnostics level: off, error, warn (default), info, debug, trace.`

/** Options that take no value. */
const FLAGS = new Set(['restart', 'keep', 'no-sandbox', 'watch'])
/** Exit statuses after a signal: 128 + its number, as shells report them. */
const SIGNAL_STATUS = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 }
/** A line every this many seconds while a build step prints nothing. */
const HEARTBEAT_S = 10
/** `retainBuilds` of `up --watch --keep`: every build is kept. */
const MAX_RETAINED_BUILDS = 2 ** 32 - 1
/** How long `up --watch` gathers the change events of one batch before it rebuilds, in ms. */
const CHANGE_BATCH_MS = 50
/** How often `up --watch` tries again to remove a replaced build while its server drains, in ms. */
const DISCARD_RETRY_MS = 250

/** Splits argv into the command, positional arguments and --options. */
function parseArgs(argv) {
  const [command, ...rest] = argv
  const positional = []
  const options = {}
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    if (arg.startsWith('--')) {
      const name = arg.slice(2)
      if (FLAGS.has(name)) {
        options[name] = true
        continue
      }
      const value = rest[i + 1]
      if (value === undefined || value.startsWith('--')) throw new UsageError(`option --${name} needs a value`)
      if (name === 'env') (options.env ??= []).push(value)
      else options[name] = value
      i++
    } else {
      positional.push(arg)
    }
  }
  return { command, positional, options }
}

class UsageError extends Error {}

function wholeNumber(options, name) {
  if (options[name] === undefined) return undefined
  const value = Number(options[name])
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`--${name} must be a positive whole number`)
  return value
}

/** `$XDG_STATE_HOME/mastra-runner-local` (an absolute XDG_STATE_HOME), else `~/.local/state/…`. */
function stateDir() {
  const xdg = process.env.XDG_STATE_HOME
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'state')
  return path.join(base, 'mastra-runner-local')
}

/** The entities MastraAdmin would pass, made up for a project directory. */
function entitiesFor(dir) {
  const now = new Date()
  const slug = path.basename(dir).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'project'
  const project = {
    id: `cli-${slug}`.slice(0, 100),
    teamId: 'local',
    name: path.basename(dir),
    slug,
    sourceType: 'local',
    sourceConfig: { path: dir },
    defaultBranch: 'main',
    envVars: [],
    createdAt: now,
    updatedAt: now,
  }
  const deployment = {
    id: `cli-${slug}-production`.slice(0, 100),
    projectId: project.id,
    type: 'production',
    branch: 'main',
    slug,
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
  return { project, deployment, build: buildFor(deployment, now) }
}

/** A new queued build of `deployment`, with an id of its own (time and pid). */
function buildFor(deployment, now = new Date()) {
  return {
    id: `cli-${now.getTime().toString(36)}-${process.pid}`,
    deploymentId: deployment.id,
    trigger: 'manual',
    triggeredBy: 'cli',
    commitSha: 'local',
    commitMessage: null,
    status: 'queued',
    logs: '',
    queuedAt: now,
    startedAt: null,
    completedAt: null,
    errorMessage: null,
  }
}

function projectDir(positional, command) {
  if (positional.length !== 1) throw new UsageError(`${command} needs exactly one project directory`)
  const dir = path.resolve(positional[0])
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    throw new UsageError(`${dir} has no package.json: is it a Mastra project?`)
  }
  return dir
}

function makeRunner(options, extra = {}) {
  const port = wholeNumber(options, 'port')
  if (port !== undefined && port > 65535) throw new UsageError('--port must be at most 65535')
  const globalEnvVars = {}
  for (const pair of options.env ?? []) {
    const at = pair.indexOf('=')
    if (at <= 0) throw new UsageError(`--env needs KEY=VALUE, got '${pair}'`)
    globalEnvVars[pair.slice(0, at)] = pair.slice(at + 1)
  }
  return new LocalProcessRunner({
    defaultSource: 'local',
    globalEnvVars,
    // Never inside the project: the source is copied into the build directory.
    buildDir: options['build-dir'] ?? path.join(stateDir(), 'builds'),
    defaultBuildTimeoutMs: (wholeNumber(options, 'timeout') ?? 600) * 1000,
    // --port starts the range, so that port is used when free and the next ones otherwise.
    portRange: port === undefined ? undefined : { start: port, end: Math.min(port + 99, 65535) },
    ...(options['no-sandbox'] ? { sandbox: false } : {}),
    ...extra,
  })
}

// ---------------------------------------------------------------------------------------------
// One `up` per project: a lock file in the state directory with the pid and URL
// ---------------------------------------------------------------------------------------------

/** Start time of process `pid` (from /proc), or null when it is gone or a zombie. */
function processStart(pid) {
  if (process.platform !== 'linux') {
    try {
      process.kill(pid, 0)
      return 'alive'
    } catch (error) {
      return error.code === 'EPERM' ? 'alive' : null
    }
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[0] === 'Z' || fields[0] === 'X' ? null : fields[19]
  } catch {
    return null
  }
}

class AlreadyServing extends Error {}

class ProjectLock {
  constructor(dir) {
    const real = fs.realpathSync(dir)
    const hash = crypto.createHash('sha256').update(real).digest('hex').slice(0, 16)
    this.file = path.join(stateDir(), 'up', `${hash}.json`)
    this.record = { pid: process.pid, start: processStart(process.pid), dir: real, url: null, startedAt: new Date().toISOString() }
  }

  /** Takes the lock, or throws AlreadyServing when a live `up` holds it. */
  acquire() {
    fs.mkdirSync(path.dirname(this.file), { recursive: true })
    for (let attempt = 0; attempt < 5; attempt++) {
      // Written whole, then linked into place: a reader never sees half a record.
      const temp = `${this.file}.${process.pid}.tmp`
      fs.writeFileSync(temp, JSON.stringify(this.record))
      try {
        fs.linkSync(temp, this.file)
        return
      } catch (error) {
        if (error.code !== 'EEXIST') throw error
      } finally {
        fs.rmSync(temp, { force: true })
      }
      let other = null
      try {
        other = JSON.parse(fs.readFileSync(this.file, 'utf8'))
      } catch {
        // Unreadable: a stale leftover.
      }
      if (other && Number.isInteger(other.pid) && other.pid !== process.pid && processStart(other.pid) !== null && processStart(other.pid) === other.start) {
        const what = other.url ? `served at ${other.url}` : 'being built'
        throw new AlreadyServing(
          `${this.record.dir} is already ${what} by another mastra-runner-local up (pid ${other.pid}, since ${other.startedAt}).\n` +
            `A second up does not replace it: each up is a host of its own with its own runner, and a server is\n` +
            `replaced without downtime only by a redeploy inside the host that runs it (redeploy: 'replace').\n` +
            `Use that one, or stop it first (Ctrl-C in its terminal, or: kill ${other.pid}) and run up again.`,
        )
      }
      fs.rmSync(this.file, { force: true })
    }
    throw new Error(`could not take the lock ${this.file}`)
  }

  /** Records the URL being served. */
  update(url) {
    this.record.url = url
    const temp = `${this.file}.${process.pid}.tmp`
    fs.writeFileSync(temp, JSON.stringify(this.record))
    fs.renameSync(temp, this.file)
  }

  /** Removes the lock file if it is still this process's. */
  release() {
    try {
      if (JSON.parse(fs.readFileSync(this.file, 'utf8')).pid === process.pid) fs.rmSync(this.file, { force: true })
    } catch {
      // Already gone.
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Build with a heartbeat
// ---------------------------------------------------------------------------------------------

/** What a build log line says the build is doing now, or undefined when it says nothing. */
function stepOf(line) {
  const step = /^\[runner\] (Installing dependencies|Running build script)\.\.\. \((.+)\)$/.exec(line)
  if (step) return `${step[1] === 'Installing dependencies' ? 'installing' : 'building'} (${step[2]})`
  if (/^\[runner\] (Dependencies installed|Build completed|No build script found)/.test(line)) return 'working'
  return undefined
}

/** Prints `… still <step>, N s` after every HEARTBEAT_S seconds without output. */
function heartbeat() {
  let lastOutput = Date.now()
  let beats = 0
  let step = 'working'
  let stepStarted = Date.now()
  const timer = setInterval(() => {
    const silent = (Date.now() - lastOutput) / 1000
    if (Math.floor(silent / HEARTBEAT_S) > beats) {
      beats += 1
      console.log(`  … still ${step}, ${Math.round((Date.now() - stepStarted) / 1000)} s`)
    }
  }, 250)
  return {
    line(line) {
      lastOutput = Date.now()
      beats = 0
      const next = stepOf(line)
      if (next !== undefined) {
        step = next
        stepStarted = Date.now()
      }
    },
    step(name) {
      lastOutput = Date.now()
      beats = 0
      step = name
      stepStarted = Date.now()
    },
    stop: () => clearInterval(timer),
  }
}

/** Builds `build` of `project` with its log on the terminal; resolves the finished build. */
function runBuild(runner, dir, project, build, pulse) {
  console.log(`Building ${dir} in ${path.join(runner.getConfig().buildDir, build.id)}`)
  return runner.build(project, build, {}, (line) => {
    pulse?.line(line)
    console.log(`  ${line}`)
  })
}

async function build(runner, dir, entities, pulse) {
  const { project, deployment, build } = entities
  const result = await runBuild(runner, dir, project, build, pulse)
  if (result.status !== 'succeeded') {
    console.error(`Build ${result.status}: ${result.errorMessage}`)
    return null
  }
  return { project, deployment, build: result }
}

// ---------------------------------------------------------------------------------------------
// up
// ---------------------------------------------------------------------------------------------

async function up(dir, options) {
  const lock = new ProjectLock(dir)
  lock.acquire()
  let runner
  try {
    runner = makeRunner(options, {
      ...(options.restart ? { restartPolicy: {} } : {}),
      // --keep keeps every build of a --watch run, not only the runner's newest three.
      ...(options.watch && options.keep ? { retainBuilds: MAX_RETAINED_BUILDS } : {}),
    })
  } catch (error) {
    lock.release()
    throw error
  }
  const entities = entitiesFor(dir)
  const buildDirOf = (buildId) => path.join(runner.getConfig().buildDir, buildId)
  /** The builds whose directories this run made and has not removed yet. */
  const buildIds = new Set([entities.build.id])
  let servingBuildId = entities.build.id
  let pulse = heartbeat()
  let server = null
  let building = null
  let rebuilding = false
  let finishing = null
  let unsubscribe = () => {}
  let watcher = null
  let stopWatching = () => {}

  /**
   * Stops everything, removes the build directories (unless --keep) and the lock, and exits
   * with `code`, once, whoever asks first.
   */
  const finish = (code, { message, signal } = {}) => {
    if (finishing) return finishing
    finishing = (async () => {
      pulse.stop()
      clearInterval(watcher)
      stopWatching()
      unsubscribe()
      if (message) console.log(message)
      try {
        await runner.shutdown()
        // A cancelled build resolves once its processes are gone; its directory can go then.
        if (building) await Promise.race([building.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000))])
        for (const buildId of buildIds) {
          const buildDir = buildDirOf(buildId)
          if (options.keep) {
            console.log(`Build directory kept (--keep): ${buildDir}`)
          } else if (fs.existsSync(buildDir)) {
            await runner.removeBuild(buildId).then(
              () => console.log(`Removed the build directory ${buildDir}`),
              (error) => console.error(`mastra-runner-local: could not remove ${buildDir}: ${error.message}`),
            )
          }
        }
        if (signal) console.log('Stopped. No process left behind.')
      } catch (error) {
        console.error(`mastra-runner-local: stopping failed: ${error.message}`)
        code = code || 1
      } finally {
        lock.release()
      }
      process.exit(code)
    })()
    return finishing
  }

  let signalled = false
  for (const signal of Object.keys(SIGNAL_STATUS)) {
    process.on(signal, () => {
      if (signalled) {
        console.log(`\n${signal} again: exiting at once (the runner kills its processes on the way out).`)
        lock.release()
        process.exit(SIGNAL_STATUS[signal])
      }
      signalled = true
      const what = server ? ` the server on port ${server.port}${rebuilding ? ' and the rebuild' : ''}` : ' the build'
      finish(SIGNAL_STATUS[signal], { signal, message: `\n${signal}: stopping${what}…` })
    })
  }

  /** Streams the log of `next` (its earlier lines first) instead of the previous server's, and watches it. */
  const follow = async (next) => {
    unsubscribe()
    clearInterval(watcher)
    const earlier = await runner.getLogs(next)
    if (finishing) return
    if (earlier) process.stdout.write(`${earlier}\n`)
    unsubscribe = runner.streamLogs(next, (line) => console.log(line))
    // Its interval keeps Node alive until a signal or the server's death ends the run.
    watcher = watch(runner, next, entities.project.name, finish, { waitForChange: Boolean(options.watch) })
  }

  /**
   * Removes the directory of a build this run no longer needs (unless --keep), once no server
   * runs from it: a server a redeploy replaced keeps its directory while it drains.
   */
  const discard = async (buildId) => {
    if (options.keep) return
    while (!finishing) {
      try {
        await runner.removeBuild(buildId)
        buildIds.delete(buildId)
        return
      } catch (error) {
        if (error.code !== 'ERR_BUILD_IN_USE') {
          console.error(`mastra-runner-local: could not remove ${buildDirOf(buildId)}: ${error.message}`)
          return
        }
      }
      await new Promise((resolve) => setTimeout(resolve, DISCARD_RETRY_MS))
    }
  }

  /**
   * Builds the project again and replaces the server with the new build without downtime (the
   * runner's redeploy drains the old server). A failed build or deploy leaves the server up.
   */
  const rebuild = async (change) => {
    const [first] = change.paths
    const more = change.paths.size > 1 ? ` and ${change.paths.size - 1} more` : ''
    console.log(`\nChanged: ${first}${more}; rebuilding…`)
    const next = buildFor(entities.deployment)
    buildIds.add(next.id)
    rebuilding = true
    pulse = heartbeat()
    let failure = null
    let replacement = null
    try {
      building = runBuild(runner, dir, entities.project, next, pulse)
      const built = await building
      if (built.status !== 'succeeded') {
        failure = built.errorMessage ?? `build ${built.status}`
      } else if (!finishing) {
        pulse.step('starting the new server')
        replacement = await runner.deploy(entities.project, entities.deployment, built, { port: wholeNumber(options, 'port') })
      }
    } catch (error) {
      failure = error.message
    } finally {
      pulse.stop()
      rebuilding = false
    }
    if (finishing) return
    if (failure) {
      console.error(`\nRebuild failed: ${firstLines(failure)}; still serving the previous build at ${urlOf(server)}`)
      discard(next.id)
      return
    }
    const replacedBuildId = servingBuildId
    server = replacement
    servingBuildId = next.id
    const url = urlOf(server)
    const seconds = ((Date.now() - change.since.getTime()) / 1000).toFixed(1)
    console.log(`\nRebuilt and serving in ${seconds} s (change to serving): ${url}`)
    lock.update(url)
    await follow(server)
    discard(replacedBuildId)
  }

  try {
    building = build(runner, dir, entities, pulse)
    const built = await building
    if (finishing) return finishing
    if (!built) return finish(1, { message: options.keep ? undefined : '(--keep keeps the build directory for a look.)' })

    pulse.step('starting the server')
    try {
      server = await runner.deploy(built.project, built.deployment, built.build, { port: wholeNumber(options, 'port') })
    } catch (error) {
      if (finishing) return finishing
      console.error(`\nmastra-runner-local: the server did not start: ${error.message}`)
      return finish(1)
    }
    pulse.stop()
    if (finishing) return finishing
    const url = urlOf(server)
    lock.update(url)
    console.log(`\nServing ${built.project.name} at ${url}  (API: ${url}/api, health: ${url}/health; pid ${server.processId})`)
    const restarts = options.restart ? ' The server is restarted when it exits (--restart).' : ''
    const watching = options.watch ? ' Changes to the project rebuild it (--watch).' : ''
    console.log(`Server log follows; press Ctrl-C to stop.${restarts}${watching}\n`)
    await follow(server)
    if (options.watch && !finishing) stopWatching = rebuildOnChange(dir, [stateDir(), runner.getConfig().buildDir], rebuild)
    return new Promise(() => {})
  } catch (error) {
    console.error(`mastra-runner-local: ${error.message}`)
    return finish(1)
  }
}

/** The URL a server answers at. */
function urlOf(server) {
  return `http://${server.host}:${server.port}`
}

/** The first lines of a message, on one line. */
function firstLines(message, count = 3) {
  return message
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(0, count)
    .join(' / ')
}

/**
 * Watches the project in `dir` with the local source's watcher (which skips node_modules, .git,
 * .mastra, dist, build and the like, and the top directory of each of `ownDirs` that lies inside
 * the project) and calls `rebuild({ since, paths })` after changes: `since` is when the first
 * of them was seen, `paths` the Set of files that changed. Changes seen during a rebuild queue one more rebuild after it, however many
 * they are. Returns the function that stops watching.
 */
function rebuildOnChange(dir, ownDirs, rebuild) {
  const exclude = ownDirs
    .map((own) => path.relative(dir, own).split(path.sep)[0])
    .filter((top) => top && top !== '..' && !path.isAbsolute(top))
  const source = new LocalProjectSource({ basePaths: [path.dirname(dir)], exclude, watchChanges: true })
  let pending = null
  let busy = false
  let stopped = false
  const drain = async () => {
    while (pending && !stopped) {
      const change = pending
      pending = null
      try {
        await rebuild(change)
      } catch (error) {
        console.error(`mastra-runner-local: rebuild failed: ${error.message}`)
      }
    }
    busy = false
  }
  const stop = source.watchChanges({ id: 'cli-watch', name: path.basename(dir), type: 'local', path: dir }, (event) => {
    pending ??= { since: event.timestamp, paths: new Set() }
    pending.paths.add(event.path)
    if (busy) return
    busy = true
    // The events of one batch arrive one by one: start once all of them are in.
    setTimeout(drain, CHANGE_BATCH_MS)
  })
  return () => {
    stopped = true
    stop()
  }
}

/** The exit status in the last `process exited with …` line of a log, or null. */
function exitStatusIn(log) {
  const lines = [...log.matchAll(/process exited with ([^\n]+)/g)]
  return lines.length > 0 ? lines[lines.length - 1][1].trim() : null
}

/**
 * Watches the server. When its process is gone for good (no restart policy; or the runner
 * gave up restarting, or none came back within the longest backoff and 15 s), prints that
 * prominently with the exit status and the last lines of its log and exits 1. With a restart
 * policy every exit and every comeback is announced. Returns the interval.
 */
function watch(runner, server, name, finish, { waitForChange = false } = {}) {
  const policy = runner.getConfig().restartPolicy
  let waiting = false
  let lastPid = server.processId
  // 'up', 'down' (no process), 'restarting' (a new process, not yet healthy)
  let state = 'up'
  let downSince = null
  let announced = false
  const check = async () => {
    const summary = runner.getStats().servers.find((s) => s.id === server.id)
    const current = summary?.processId ?? null
    if (current !== null) {
      if (state === 'down') state = 'restarting'
      if (state === 'restarting' && summary.healthStatus !== 'starting') {
        const unhealthy = summary.healthStatus === 'healthy' ? '' : ', but its health check fails'
        console.error(`\n>>> The server is running again (pid ${current}, restart ${summary.restarts})${unhealthy}.\n`)
        state = 'up'
      }
      lastPid = current
      return
    }
    if (state !== 'down') {
      state = 'down'
      downSince = Date.now()
      announced = false
    }
    const log = await runner.getLogs(server, { tail: 20 })
    // The runner writes the exit line as it notices the exit; give it a moment. Only lines
    // from around this exit count (an earlier exit's line may still be in the tail).
    const recent = await runner.getLogs(server, { since: new Date(downSince - 500) })
    const status = exitStatusIn(recent) ?? (Date.now() - downSince < 1000 ? undefined : 'an unknown status')
    if (status === undefined) return
    const gaveUp = /restart limit reached|restart failed|stays down/.test(log)
    if (policy && !gaveUp && Date.now() - downSince < policy.maxBackoffMs + 15_000) {
      if (!announced) console.error(`\n>>> The server exited with ${status} (pid ${lastPid}); the runner restarts it (--restart).\n`)
      announced = true
      return
    }
    if (waiting) return
    if (!waitForChange) clearInterval(interval)
    const banner = '!'.repeat(78)
    console.error(
      `\n${banner}\n!!! The server of ${name} exited with ${status} (pid ${lastPid})` +
        `${policy ? ' and the runner gave up restarting it' : ''}. The last lines of its log:\n` +
        log.split('\n').map((line) => `!!!   ${line}`).join('\n') +
        `\n${banner}`,
    )
    if (waitForChange) {
      // As nodemon does: the next change rebuilds and deploys it again. The interval keeps
      // Node alive meanwhile.
      waiting = true
      console.error('>>> Waiting for a change to the project to rebuild it (--watch); Ctrl-C stops.\n')
      return
    }
    finish(1, { message: `mastra-runner-local: the server is down; exiting with status 1.${policy ? '' : ' (With --restart the runner restarts it.)'}` })
  }
  let running = false
  const interval = setInterval(() => {
    if (running) return
    running = true
    check().finally(() => (running = false))
  }, 200)
  return interval
}

async function buildOnly(dir, options) {
  const runner = makeRunner(options)
  try {
    const built = await build(runner, dir, entitiesFor(dir))
    if (!built) return 1
    console.log(`Build ${built.build.id} succeeded: ${path.join(runner.getConfig().buildDir, built.build.id, '.mastra', 'output')}`)
    return 0
  } finally {
    await runner.shutdown()
  }
}

async function main(argv) {
  const { command, positional, options } = parseArgs(argv)
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(USAGE)
      return 0
    case 'config': {
      let config
      if (positional[0] !== undefined) {
        try {
          config = JSON.parse(positional[0])
        } catch (error) {
          throw new UsageError(`the config argument is not JSON (${error.message})`)
        }
      }
      console.log(JSON.stringify(new LocalProcessRunner(config).getConfig(), null, 2))
      return 0
    }
    case 'up':
      return up(projectDir(positional, 'up'), options)
    case 'build':
      return buildOnly(projectDir(positional, 'build'), options)
    default:
      throw new UsageError(`unknown command '${command}'`)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code
  },
  (error) => {
    if (error instanceof UsageError) {
      console.error(`mastra-runner-local: ${error.message}\n\n${USAGE}`)
      process.exitCode = 2
    } else {
      console.error(`mastra-runner-local: ${error.message}`)
      process.exitCode = 1
    }
  },
)
