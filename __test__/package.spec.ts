// The package as users get it: `npm pack` of this repository (with the optional dependency on
// the linux-x64-gnu platform package that `napi pre-publish` adds at publish time), the platform
// package carrying the built binary, `pnpm add` into a fresh TypeScript project, then the
// README's usage example compiled with `tsc --strict` and run with plain node as ESM and CJS.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { packageRoot } from './helpers/addon'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-package-'))
const consumer = path.join(work, 'consumer')
const pnpm = path.join(packageRoot, 'node_modules', '.bin', 'pnpm')
const version = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version as string
const platformName = '@mastra/runner-local-linux-x64-gnu'

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
}

/** `npm pack` in `dir`; returns the tarball's path. */
function pack(dir: string): string {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], dir))
  return path.join(work, info.filename)
}

/** The README's usage example, verbatim. */
function usageExample(): string {
  const readme = fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8')
  const block = /<!-- usage-example:start -->\n```ts\n([\s\S]*?)```\n<!-- usage-example:end -->/.exec(readme)
  if (!block) throw new Error('README.md has no usage example between the usage-example markers')
  return block[1]
}

/** The example as a CommonJS module: imports stay, the rest runs in an async function. */
function asCommonJs(example: string): string {
  const lines = example.split('\n')
  const end = lines.findLastIndex((line) => /from '[^']+'$/.test(line)) + 1
  return [...lines.slice(0, end), 'void (async () => {', ...lines.slice(end), '})()'].join('\n')
}

beforeAll(() => {
  // The main package, with the optional dependency napi pre-publish adds.
  const main = pack(packageRoot)
  const unpacked = path.join(work, 'main')
  fs.mkdirSync(unpacked)
  run('tar', ['-xzf', main, '-C', unpacked, '--strip-components=1'], work)
  fs.rmSync(main)
  const manifest = JSON.parse(fs.readFileSync(path.join(unpacked, 'package.json'), 'utf8'))
  manifest.optionalDependencies = { [platformName]: version }
  fs.writeFileSync(path.join(unpacked, 'package.json'), JSON.stringify(manifest, null, 2))
  const mainTarball = pack(unpacked)
  // The platform package, as the napi CLI lays it out, with the binary built here.
  const platform = path.join(work, 'platform')
  fs.cpSync(path.join(packageRoot, 'npm', 'linux-x64-gnu'), platform, { recursive: true })
  fs.copyFileSync(path.join(packageRoot, 'runner-local.linux-x64-gnu.node'), path.join(platform, 'runner-local.linux-x64-gnu.node'))
  const platformTarball = pack(platform)
  // A fresh TypeScript project.
  fs.mkdirSync(consumer)
  const devDependencies = {
    typescript: JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules', 'typescript', 'package.json'), 'utf8')).version,
    '@types/node': JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules', '@types', 'node', 'package.json'), 'utf8')).version,
  }
  fs.writeFileSync(
    path.join(consumer, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, devDependencies }, null, 2),
  )
  // The platform package is not on the registry, so it is added beside the main package, which
  // is where a registry install of the optional dependency would put it for the loader.
  run(pnpm, ['add', mainTarball, platformTarball], consumer, { CI: 'true' })
  fs.writeFileSync(
    path.join(consumer, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], skipLibCheck: false, outDir: 'out' }, files: ['usage.mts', 'usage.cts'] }),
  )
  const example = usageExample()
  fs.writeFileSync(path.join(consumer, 'usage.mts'), example)
  fs.writeFileSync(path.join(consumer, 'usage.cts'), asCommonJs(example))
}, 240_000)

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('the published package', () => {
  it('type-checks the README usage example under strict mode', () => {
    const tsc = spawnSync(process.execPath, [path.join(consumer, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { encoding: 'utf8' })
    expect(tsc.stdout + tsc.stderr).toBe('')
    expect(tsc.status).toBe(0)
  })

  it('exports every declared name to require() and to import', async () => {
    const declared = [...fs.readFileSync(path.join(consumer, 'node_modules', '@mastra', 'runner-local', 'index.d.ts'), 'utf8').matchAll(/^export declare (?:class|function) (\w+)/gm)].map((m) => m[1])
    expect(declared).toContain('LocalProcessRunner')
    const script = `
      const cjs = require('@mastra/runner-local')
      import('@mastra/runner-local').then((esm) => {
        const names = ${JSON.stringify(declared)}
        console.log(JSON.stringify({ cjs: names.filter((n) => typeof cjs[n] !== 'function'), esm: names.filter((n) => typeof esm[n] !== 'function') }))
      })`
    const result = spawnSync(process.execPath, ['-e', script], { cwd: consumer, encoding: 'utf8' })
    expect(result.stderr).toBe('')
    expect(JSON.parse(result.stdout)).toEqual({ cjs: [], esm: [] })
  })

  it.each(['usage.mjs', 'usage.cjs'])('runs the README example with plain node (%s)', (file) => {
    const project = path.join(work, `project-${file}`, 'app')
    fs.cpSync(path.join(packageRoot, '__test__', 'fixtures', 'app'), project, { recursive: true })
    const result = spawnSync(process.execPath, [path.join(consumer, 'out', file)], {
      cwd: consumer,
      encoding: 'utf8',
      timeout: 180_000,
      env: { ...process.env, PROJECT_PATH: project, BUILD_DIR: path.join(work, `builds-${file}`), MASTRA_RUNNER_LOG: 'error' },
    })
    expect(result.stderr).toBe('')
    expect(result.stdout).toMatch(/serving on http:\/\/127\.0\.0\.1:\d+ \(pid \d+\)/)
    expect(result.stdout).toMatch(/\{ healthy: true \}/)
    expect(result.stdout).toMatch(/built server listening/)
    expect(result.status).toBe(0)
  }, 200_000)

  it('says what to do when the platform binary is missing', () => {
    const installed = fs.realpathSync(path.join(consumer, 'node_modules', '@mastra', 'runner-local'))
    const copy = path.join(work, 'no-binary')
    fs.cpSync(installed, copy, { recursive: true, dereference: true })
    const result = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(copy)})`], { encoding: 'utf8', cwd: os.tmpdir() })
    expect(result.status).not.toBe(0)
    expect(result.stderr).toMatch(/@mastra\/runner-local: the native addon for linux-x64 could not be loaded/)
    expect(result.stderr).toMatch(/Reinstall without --no-optional/)
  })
})
