// Build benchmark (issue 5): a cold and a warm build of the real example app
// (examples/hello-mastra: npm ci of ~270 MB, then `mastra build`) through the runner, beside the
// same two commands run by hand with the same npm cache in the same run. The warm build must
// reuse the runner's cache under <buildDir>/.cache; the difference to the hand-run commands is
// the runner's own overhead (copying the source, detection, framing every log line).
//
//   node bench/build.mjs [--runs 1] [--json bench-results/build.json]
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { LocalProcessRunner, LocalProjectSource } = require(root)

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? args[at + 1] : fallback
}
const runs = Number(option('runs', 1))
const example = path.join(root, 'examples', 'hello-mastra')
const env = { MASTRA_TELEMETRY_DISABLED: '1' }

async function runnerBuilds() {
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-build-'))
  const runner = new LocalProcessRunner({ buildDir, globalEnvVars: env })
  runner.setSource(new LocalProjectSource({ basePaths: [path.dirname(example)] }))
  const times = []
  for (const label of ['cold', 'warm']) {
    const started = performance.now()
    const now = new Date()
    const build = await runner.build(
      { id: 'bench', name: 'hello-mastra', sourceType: 'local', sourceConfig: { path: example }, createdAt: now },
      { id: `bench-${label}`, status: 'queued' },
    )
    if (build.status !== 'succeeded') throw new Error(`${label} build ${build.status}: ${build.errorMessage}`)
    times.push((performance.now() - started) / 1000)
  }
  await runner.shutdown()
  fs.rmSync(buildDir, { recursive: true, force: true })
  return times
}

function byHand() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-hand-'))
  const cache = path.join(work, 'npm-cache')
  const times = []
  for (const label of ['cold', 'warm']) {
    const dir = path.join(work, label)
    fs.cpSync(example, dir, { recursive: true, filter: (src) => !/node_modules|\.mastra/.test(path.relative(example, src)) })
    const started = performance.now()
    const childEnv = { ...process.env, ...env, npm_config_cache: cache }
    execFileSync('npm', ['ci'], { cwd: dir, env: childEnv, stdio: 'ignore' })
    execFileSync('npm', ['run', 'build'], { cwd: dir, env: { ...childEnv, NODE_ENV: 'production' }, stdio: 'ignore' })
    times.push((performance.now() - started) / 1000)
  }
  fs.rmSync(work, { recursive: true, force: true })
  return times
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const samples = { runner: { cold: [], warm: [] }, hand: { cold: [], warm: [] } }
for (let i = 0; i < runs; i++) {
  const [handCold, handWarm] = byHand()
  samples.hand.cold.push(handCold)
  samples.hand.warm.push(handWarm)
  const [runnerCold, runnerWarm] = await runnerBuilds()
  samples.runner.cold.push(runnerCold)
  samples.runner.warm.push(runnerWarm)
}
const rows = ['cold', 'warm'].map((kind) => {
  const runner = median(samples.runner[kind])
  const hand = median(samples.hand[kind])
  return { kind, runs, runnerSeconds: +runner.toFixed(1), byHandSeconds: +hand.toFixed(1), overheadSeconds: +(runner - hand).toFixed(1), ratio: +(runner / hand).toFixed(2) }
})
const table = [
  '| build of examples/hello-mastra | runs | runner (s, median) | npm ci + npm run build by hand (s, median) | runner overhead (s) | ratio |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.kind} | ${r.runs} | ${r.runnerSeconds} | ${r.byHandSeconds} | ${r.overheadSeconds} | ${r.ratio} |`),
].join('\n')
console.log(table)
const out = option('json', null)
if (out) {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ rows, samples }, null, 2))
}
