// Runs under node:test with each Node.js the package supports (scripts/test.sh runs it with the
// machine's Node 20 and with Node 22): the addon loads through the CommonJS entry point, a runner
// constructs with defaults, rejects bad config, and Node exits afterwards on its own.
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const test = require('node:test')

const root = path.resolve(__dirname, '..')

test(`loads and constructs a runner on Node ${process.version}`, async () => {
  const { LocalProcessRunner } = require(root)
  const runner = new LocalProcessRunner()
  assert.equal(runner.type, 'local')
  assert.equal(runner.getStats().availablePorts, 90)
  assert.throws(() => new LocalProcessRunner({ portRange: { start: 2, end: 1 } }), /Invalid portRange/)
  await runner.shutdown()
})

test(`a script using the runner exits by itself on Node ${process.version}`, () => {
  const script = `const { LocalProcessRunner } = require(${JSON.stringify(root)});
    const r = new LocalProcessRunner(); r.shutdown().then(() => console.log('done'))`
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(run.signal, null, 'the script had to be killed: something kept Node alive')
  assert.equal(run.status, 0, run.stderr)
  assert.equal(run.stdout.trim(), 'done')
})
