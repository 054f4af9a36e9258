// Which napi platform this machine is, and where its native addon comes from: the binary
// `runner-local.<platform>.node` beside index.js (a build in a checkout, or a package packed
// from one) or the platform package `@mastra/runner-local-<platform>` (a registry install).
// Used by loader.cjs for its load error and by scripts/check-package.cjs before packing.
'use strict'

const fs = require('node:fs')

const BINARY_NAME = 'runner-local'
const PACKAGE_NAME = '@mastra/runner-local'

/** The napi platform names of the Rust targets in package.json `napi.targets`. */
const TARGET_PLATFORMS = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-musl': 'linux-arm64-musl',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
}

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    // No ldd: ask the running Node which C library it was linked against.
  }
  try {
    const report = process.report && process.report.getReport()
    if (report && report.header && report.header.glibcVersionRuntime) return false
    return Boolean(report && Array.isArray(report.sharedObjects) && report.sharedObjects.some((f) => /libc\.musl-|ld-musl-/.test(f)))
  } catch {
    return false
  }
}

/** This machine's napi platform name, e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
function hostPlatform() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** The platforms the package is built for (from `napi.targets` of `manifest`). */
function supportedPlatforms(manifest) {
  const targets = (manifest && manifest.napi && manifest.napi.targets) || Object.keys(TARGET_PLATFORMS)
  return targets.map((target) => TARGET_PLATFORMS[target]).filter(Boolean)
}

/** The file name of the binary for `platform`, e.g. `runner-local.linux-x64-gnu.node`. */
const binaryFile = (platform) => `${BINARY_NAME}.${platform}.node`

/** The platform package for `platform`, e.g. `@mastra/runner-local-linux-x64-gnu`. */
const platformPackage = (platform) => `${PACKAGE_NAME}-${platform}`

module.exports = { BINARY_NAME, PACKAGE_NAME, binaryFile, hostPlatform, platformPackage, supportedPlatforms }
