// The package's CommonJS entry: the napi-generated loader (index.js), with a load error that
// names the binary file or platform package that is missing and the command that fixes it
// (napi's own message blames npm's optional-dependency bug whatever the cause).
'use strict'

try {
  module.exports = require('./index.js')
} catch (error) {
  throw loadError(error)
}

/** Messages of `error` and its `cause` chain, outermost first. */
function messages(error) {
  const out = []
  for (let e = error; e && out.length < 20; e = e.cause) out.push(String((e && e.message) || e).split('\n')[0])
  return out
}

function loadError(error) {
  const fs = require('node:fs')
  const path = require('node:path')
  const { binaryFile, hostPlatform, platformPackage, supportedPlatforms } = require('./platform.cjs')
  let manifest = {}
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8'))
  } catch {
    // A broken install: the messages below still hold.
  }
  const version = manifest.version || 'latest'
  const platform = hostPlatform()
  const file = binaryFile(platform)
  const filePath = path.join(__dirname, file)
  const pkg = platformPackage(platform)
  const checkout = fs.existsSync(path.join(__dirname, 'Cargo.toml'))
  const optional = Boolean(manifest.optionalDependencies && manifest.optionalDependencies[pkg])
  let pkgPath = null
  try {
    pkgPath = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [__dirname] }))
  } catch {
    // Not installed.
  }
  const lines = []
  if (!supportedPlatforms(manifest).includes(platform)) {
    lines.push(
      `@mastra/runner-local: there is no native addon for this platform (${platform}); it is built for ` +
        `${supportedPlatforms(manifest).join(', ')}.`,
      `To build one yourself, in a checkout of @mastra/runner-local with Rust installed: npm run build`,
    )
  } else if (fs.existsSync(filePath) || pkgPath) {
    // Present but it did not load: a wrong architecture, a missing C library, a truncated file…
    const found = fs.existsSync(filePath) ? filePath : `${pkg} (${pkgPath})`
    const reasons = messages(error.cause).filter((m) => !/^Cannot find module/.test(m))
    lines.push(
      `@mastra/runner-local: the native addon for ${platform} is installed but could not be loaded: ${found}` +
        (reasons.length > 0 ? ` (${reasons.join('; ')})` : ` (${messages(error)[0]})`) + '.',
      checkout
        ? 'Rebuild it in this checkout: npm run build'
        : fs.existsSync(filePath)
          ? `Reinstall @mastra/runner-local (or rebuild it: npm run build in its checkout, then npm pack), or remove ${file} and install the platform package: pnpm add ${pkg}@${version}`
          : `Reinstall the platform package: pnpm add ${pkg}@${version}   (npm: npm install ${pkg}@${version})`,
    )
  } else {
    lines.push(
      `@mastra/runner-local: the native addon for ${platform} is missing: neither ${file} (in ${__dirname}) ` +
        `nor the package ${pkg} is installed.`,
    )
    if (checkout) {
      lines.push(`This is a checkout: build the addon with: npm run build   (needs Rust: https://rustup.rs)`)
    } else if (optional) {
      lines.push(
        `${pkg} is an optional dependency of @mastra/runner-local that was not installed. Install it: ` +
          `pnpm add ${pkg}@${version}   (npm: npm install ${pkg}@${version}). ` +
          'Or reinstall without --no-optional / --omit=optional; with npm, a package-lock.json made on another ' +
          'platform leaves it out (https://github.com/npm/cli/issues/4828): delete node_modules and package-lock.json and install again.',
      )
    } else {
      lines.push(
        `This copy of @mastra/runner-local was packed without its binary. In its checkout run npm run build, then ` +
          `npm pack, and install the new tarball (see "Install from a checkout" in its README); or add the ` +
          `platform package: pnpm add ${pkg}@${version}`,
      )
    }
  }
  const wrapped = new Error(lines.join('\n'))
  wrapped.cause = error
  return wrapped
}
