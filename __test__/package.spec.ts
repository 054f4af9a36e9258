// The package as a user gets it from a checkout: exactly the README's "Install from a checkout"
// commands (`npm pack` in this built checkout, then `pnpm add` of the tarball it wrote into a
// fresh TypeScript project, nothing else), then the README's usage example compiled with
// `tsc --strict` and run with plain node as ESM and CJS, and the load error when the binary is
// missing. Also: packing a checkout without a built binary, and publishing with one in the root,
// stop with a message that says what to do.
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
const binaryFile = 'runner-local.linux-x64-gnu.node'

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
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

/** The shell lines of the README's "Install from a checkout" block (comments dropped). */
function installCommands(): string[] {
  const readme = fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8')
  const block = /<!-- install-from-checkout:start -->\n```sh\n([\s\S]*?)```\n<!-- install-from-checkout:end -->/.exec(readme)
  if (!block) throw new Error('README.md has no block between the install-from-checkout markers')
  return block[1].split('\n').map((line) => line.replace(/#.*$/, '').trim()).filter(Boolean)
}

const checkoutPlaceholder = '/path/to/runner-local'
let packedFiles: string[] = []

beforeAll(() => {
  const commands = installCommands()
  // The set-up lines (npm install, npm run build) are what this test run has already done.
  expect(commands.slice(0, 2)).toEqual(['npm install --no-audit --no-fund', 'npm run build'])
  expect(commands[2]).toBe('npm pack')
  const add = commands[3].split(/\s+/)
  expect(add.slice(0, 2)).toEqual(['pnpm', 'add'])
  expect(add[2]).toBe(`${checkoutPlaceholder}/mastra-runner-local-${version}.tgz`)
  expect(commands).toHaveLength(4)
  // The user's project: a fresh TypeScript project.
  fs.mkdirSync(consumer)
  const devDependencies = {
    typescript: JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules', 'typescript', 'package.json'), 'utf8')).version,
    '@types/node': JSON.parse(fs.readFileSync(path.join(packageRoot, 'node_modules', '@types', 'node', 'package.json'), 'utf8')).version,
  }
  fs.writeFileSync(
    path.join(consumer, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, devDependencies }, null, 2),
  )
  // `npm pack` in the checkout and `pnpm add <tarball>` in the project, as written.
  const tarball = add[2].replace(checkoutPlaceholder, packageRoot)
  try {
    run('npm', ['pack'], packageRoot)
    packedFiles = run('tar', ['-tzf', tarball], work).split('\n').filter(Boolean)
    run(pnpm, ['add', tarball], consumer, { CI: 'true' })
  } finally {
    fs.rmSync(tarball, { force: true })
  }
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

  it('carries the binary built here and nothing else of the checkout', () => {
    expect(packedFiles.map((f) => f.replace(/^package\//, '')).sort()).toEqual(
      ['LICENSE', 'README.md', 'bin/mastra-runner-local.cjs', 'index.d.ts', 'index.js', 'index.mjs', 'loader.cjs', 'package.json', 'platform.cjs', binaryFile].sort(),
    )
    const installed = fs.realpathSync(path.join(consumer, 'node_modules', '@mastra', 'runner-local'))
    expect(fs.statSync(path.join(installed, binaryFile)).size).toBe(fs.statSync(path.join(packageRoot, binaryFile)).size)
    expect(fs.existsSync(path.join(consumer, 'node_modules', platformName))).toBe(false)
  })

  it('runs its command line from the project', () => {
    const result = spawnSync(path.join(consumer, 'node_modules', '.bin', 'mastra-runner-local'), ['config'], { cwd: consumer, encoding: 'utf8' })
    expect(result.stderr).toBe('')
    expect(JSON.parse(result.stdout).portRange).toEqual({ start: 4111, end: 4200 })
  })

  /** The installed package copied without its binary, changed by `change`; importing it. */
  function loadWithoutBinary(name: string, change: (manifest: Record<string, unknown>, dir: string) => void = () => {}) {
    const installed = fs.realpathSync(path.join(consumer, 'node_modules', '@mastra', 'runner-local'))
    const copy = path.join(work, name)
    fs.cpSync(installed, copy, { recursive: true, dereference: true })
    fs.rmSync(path.join(copy, binaryFile))
    const manifest = JSON.parse(fs.readFileSync(path.join(copy, 'package.json'), 'utf8'))
    change(manifest, copy)
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify(manifest))
    return spawnSync(process.execPath, ['-e', `import(${JSON.stringify(path.join(copy, 'index.mjs'))}).catch((e) => { console.error(e.message); process.exit(1) })`], { encoding: 'utf8', cwd: os.tmpdir() })
  }

  it('names the missing binary and the command that fixes it (packed without the binary)', () => {
    const result = loadWithoutBinary('no-binary')
    expect(result.status).toBe(1)
    expect(result.stderr).toContain(`@mastra/runner-local: the native addon for linux-x64-gnu is missing: neither ${binaryFile} (in ${path.join(work, 'no-binary')}) nor the package ${platformName} is installed.`)
    expect(result.stderr).toContain(`In its checkout run npm run build, then npm pack`)
    expect(result.stderr).toContain(`pnpm add ${platformName}@${version}`)
    expect(result.stderr).not.toMatch(/npm has a bug|--no-optional/)
  })

  it('names the missing optional platform package (published form)', () => {
    const result = loadWithoutBinary('no-optional', (manifest) => {
      manifest.optionalDependencies = { [platformName]: version }
    })
    expect(result.status).toBe(1)
    expect(result.stderr).toContain(`${platformName} is an optional dependency of @mastra/runner-local that was not installed. Install it: pnpm add ${platformName}@${version}`)
    expect(result.stderr).toMatch(/--no-optional/)
  })

  it('says to build the addon in a checkout', () => {
    const result = loadWithoutBinary('checkout', (_, dir) => fs.writeFileSync(path.join(dir, 'Cargo.toml'), ''))
    expect(result.status).toBe(1)
    expect(result.stderr).toContain('This is a checkout: build the addon with: npm run build')
  })

  it('says which file failed to load and why', () => {
    const result = loadWithoutBinary('corrupt', (_, dir) => fs.writeFileSync(path.join(dir, binaryFile), 'not an ELF file'))
    expect(result.status).toBe(1)
    expect(result.stderr).toContain(`the native addon for linux-x64-gnu is installed but could not be loaded: ${path.join(work, 'corrupt', binaryFile)}`)
    expect(result.stderr).toMatch(/invalid ELF header|file too short/)
  })
})

describe('packing and publishing', () => {
  /** A copy of the checkout's packed files and scripts, with or without the binary. */
  function checkoutCopy(name: string, withBinary: boolean): string {
    const copy = path.join(work, name)
    fs.mkdirSync(path.join(copy, 'scripts'), { recursive: true })
    for (const file of ['package.json', 'index.js', 'index.d.ts', 'index.mjs', 'loader.cjs', 'platform.cjs', 'bin', 'README.md', 'LICENSE', 'scripts/check-package.cjs', ...(withBinary ? [binaryFile] : [])]) {
      fs.cpSync(path.join(packageRoot, file), path.join(copy, file), { recursive: true })
    }
    return copy
  }

  it('npm pack of a checkout without a built binary stops and says how to build it', () => {
    const copy = checkoutCopy('unbuilt', false)
    const result = spawnSync('npm', ['pack'], { cwd: copy, encoding: 'utf8' })
    expect(result.status).not.toBe(0)
    expect(result.stderr).toContain(`@mastra/runner-local: cannot pack: ${binaryFile}, the native addon for this machine (linux-x64-gnu), is not built`)
    expect(result.stderr).toContain('npm run build')
    expect(fs.readdirSync(copy).filter((f) => f.endsWith('.tgz'))).toEqual([])
  })

  it('a release manifest (platform packages as optionalDependencies) packs without a binary', () => {
    const copy = checkoutCopy('release', false)
    const manifest = JSON.parse(fs.readFileSync(path.join(copy, 'package.json'), 'utf8'))
    manifest.optionalDependencies = { [platformName]: version }
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify(manifest))
    const result = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: copy, encoding: 'utf8' })
    expect(result.status).toBe(0)
    expect(result.stderr).toContain(`packing without a binary: optionalDependencies bring ${platformName}`)
    expect(JSON.parse(result.stdout)[0].files.map((f: { path: string }) => f.path)).not.toContain(binaryFile)
  })

  it('publishing refuses a binary in the package root, which belongs in its platform package', () => {
    const copy = checkoutCopy('publish', true)
    const result = spawnSync('npm', ['run', 'prepublishOnly'], { cwd: copy, encoding: 'utf8' })
    expect(result.status).not.toBe(0)
    expect(result.stderr).toContain(`not publishing: ${binaryFile} in the package root would ship inside the main package`)
    expect(result.stderr).toContain(`mv ${binaryFile} npm/linux-x64-gnu/`)
    // Once the binary is where napi pre-publish takes it from, the check passes.
    fs.rmSync(path.join(copy, binaryFile))
    const check = spawnSync(process.execPath, [path.join(copy, 'scripts', 'check-package.cjs'), '--publish'], { cwd: copy, encoding: 'utf8' })
    expect(check.stderr).toBe('')
    expect(check.status).toBe(0)
  })
})
