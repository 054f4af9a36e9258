// The package's CommonJS entry: the napi-generated loader (index.js), with a message that says
// what to do when the native addon for this platform is missing.
'use strict'

try {
  module.exports = require('./index.js')
} catch (error) {
  const target = `${process.platform}-${process.arch}`
  const wrapped = new Error(
    `@mastra/runner-local: the native addon for ${target} could not be loaded (${error.message.split('\n')[0]}). ` +
      `It ships in the optional dependency @mastra/runner-local-${target}-* that your package manager installs ` +
      'for this platform. Reinstall without --no-optional / --omit=optional; with npm, if the lockfile was made ' +
      'on another platform, delete node_modules and package-lock.json and install again ' +
      '(npm does not add optional dependencies of other platforms to a lockfile: https://github.com/npm/cli/issues/4828). ' +
      'Supported: linux x64/arm64 (glibc and musl), darwin x64/arm64, win32 x64.',
  )
  wrapped.cause = error
  throw wrapped
}
