// Benchmark: copying a project for a build with LocalProjectSource.getProjectPath versus
// `tar -cf - | tar -xf -` with the same excludes, measured in the same run.
//
// The project has 20 000 small source files in 200 directories and a 200 MB node_modules
// (skipped by both). Each method runs once to warm the page cache, then RUNS times,
// alternating, each into a fresh directory after a `sync`; only the copy is timed. Prints a
// markdown table and writes bench-results/copy.json.
//
// Usage: npm run build && node bench/copy.mjs [runs]
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { LocalProjectSource } = createRequire(import.meta.url)(root)

const RUNS = Number(process.argv[2] ?? 7)
const SOURCE_FILES = 20_000
const SOURCE_DIRS = 200
const NODE_MODULES_BYTES = 200 * 1024 * 1024
const NODE_MODULES_FILE = 100 * 1024
const EXCLUDES = ['node_modules', '.git', '.mastra', 'dist', '.next', '.turbo']

/** A deterministic pseudo-random generator (xorshift32), so every run builds the same tree. */
function random(seed) {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x1_0000_0000
  }
}

function makeProject(dir) {
  const next = random(42)
  const app = path.join(dir, 'base', 'app')
  fs.mkdirSync(path.join(app, 'src', 'mastra'), { recursive: true })
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'bench', dependencies: { '@mastra/core': '^1' } }))
  fs.writeFileSync(path.join(app, 'src', 'mastra', 'index.ts'), 'export const mastra = {}\n')
  let bytes = 0
  for (let d = 0; d < SOURCE_DIRS; d++) {
    const sub = path.join(app, 'src', `module-${d}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let f = 0; f < SOURCE_FILES / SOURCE_DIRS; f++) {
      const size = 200 + Math.floor(next() * 3800)
      bytes += size
      fs.writeFileSync(path.join(sub, `file-${f}.ts`), 'x'.repeat(size))
    }
  }
  const block = Buffer.alloc(NODE_MODULES_FILE, 7)
  for (let i = 0; i < NODE_MODULES_BYTES / NODE_MODULES_FILE; i++) {
    const pkg = path.join(app, 'node_modules', `pkg-${Math.floor(i / 20)}`)
    fs.mkdirSync(pkg, { recursive: true })
    fs.writeFileSync(path.join(pkg, `chunk-${i % 20}.js`), block)
  }
  return { app, base: path.join(dir, 'base'), bytes }
}

function countFiles(dir) {
  let n = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) n += countFiles(path.join(dir, entry.name))
    else n += 1
  }
  return n
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const work = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-copy-')))
try {
  const started = performance.now()
  const { app, base, bytes } = makeProject(work)
  console.log(`project: ${SOURCE_FILES + 2} source files (${bytes} bytes) and a ${NODE_MODULES_BYTES / 2 ** 20} MB node_modules, made in ${Math.round(performance.now() - started)} ms`)

  const source = new LocalProjectSource({ basePaths: [base] })
  const project = { id: 'bench', name: 'bench', type: 'local', path: app }
  let dstCounter = 0
  const freshTarget = () => path.join(work, 'out', `dst-${dstCounter++}`)

  const methods = {
    'LocalProjectSource.getProjectPath': async (target) => {
      await source.getProjectPath(project, target)
    },
    'tar -c piped into tar -x': async (target) => {
      fs.mkdirSync(target, { recursive: true })
      const excludes = EXCLUDES.map((e) => `--exclude=${e}`).join(' ')
      const run = spawnSync('sh', ['-c', `tar -C "${app}" ${excludes} -cf - . | tar -C "${target}" -xf -`])
      if (run.status !== 0) throw new Error(`tar failed: ${run.stderr}`)
    },
  }

  const times = Object.fromEntries(Object.keys(methods).map((name) => [name, []]))
  for (let run = -1; run < RUNS; run++) {
    for (const [name, copy] of Object.entries(methods)) {
      const target = freshTarget()
      // Flush the previous run's writes so they are not billed to this one.
      spawnSync('sync')
      const t0 = performance.now()
      await copy(target)
      const ms = performance.now() - t0
      const files = countFiles(target)
      if (files !== SOURCE_FILES + 2) throw new Error(`${name} copied ${files} files, expected ${SOURCE_FILES + 2}`)
      if (run >= 0) times[name].push(ms)
      fs.rmSync(target, { recursive: true, force: true })
    }
  }

  const tarMedian = median(times['tar -c piped into tar -x'])
  const rows = Object.entries(times).map(([name, values]) => ({
    method: name,
    runs: values.length,
    medianMs: Math.round(median(values)),
    minMs: Math.round(Math.min(...values)),
    maxMs: Math.round(Math.max(...values)),
    ratioToTar: Number((median(values) / tarMedian).toFixed(2)),
  }))
  const table = [
    '| method | runs | median (ms) | min (ms) | max (ms) | median / tar median |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.method} | ${r.runs} | ${r.medianMs} | ${r.minMs} | ${r.maxMs} | ${r.ratioToTar} |`),
  ].join('\n')
  console.log(`\n${table}\n`)

  const results = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    project: { sourceFiles: SOURCE_FILES + 2, sourceBytes: bytes, nodeModulesBytes: NODE_MODULES_BYTES },
    excludes: EXCLUDES,
    rows,
    samplesMs: times,
  }
  fs.mkdirSync(path.join(root, 'bench-results'), { recursive: true })
  fs.writeFileSync(path.join(root, 'bench-results', 'copy.json'), `${JSON.stringify(results, null, 2)}\n`)
  console.log('wrote bench-results/copy.json')
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
