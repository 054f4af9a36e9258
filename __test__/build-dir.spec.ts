// The library's relative default buildDir ('.mastra/builds', resolved against the working
// directory) would land inside the project when the host runs from the project: the build is
// refused before anything is created, with a message that says to set buildDir.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { addon } from './helpers/addon'
import { entities } from './helpers/runner'

const cwd = process.cwd()
afterEach(() => process.chdir(cwd))

describe('a build directory inside the project', () => {
  it('is refused with a hint, and nothing is left in the project', async () => {
    const project = fs.mkdtempSync(path.join(os.tmpdir(), 'inside-'))
    fs.writeFileSync(path.join(project, 'package.json'), '{"name":"inside","private":true}')
    process.chdir(project)
    const runner = new addon.LocalProcessRunner({ defaultSource: 'local' })
    try {
      const { project: entity, build } = entities()
      const rejection = runner.build({ ...entity, sourceConfig: { path: project } }, build)
      await expect(rejection).rejects.toMatchObject({
        code: 'ERR_UNSAFE_PATH',
        message: expect.stringMatching(/^Refusing to copy into .*: it is inside the project .*; set buildDir/),
      })
      expect(fs.existsSync(path.join(project, '.mastra'))).toBe(false)
    } finally {
      await runner.shutdown()
      process.chdir(cwd)
      fs.rmSync(project, { recursive: true, force: true })
    }
  })
})
