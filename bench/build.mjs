// Build benchmark (issues 5 and 31): builds of the real example app (examples/hello-mastra:
// npm ci of ~270 MB, then `mastra build`) through the runner, beside the same two commands run
// by hand with one npm cache, in the same run.
//
// The runner's builds, in order, on one runner and one copy of the project:
//   cold        the first build (empty caches)
//   warm        the same inputs with `cache: false`: every step runs, from a warm npm cache
//               (what every rebuild cost before the build cache)
//   unchanged   the same inputs: the output snapshot is restored
//   source x5   a one-line change of src/mastra/index.ts each: the install snapshot is restored,
//               `mastra build` runs
//   lockfile    package-lock.json changed (a trailing newline): a full install and build
// By hand: `npm ci` and `npm run build` timed apart, cold and then warm.
// Disk: the build cache after all of it, beside one build directory.
//
//   node bench/build.mjs [--json bench-results/build.json]
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
const example = path.join(root, 'examples', 'hello-mastra')
const env = { MASTRA_TELEMETRY_DISABLED: '1' }
const skipped = (src) => /node_modules|\.mastra/.test(path.relative(example, src))

/** Bytes under `dir`, as `du` counts them (blocks in use). */
function du(dir) {
  return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0])
}

async function runnerBuilds() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-build-'))
  const project = path.join(work, 'projects', 'hello-mastra')
  fs.cpSync(example, project, { recursive: true, filter: (src) => !skipped(src) })
  const buildDir = path.join(work, 'builds')
  const runner = new LocalProcessRunner({ buildDir, globalEnvVars: env, retainBuilds: 10 })
  runner.setSource(new LocalProjectSource({ basePaths: [path.dirname(project)] }))
  const entry = path.join(project, 'src', 'mastra', 'index.ts')
  const times = {}
  const lines = {}
  const logs = {}
  let n = 0
  const build = async (label, options) => {
    const started = performance.now()
    const now = new Date()
    const result = await runner.build(
      { id: 'bench', name: 'hello-mastra', sourceType: 'local', sourceConfig: { path: project }, createdAt: now },
      { id: `bench-${++n}`, status: 'queued' },
      options,
    )
    if (result.status !== 'succeeded') throw new Error(`${label} build ${result.status}: ${result.errorMessage}`)
    const seconds = (performance.now() - started) / 1000
    ;(times[label] ??= []).push(seconds)
    logs[label] = result.logs
    lines[label] = result.logs.split('\n').filter((l) => /reused the output|dependencies restored|Build succeeded/.test(l))
    return result
  }
  await build('cold')
  await build('warm', { cache: false })
  const unchanged = await build('unchanged')
  const oneBuildDir = du(path.join(buildDir, unchanged.id))
  for (let i = 1; i <= 5; i++) {
    fs.appendFileSync(entry, `\n// edit ${i}\n`)
    await build('source')
  }
  const cacheBytes = du(path.join(buildDir, '.runner', 'build-cache'))
  fs.appendFileSync(path.join(project, 'package-lock.json'), '\n')
  await build('lockfile')
  const stats = runner.getStats().buildCache
  await runner.shutdown()
  fs.rmSync(work, { recursive: true, force: true })
  return { times, lines, logs, oneBuildDir, cacheBytes, stats }
}

function byHand() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-hand-'))
  const cache = path.join(work, 'npm-cache')
  const times = {}
  for (const label of ['cold', 'warm']) {
    const dir = path.join(work, label)
    fs.cpSync(example, dir, { recursive: true, filter: (src) => !skipped(src) })
    const childEnv = { ...process.env, ...env, npm_config_cache: cache }
    let started = performance.now()
    execFileSync('npm', ['ci'], { cwd: dir, env: childEnv, stdio: 'ignore' })
    const install = (performance.now() - started) / 1000
    started = performance.now()
    execFileSync('npm', ['run', 'build'], { cwd: dir, env: { ...childEnv, NODE_ENV: 'production' }, stdio: 'ignore' })
    const buildStep = (performance.now() - started) / 1000
    times[label] = { install, build: buildStep, total: install + buildStep }
  }
  fs.rmSync(work, { recursive: true, force: true })
  return times
}

const hand = byHand()
const runner = await runnerBuilds()
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const r = Object.fromEntries(Object.entries(runner.times).map(([k, v]) => [k, median(v)]))
const fixed = (x, d = 1) => +x.toFixed(d)
// The build script's own time in the last source-change build, as its log says (whole seconds
// from 10 s up): what the cache cannot save.
const scriptLine = /Build completed successfully in ([\d.]+) s/.exec(runner.logs.source ?? '')
const sourceScript = scriptLine ? Number(scriptLine[1]) : NaN
const rows = [
  { build: 'cold', runner: r.cold, hand: hand.cold.total, goal: '' },
  { build: 'warm, every step (cache: false)', runner: r.warm, hand: hand.warm.total, goal: '' },
  {
    build: 'unchanged (output reused)',
    runner: r.unchanged,
    hand: hand.warm.total,
    goal: `≤ 2 s and ≤ 0.06× warm by hand: ${r.unchanged <= 2 && r.unchanged / hand.warm.total <= 0.06 ? 'met' : 'missed'}`,
  },
  {
    build: 'one-line source change (install restored), median of 5',
    runner: r.source,
    hand: hand.warm.build,
    goal: `≤ mastra build by hand + 3 s: ${r.source <= hand.warm.build + 3 ? 'met' : 'missed'}`,
  },
  {
    build: 'one-line source change, beside its own build script in the same run (sandboxed)',
    runner: r.source,
    hand: sourceScript,
    goal: `≤ its build script + 3 s: ${r.source <= sourceScript + 3 ? 'met' : 'missed'}`,
  },
  {
    build: 'lockfile change (full build)',
    runner: r.lockfile,
    hand: hand.warm.total,
    goal: `no slower than warm, every step (${fixed(r.warm)} s): ${r.lockfile <= r.warm * 1.1 ? 'met' : 'missed'}`,
  },
]
const disk = runner.cacheBytes / runner.oneBuildDir
const table = [
  '| build of examples/hello-mastra | runner (s) | by hand (s) | ratio | goal |',
  '| --- | ---: | ---: | ---: | --- |',
  ...rows.map((row) => `| ${row.build} | ${fixed(row.runner)} | ${fixed(row.hand)} | ${fixed(row.runner / row.hand, 2)} | ${row.goal} |`),
  '',
  `By hand: npm ci ${fixed(hand.cold.install)} s cold, ${fixed(hand.warm.install)} s warm; npm run build (mastra build) ${fixed(hand.cold.build)} s cold, ${fixed(hand.warm.build)} s warm.`,
  `Disk: the build cache after the unchanged and 5 source-change rebuilds takes ${fixed(runner.cacheBytes / 1048576)} MB, ` +
    `one build directory ${fixed(runner.oneBuildDir / 1048576)} MB: ${fixed(disk, 2)}× (goal ≤ 1.5×: ${disk <= 1.5 ? 'met' : 'missed'}).`,
  `getStats().buildCache at the end: ${JSON.stringify(runner.stats)}`,
].join('\n')
console.log(table)
const out = option('json', null)
if (out) {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ hand, runner, rows, disk }, null, 2))
}
