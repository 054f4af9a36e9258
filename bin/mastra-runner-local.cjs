#!/usr/bin/env node
// Command line for @mastra/runner-local. Commands grow with the runner: today `config` shows the
// configuration a runner resolves to (every default applied), which proves the addon loads.
'use strict'

const { LocalProcessRunner } = require('..')

const USAGE = `Usage: mastra-runner-local <command> [options]

Commands:
  config [JSON]   Print the resolved runner configuration. JSON is an optional
                  LocalProcessRunnerConfig, e.g. '{"portRange":{"start":5000,"end":5010}}'.
  --help          Show this text.

Environment:
  MASTRA_RUNNER_LOG   Diagnostics level: off, error, warn (default), info, debug, trace.`

function main(argv) {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE)
    return 0
  }
  if (command === 'config') {
    let config
    if (rest[0] !== undefined) {
      try {
        config = JSON.parse(rest[0])
      } catch (error) {
        console.error(`mastra-runner-local: the config argument is not JSON (${error.message})`)
        return 2
      }
    }
    const runner = new LocalProcessRunner(config)
    console.log(JSON.stringify(runner.getConfig(), null, 2))
    return 0
  }
  console.error(`mastra-runner-local: unknown command '${command}'\n\n${USAGE}`)
  return 2
}

try {
  process.exitCode = main(process.argv.slice(2))
} catch (error) {
  console.error(`mastra-runner-local: ${error.message}`)
  process.exitCode = 1
}
