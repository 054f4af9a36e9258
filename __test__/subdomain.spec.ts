// SubdomainGenerator: SPEC §3 "Subdomains".
import { describe, expect, it } from 'vitest'

import { addon } from './helpers/addon'
import { messageOf } from './helpers/errors'

const generator = new addon.SubdomainGenerator()
const isDnsLabel = (label: string) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label)

describe('SubdomainGenerator', () => {
  it('names the three deployment types', () => {
    expect(generator.generate({ slug: 'shop' }, { type: 'production' })).toBe('shop')
    expect(generator.generate({ slug: 'shop' }, { type: 'staging', branch: 'main' })).toBe('staging--shop')
    expect(generator.generate({ slug: 'shop' }, { type: 'preview', branch: 'fix-cart' })).toBe('fix-cart--shop')
  })

  it('normalises branches with /, ., _, uppercase and unicode', () => {
    expect(generator.generate({ slug: 'Shop' }, { type: 'preview', branch: 'Feature/Login_Page.v2' })).toBe('feature-login-page-v2--shop')
    expect(generator.generate({ slug: 'shop' }, { type: 'preview', branch: '--a//b__' })).toBe('a-b--shop')
    const unicode = generator.generate({ slug: 'shop' }, { type: 'preview', branch: 'функция/поиск' })
    expect(isDnsLabel(unicode)).toBe(true)
    expect(unicode).toMatch(/^x[0-9a-f]{6}--shop$/)
    expect(unicode).not.toBe(generator.generate({ slug: 'shop' }, { type: 'preview', branch: 'другое' }))
  })

  it('never gives an empty part', () => {
    const name = generator.generate({ slug: '!!!' }, { type: 'production' })
    expect(name).toMatch(/^x[0-9a-f]{6}$/)
  })

  it('keeps names longer than 63 characters valid, distinct and stable', () => {
    const long = 'feature/' + 'very-long-branch-name-'.repeat(5)
    const a = generator.generate({ slug: 'shop' }, { type: 'preview', branch: `${long}a` })
    const b = generator.generate({ slug: 'shop' }, { type: 'preview', branch: `${long}b` })
    expect(a.length).toBeLessThanOrEqual(63)
    expect(isDnsLabel(a) && isDnsLabel(b)).toBe(true)
    expect(a).not.toBe(b)
    expect(a).toBe(generator.generate({ slug: 'shop' }, { type: 'preview', branch: `${long}a` }))
    expect(a.endsWith('--shop')).toBe(true)
    const longProject = generator.generate({ slug: 'p'.repeat(100) }, { type: 'staging' })
    expect(longProject.length).toBeLessThanOrEqual(63)
    expect(isDnsLabel(longProject)).toBe(true)
  })

  it('parses generated names back', () => {
    expect(generator.parse('shop')).toEqual({ type: 'production', projectSlug: 'shop', branch: null })
    expect(generator.parse('shop').deploymentSlug).toBeUndefined()
    expect(generator.parse('staging--shop')).toEqual({ type: 'staging', projectSlug: 'shop', deploymentSlug: 'staging', branch: null })
    expect(generator.parse('fix-cart--shop')).toEqual({
      type: 'preview',
      projectSlug: 'shop',
      deploymentSlug: 'fix-cart',
      branch: 'fix-cart',
    })
  })

  it('splits any name at its last -- as the TypeScript package does, never giving null', () => {
    expect(generator.parse('a--b--c')).toMatchObject({ projectSlug: 'c', deploymentSlug: 'a--b' })
    expect(generator.parse('some-prefix--another--my-project')).toMatchObject({
      projectSlug: 'my-project',
      deploymentSlug: 'some-prefix--another',
    })
    expect(generator.parse('Not.A.Label')).toEqual({ type: 'production', projectSlug: 'Not.A.Label', branch: null })
  })

  it('rejects bad arguments', () => {
    expect(messageOf(() => generator.generate({ slug: 'shop' }, { type: 'canary' as never }))).toBe(
      "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got 'canary')",
    )
    expect(messageOf(() => generator.generate({ slug: 'shop' }, { type: 'preview' }))).toBe(
      'Invalid deployment.branch: a preview deployment needs its branch',
    )
    expect(messageOf(() => generator.generate({} as never, { type: 'production' }))).toBe('Invalid project.slug: is required')
    expect(messageOf(() => generator.parse(7 as never))).toBe('Invalid subdomain: expected a string, got number 7')
  })
})
