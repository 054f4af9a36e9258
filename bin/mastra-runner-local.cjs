#!/usr/bin/env node
// Command line for @mastra/runner-local: build a Mastra project from a directory and run it,
// the way MastraAdmin drives the runner, with the build log and the server log on the terminal.
'use strict'

const fs = require('node:fs')
const path = require('node:path')

const { LocalProcessRunner } = require('..')

const USAGE = `Usage: mastra-runner-local <command> [options]

Commands:
  up <dir>        Build the Mastra project in <dir>, deploy it, print its URL and stream its
                  logs until Ctrl-C, which stops the server cleanly.
  build <dir>     Build the Mastra project in <dir> and print where its output is.
  config [JSON]   Print the resolved runner configuration. JSON is an optional
                  LocalProcessRunnerConfig, e.g. '{"portRange":{"start":5000,"end":5010}}'.
  --help          Show this text.

Options (up, build):
  --port <n>        Port to serve on, or the next free one after it (default: from 4111).
  --build-dir <d>   Where builds go (default: .mastra/builds under the current directory).
  --timeout <s>     Build timeout in seconds (default: 600).
  --env KEY=VALUE   A variable for the build and the server (repeatable). The host's own
                    variables do not reach them, apart from PATH, HOME, locale, proxy and
                    npm_config_* ones.

Environment:
  MASTRA_RUNNER_LOG   Diagnostics level: off, error, warn (default), info, debug, trace.`

/** Splits argv into the command, positional arguments and --options. */
function parseArgs(argv) {
  const [command, ...rest] = argv
  const positional = []
  const options = {}
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    if (arg.startsWith('--')) {
      const name = arg.slice(2)
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

/** The entities MastraAdmin would pass, made up for a project directory. */
function entitiesFor(dir) {
  const now = new Date()
  const slug = path.basename(dir).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'project'
  const stamp = now.getTime().toString(36)
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
  const build = {
    id: `cli-${stamp}`,
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
  return { project, deployment, build }
}

function projectDir(positional, command) {
  if (positional.length !== 1) throw new UsageError(`${command} needs exactly one project directory`)
  const dir = path.resolve(positional[0])
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    throw new UsageError(`${dir} has no package.json: is it a Mastra project?`)
  }
  return dir
}

function makeRunner(options) {
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
    buildDir: options['build-dir'],
    defaultBuildTimeoutMs: (wholeNumber(options, 'timeout') ?? 600) * 1000,
    // --port starts the range, so that port is used when free and the next ones otherwise.
    portRange: port === undefined ? undefined : { start: port, end: Math.min(port + 99, 65535) },
  })
}

async function build(runner, dir) {
  const { project, deployment, build } = entitiesFor(dir)
  console.log(`Building ${dir}`)
  const result = await runner.build(project, build, {}, (line) => console.log(`  ${line}`))
  if (result.status !== 'succeeded') {
    console.error(`Build ${result.status}: ${result.errorMessage}`)
    return null
  }
  return { project, deployment, build: result }
}

async function up(dir, options) {
  const runner = makeRunner(options)
  let server = null
  let stopping = null
  const stop = (signal) => {
    if (!stopping) {
      console.log(`\n${signal}: stopping${server ? ` the server on port ${server.port}` : ''}…`)
      stopping = runner.shutdown().then(() => {
        console.log('Stopped. No process left behind.')
        process.exit(0)
      })
    }
    return stopping
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  const built = await build(runner, dir)
  if (!built) {
    await runner.shutdown()
    return 1
  }
  server = await runner.deploy(built.project, built.deployment, built.build, { port: wholeNumber(options, 'port') })
  const url = `http://${server.host}:${server.port}`
  console.log(`\nServing ${built.project.name} at ${url}  (API: ${url}/api, health: ${url}/health; pid ${server.processId})`)
  console.log('Server log follows; press Ctrl-C to stop.\n')
  process.stdout.write(`${await runner.getLogs(server)}\n`)
  runner.streamLogs(server, (line) => console.log(line))
  // Keep the process alive until a signal arrives; the runner's callbacks do not.
  setInterval(() => {}, 1 << 30)
  return undefined
}

async function buildOnly(dir, options) {
  const runner = makeRunner(options)
  try {
    const built = await build(runner, dir)
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
